//! Read deadlines for every connection of a shard, swept by one coarse
//! timer instead of a timer per read.
//!
//! A connection sets its next read's deadline with a plain store into its
//! [`Slot`]; nothing is inserted into or removed from the reactor's timer
//! tree per read. One sweeper task per shard thread sleeps until the
//! earliest deadline it knows of (at least [`GRAIN`] apart), marks the slots
//! whose deadline passed as expired and wakes their tasks, whose pending
//! read then fails with `ErrorKind::TimedOut`. A deadline earlier than the
//! sweeper's next wake-up (a header timeout after an idle one) pokes it to
//! reschedule. With no connection reading, the sweeper sleeps without a
//! timer, so an idle shard is not woken.
//!
//! A deadline is never reported early; it may be reported up to [`GRAIN`]
//! late, which the timeouts (hundreds of milliseconds and more) absorb.

use futures_lite::{AsyncRead, AsyncWrite};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The sweeper wakes at most this often.
pub const GRAIN: Duration = Duration::from_millis(20);

/// One connection's read deadline.
#[derive(Debug, Default)]
pub struct Slot {
    deadline: Cell<Option<Instant>>,
    expired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Slot {
    pub fn expired(&self) -> bool {
        self.expired.get()
    }

    /// Remembers the task to wake when the deadline passes (cloned only
    /// when it is another task than last time).
    pub fn park(&self, waker: &Waker) {
        let mut slot = self.waker.borrow_mut();
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

/// The shard's slots and its sweeper's schedule.
#[derive(Default)]
struct Sweeper {
    slots: RefCell<Vec<Option<Rc<Slot>>>>,
    free: RefCell<Vec<usize>>,
    /// When the sweeper task will look next; `None`: only when poked.
    wake_at: Cell<Option<Instant>>,
    poked: Cell<bool>,
    task: RefCell<Option<Waker>>,
    running: Cell<bool>,
}

thread_local! {
    static SWEEPER: Rc<Sweeper> = Rc::default();
}

/// A connection's registration: sets deadlines, unregisters when dropped.
pub struct Registration {
    sweeper: Rc<Sweeper>,
    index: usize,
    slot: Rc<Slot>,
}

impl Registration {
    /// Registers a slot with this thread's sweeper, starting its task on
    /// the current glommio executor when it is not running.
    pub fn new() -> Registration {
        let sweeper = SWEEPER.with(Rc::clone);
        let slot = Rc::new(Slot::default());
        let index = match sweeper.free.borrow_mut().pop() {
            Some(i) => i,
            None => {
                sweeper.slots.borrow_mut().push(None);
                sweeper.slots.borrow().len() - 1
            }
        };
        sweeper.slots.borrow_mut()[index] = Some(slot.clone());
        if !sweeper.running.replace(true) {
            glommio::spawn_local(sweep(sweeper.clone())).detach();
        }
        Registration { sweeper, index, slot }
    }

    pub fn slot(&self) -> &Slot {
        &self.slot
    }

    /// Reads from now on fail once `deadline` has passed.
    pub fn set(&self, deadline: Instant) {
        self.slot.expired.set(false);
        self.slot.deadline.set(Some(deadline));
        let s = &self.sweeper;
        if s.wake_at.get().is_none_or(|w| deadline < w) {
            s.wake_at.set(Some(deadline));
            s.poked.set(true);
            if let Some(task) = s.task.borrow_mut().take() {
                task.wake();
            }
        }
    }
}

impl Default for Registration {
    fn default() -> Self {
        Registration::new()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sweeper.slots.borrow_mut()[self.index] = None;
        self.sweeper.free.borrow_mut().push(self.index);
    }
}

/// The sweeper task: sleeps until the earliest deadline, expires what
/// passed, and ends when no connection is registered.
async fn sweep(s: Rc<Sweeper>) {
    let _running = Running(s.clone());
    loop {
        match s.wake_at.get() {
            Some(at) => {
                let timer = glommio::timer::sleep(at.saturating_duration_since(Instant::now()));
                futures_lite::future::or(timer, Poked(&s)).await;
            }
            None => Poked(&s).await,
        }
        s.poked.set(false);
        let now = Instant::now();
        let earliest = expire(&s, now);
        if s.free.borrow().len() == s.slots.borrow().len() {
            return;
        }
        s.wake_at.set(earliest.map(|e| e.max(now + GRAIN)));
    }
}

/// Lets the next registration start a sweeper when this one ended, also
/// when its executor dropped it.
struct Running(Rc<Sweeper>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.set(false);
        self.0.wake_at.set(None);
        self.0.task.borrow_mut().take();
    }
}

/// Marks and wakes the slots whose deadline is at or before `now`;
/// returns the earliest deadline still ahead.
fn expire(s: &Sweeper, now: Instant) -> Option<Instant> {
    let mut earliest: Option<Instant> = None;
    for slot in s.slots.borrow().iter().flatten() {
        let Some(deadline) = slot.deadline.get() else { continue };
        if deadline <= now {
            slot.deadline.set(None);
            slot.expired.set(true);
            if let Some(w) = slot.waker.borrow_mut().take() {
                w.wake();
            }
        } else {
            earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
        }
    }
    earliest
}

/// Ready once a deadline earlier than the schedule was set.
struct Poked<'a>(&'a Sweeper);

impl Future for Poked<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.poked.get() {
            return Poll::Ready(());
        }
        *self.0.task.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A stream whose reads fail with `TimedOut` once its registration's
/// deadline passed.
pub struct TimedStream<S> {
    pub stream: S,
    pub deadline: Registration,
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.deadline.slot().expired() {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "read deadline passed")));
        }
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if read.is_pending() {
            this.deadline.slot().park(cx.waker());
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_close(cx)
    }
}
