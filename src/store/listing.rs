//! Key listings in ascending order, page by page, over any store.
//!
//! A store's keys may be spread over several independently ordered parts
//! (one per shard for the in-memory stores, one for Redis). Each part hands
//! out bounded slices of its keys after a cursor; a [`Lister`] keeps a small
//! buffer per part and merges them (a k-way merge), so a page of `limit` keys
//! costs about `limit` keys per part whatever the store holds, and memory is
//! bounded by the parts' buffers, never by the key count. A listing gives
//! the shard back every [`TURN`] of work (and between slices that found
//! nothing), so other requests wait for a fraction of a millisecond, not
//! for the listing.

use super::handle::{Store, StoreError};
use super::key_slice::ListedKey;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Longest a listing works before it lets the shard serve others.
pub const TURN: Duration = Duration::from_micros(250);

/// A part's fill in progress, awaited together with the others.
type Fill<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + 'a>>;

/// Merges the parts of a store into one ascending stream of keys.
pub struct Lister<'a, S> {
    store: &'a S,
    filter: String,
    /// Keys to ask each part for at a time.
    fetch: usize,
    parts: Vec<Part>,
    /// When the listing last let the shard serve others.
    turn: Instant,
}

struct Part {
    keys: VecDeque<ListedKey>,
    cursor: Option<String>,
    done: bool,
}

impl<'a, S: Store> Lister<'a, S> {
    /// Keys of `store` after `after` containing `filter`. `want` is how many
    /// keys the caller expects to take (offset + limit + 1), if it knows:
    /// each part is asked for that many at a time, at most a [`SLICE`](super::key_slice::SLICE).
    pub fn new(store: &'a S, after: Option<String>, filter: String, want: Option<usize>) -> Self {
        let part = || Part { keys: VecDeque::new(), cursor: after.clone(), done: false };
        let parts = (0..store.parts()).map(|_| part()).collect();
        let fetch = want.unwrap_or(usize::MAX).clamp(1, store.slice_size());
        Lister { store, filter, fetch, parts, turn: Instant::now() }
    }

