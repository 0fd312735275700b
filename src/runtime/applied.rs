//! What one shard has applied of each Kafka partition, and the readers
//! parked until a position is applied.
//!
//! The consumer sends every shard, with each flush, the partitions' next
//! offsets that the flush covers; the shard's apply task records them here
//! after applying the flush's changes (`advance`). A change reaches the shard
//! that owns its key, in offset order, so once this shard's position on a
//! partition is past an offset, every record of that partition up to it that
//! this shard owns is visible here. A read that must see such a record waits
//! on the owning shard (`wait`): it parks on a oneshot that `advance` fires,
//! with a timer for its deadline, so a parked read costs no CPU and holds
//! nothing the shard's other requests need.
//!
//! Only the shard's own thread touches this (hence `RefCell`).

use crate::positions::{MinPosition, Reached};
use futures_channel::oneshot;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// One partition as this shard sees it.
#[derive(Default)]
struct Partition {
    /// Next offset applied (everything below it is applied); 0 at first.
    next: i64,
    seen: bool,
    /// (offset awaited, waiter id) -> the waiter's wake-up.
    waiters: BTreeMap<(i64, u64), oneshot::Sender<()>>,
}

/// A shard's applied positions and parked readers.
#[derive(Default)]
pub struct Applied {
    partitions: RefCell<HashMap<String, HashMap<i32, Partition>>>,
    next_id: Cell<u64>,
}

impl Applied {
    /// Everything below `next` on `topic`/`partition` is applied: wakes the
    /// readers waiting for an offset below it.
    pub fn advance(&self, topic: &str, partition: i32, next: i64) {
        let mut all = self.partitions.borrow_mut();
        let p = match all.get_mut(topic) {
            Some(t) => t.entry(partition).or_default(),
            None => all.entry(topic.to_string()).or_default().entry(partition).or_default(),
        };
        p.seen = true;
        if next <= p.next {
            return;
        }
        p.next = next;
        let later = p.waiters.split_off(&(next, 0));
        for (_, wake) in std::mem::replace(&mut p.waiters, later) {
            let _ = wake.send(());
        }
    }

    /// (topic, partition, next offset) of every partition a position of
    /// which reached this shard.
    pub fn positions(&self) -> Vec<(String, i32, i64)> {
        let all = self.partitions.borrow();
        let mut out: Vec<_> = all
            .iter()
            .flat_map(|(t, ps)| ps.iter().filter(|(_, p)| p.seen).map(move |(n, p)| (t.clone(), *n, p.next)))
            .collect();
        out.sort();
        out
    }

    /// The next offset applied on a partition, if any record or position of
    /// it reached this shard.
    pub fn next(&self, topic: &str, partition: i32) -> Option<i64> {
        let all = self.partitions.borrow();
        all.get(topic).and_then(|t| t.get(&partition)).filter(|p| p.seen).map(|p| p.next)
    }

    fn reached(&self, min: &MinPosition) -> bool {
        self.next(&min.topic, min.partition).is_some_and(|next| next > min.offset)
    }

    /// Where each position not yet applied stands.
    pub fn missing(&self, min: &[MinPosition]) -> Vec<Reached> {
        min.iter()
            .filter(|m| !self.reached(m))
            .map(|m| Reached { wanted: m.clone(), applied: self.next(&m.topic, m.partition) })
            .collect()
    }

    /// Waits until every position in `min` is applied here, or `deadline`.
    pub async fn wait(&self, min: &[MinPosition], deadline: Instant) -> Result<(), Vec<Reached>> {
        for m in min {
            if self.reached(m) {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            let id = self.next_id.get();
            self.next_id.set(id + 1);
            self.park(m, id, tx);
            let _unpark = Unpark { applied: self, min: m, id };
            let woken = futures_lite::future::or(async { rx.await.is_ok() }, async {
                glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
                false
            })
            .await;
            if !woken {
                return Err(self.missing(min));
            }
        }
        Ok(())
    }

    fn park(&self, m: &MinPosition, id: u64, wake: oneshot::Sender<()>) {
        let mut all = self.partitions.borrow_mut();
        let p = all.entry(m.topic.clone()).or_default().entry(m.partition).or_default();
        p.waiters.insert((m.offset, id), wake);
    }

    /// Readers parked now (for tests and metrics).
    pub fn parked(&self) -> usize {
        self.partitions.borrow().values().flat_map(|t| t.values()).map(|p| p.waiters.len()).sum()
    }

    /// Partitions tracked (for tests).
    pub fn partitions(&self) -> usize {
        self.partitions.borrow().values().map(HashMap::len).sum()
    }
}

/// Takes a reader that gave up (deadline, or its request went away) off the
/// waiter list, so waiters never outlive their requests.
struct Unpark<'a> {
    applied: &'a Applied,
    min: &'a MinPosition,
    id: u64,
}

impl Drop for Unpark<'_> {
    fn drop(&mut self) {
        let mut all = self.applied.partitions.borrow_mut();
        let Some(topic) = all.get_mut(&self.min.topic) else { return };
        let Some(p) = topic.get_mut(&self.min.partition) else { return };
        p.waiters.remove(&(self.min.offset, self.id));
        // A partition only a reader named (a typo, another cluster's topic)
        // is forgotten with its last reader: client input never grows state.
        if !p.seen && p.waiters.is_empty() {
            topic.remove(&self.min.partition);
            if topic.is_empty() {
                all.remove(&self.min.topic);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::LocalExecutor;
    use std::rc::Rc;
    use std::time::Duration;

    fn min(offset: i64) -> MinPosition {
        MinPosition { topic: "t".into(), partition: 0, offset }
    }

    #[test]
    fn waiters_wake_when_their_offset_is_applied_and_leave_on_timeout() {
        LocalExecutor::default().run(async {
            let applied = Rc::new(Applied::default());
            assert_eq!(applied.next("t", 0), None);
            applied.advance("t", 0, 5);
            let now = Instant::now();
            assert_eq!(applied.wait(&[min(4)], now).await, Ok(()), "already applied");
            let a = applied.clone();
            let waiting =
                glommio::spawn_local(async move { a.wait(&[min(7)], Instant::now() + Duration::from_secs(10)).await });
            glommio::timer::sleep(Duration::from_millis(20)).await;
            assert_eq!(applied.parked(), 1);
            applied.advance("t", 0, 7);
            assert_eq!(applied.parked(), 1, "offset 7 is not applied until next > 7");
            applied.advance("t", 0, 8);
            assert_eq!(waiting.await, Ok(()));
            let started = Instant::now();
            let err = applied.wait(&[min(3), min(100)], Instant::now() + Duration::from_millis(50)).await.unwrap_err();
            assert!(started.elapsed() >= Duration::from_millis(50));
            assert_eq!(err, vec![Reached { wanted: min(100), applied: Some(8) }]);
            assert_eq!(applied.parked(), 0, "a reader that gave up is gone");
            let elsewhere = MinPosition { topic: "typo".into(), partition: 9, offset: 1 };
            assert!(applied.wait(&[elsewhere], Instant::now() + Duration::from_millis(5)).await.is_err());
            assert_eq!(applied.partitions(), 1, "a partition only a reader named is not kept");
        });
    }
}