    /// The next key in ascending order, `None` after the last.
    pub async fn next(&mut self) -> Result<Option<ListedKey>, StoreError> {
        if self.turn.elapsed() >= TURN {
            self.store.yield_between_slices().await;
            self.turn = Instant::now();
        }
        self.refill().await?;
        let smallest = self
            .parts
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.keys.front().map(|k| (i, k)))
            .min_by(|a, b| a.1.as_str().cmp(b.1.as_str()))
            .map(|(i, _)| i);
        Ok(smallest.and_then(|i| self.parts[i].keys.pop_front()))
    }

    /// Fetches, concurrently, a slice for every part whose buffer ran dry.
    async fn refill(&mut self) -> Result<(), StoreError> {
        let (store, filter, fetch) = (self.store, self.filter.as_str(), self.fetch);
        let mut pending: Vec<Fill<'_>> = Vec::new();
        for (i, part) in self.parts.iter_mut().enumerate() {
            if part.keys.is_empty() && !part.done {
                pending.push(Box::pin(fill(store, i, part, filter, fetch)));
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        join_all(pending).await
    }
}

/// Fetches slices of one part until it has a key or is exhausted; a slice
/// may hold no key when a filter matched none of the keys it looked at, and
/// the shard serves others before the next one.
async fn fill<S: Store>(
    store: &S,
    index: usize,
    part: &mut Part,
    filter: &str,
    fetch: usize,
) -> Result<(), StoreError> {
    let mut first = true;
    while part.keys.is_empty() && !part.done {
        if !first {
            store.yield_between_slices().await;
        }
        first = false;
        let slice = store.list_slice(index, part.cursor.as_deref(), filter, fetch).await?;
        part.keys.extend(slice.keys);
        part.done = slice.next.is_none();
        part.cursor = slice.next;
    }
    Ok(())
}

/// Polls every future until all finish; the first error wins.
async fn join_all(mut pending: Vec<Fill<'_>>) -> Result<(), StoreError> {
    let mut finished = vec![false; pending.len()];
    std::future::poll_fn(|cx| {
        for (future, done) in pending.iter_mut().zip(finished.iter_mut()) {
            if *done {
                continue;
            }
            if let Poll::Ready(result) = future.as_mut().poll(cx) {
                *done = true;
                if let Err(e) = result {
                    return Poll::Ready(Err(e));
                }
            }
        }
        if finished.iter().all(|d| *d) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::entry::Entry;
    use crate::store::key_slice::{KeySlice, SLICE};
    use std::cell::Cell;

    /// Parts of sorted keys in memory; counts the keys handed out.
    struct Parts {
        parts: Vec<Vec<String>>,
        handed: Cell<usize>,
        slices: Cell<usize>,
    }

    impl Parts {
        fn new(n: usize, keys: usize) -> Parts {
            let mut parts = vec![Vec::new(); n];
            for i in 0..keys {
                parts[(i * 7) % n].push(format!("k{i:05}"));
            }
            parts.iter_mut().for_each(|p| p.sort());
            Parts { parts, handed: Cell::new(0), slices: Cell::new(0) }
        }
    }

    impl Store for Parts {
        async fn read<R>(&self, _: &str, read: impl FnOnce(Option<&Entry>) -> R) -> Result<R, StoreError> {
            Ok(read(None))
        }
        async fn insert_new(&self, _: Entry) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn upsert(&self, _: Entry) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn remove(&self, _: &str) -> Result<Option<Entry>, StoreError> {
            Ok(None)
        }
        fn parts(&self) -> usize {
            self.parts.len()
        }
        fn slice_size(&self) -> usize {
            SLICE
        }
        async fn yield_between_slices(&self) {}
        async fn list_slice(
            &self,
            part: usize,
            after: Option<&str>,
            filter: &str,
            need: usize,
        ) -> Result<KeySlice, StoreError> {
            self.slices.set(self.slices.get() + 1);
            let keys = &self.parts[part];
            let start = after.map_or(0, |a| keys.partition_point(|k| k.as_str() <= a));
            // Looks at no more than 3 keys per slice, like a budget.
            let window = &keys[start..(start + 3).min(keys.len())];
            let mut out = Vec::new();
            let mut looked = 0;
            for k in window {
                if out.len() == need {
                    break;
                }
                looked += 1;
                if k.contains(filter) {
                    out.push(ListedKey::Text(k.clone()));
                }
            }
            self.handed.set(self.handed.get() + out.len());
            let next = (start + looked < keys.len()).then(|| keys[start + looked - 1].clone());
            Ok(KeySlice { keys: out, next })
        }
    }

    fn collect(store: &Parts, after: Option<&str>, filter: &str, want: Option<usize>, take: usize) -> Vec<String> {
        futures_lite::future::block_on(async {
            let mut l = Lister::new(store, after.map(str::to_owned), filter.to_owned(), want);
            let mut out = Vec::new();
            while out.len() < take {
                match l.next().await.unwrap() {
                    Some(k) => out.push(k.as_str().to_owned()),
                    None => break,
                }
            }
            out
        })
    }

    #[test]
    fn merges_parts_in_order_after_a_cursor() {
        let store = Parts::new(3, 100);
        let all: Vec<String> = (0..100).map(|i| format!("k{i:05}")).collect();
        assert_eq!(collect(&store, None, "", None, usize::MAX), all);
        assert_eq!(collect(&store, Some("k00041"), "", Some(6), 5), all[42..47]);
        assert_eq!(collect(&store, Some("k00099"), "", Some(6), 5), Vec::<String>::new());
        let tens: Vec<String> = all.iter().filter(|k| k.contains("5")).cloned().collect();
        assert_eq!(collect(&store, None, "5", None, usize::MAX), tens);
    }

    #[test]
    fn a_page_costs_about_its_size_per_part() {
        let store = Parts::new(4, 10_000);
        let page = collect(&store, Some("k05000"), "", Some(11), 11);
        assert_eq!(page.first().map(String::as_str), Some("k05001"));
        assert!(store.handed.get() <= 4 * 11 * 2, "handed out {} keys for a page of 11", store.handed.get());
    }
}
