//! What one shard owns: its partition of every in-memory store (every key,
//! with a replicated index) and its request metrics. Only the shard's own
//! thread touches a `Shard`; other threads reach it with messages (`mesh`
//! for shards, `ingest` for Kafka).

use super::applied::Applied;
use crate::metrics::{ShardMetrics, ShardSnapshot, StoreSize};
pub use crate::placement::{owner_of, Change};
use crate::placement::{Applied as ChangeApplied, Fanout};
use crate::store::compress::Dictionary;
use crate::store::entry::Entry;
use crate::store::key_slice::{KeySlice, SLICE};
use crate::store::memory::MemoryStore;
use std::cell::RefCell;

/// A compressed store's dictionaries and the current one's id.
pub type KeptDictionaries = (Vec<std::sync::Arc<Dictionary>>, Option<u32>);

pub struct Shard {
    pub id: usize,
    pub count: usize,
    /// Indexed like `cache.stores`; `None` for stores kept elsewhere (Redis).
    stores: RefCell<Vec<Option<MemoryStore>>>,
    pub metrics: RefCell<ShardMetrics>,
    /// Kafka positions applied here, and readers waiting for one.
    pub applied: Applied,
    /// With a replicated index: every shard's queue, through which this
    /// shard's API writes reach every shard in order with the records.
    fanout: Option<std::sync::Arc<Fanout>>,
}

impl Shard {
    pub fn new(id: usize, count: usize, memory_stores: &[bool]) -> Shard {
        let stores = memory_stores.iter().map(|m| m.then(MemoryStore::default)).collect();
        let metrics = RefCell::new(ShardMetrics::default());
        Shard { id, count, stores: RefCell::new(stores), metrics, applied: Applied::default(), fanout: None }
    }

    /// Makes this shard one replica of a replicated index, writing through `fanout`.
    pub fn replicated(mut self, fanout: std::sync::Arc<Fanout>) -> Shard {
        self.fanout = Some(fanout);
        self
    }

    /// The fan-out of a replicated index; `None` for a partitioned one.
    pub fn fanout(&self) -> Option<&Fanout> {
        self.fanout.as_deref()
    }

    /// The shard that holds `key`: this one with a replicated index, else the owner.
    pub fn holder_of(&self, key: &[u8]) -> usize {
        match self.fanout {
            Some(_) => self.id,
            None => owner_of(key, self.count),
        }
    }

    /// Keeps the bodies of the stores flagged in `compressed` zstd-compressed.
    pub fn with_compression(self, compressed: &[bool]) -> Shard {
        for (slot, _) in self.stores.borrow_mut().iter_mut().zip(compressed).filter(|(s, c)| **c && s.is_some()) {
            *slot = Some(MemoryStore::compressed());
        }
        self
    }

    /// Runs `f` on the entry for `key` without cloning it.
    pub fn with_entry<R>(&self, store: usize, key: &[u8], f: impl FnOnce(Option<&Entry>) -> R) -> R {
        let stores = self.stores.borrow();
        f(stores.get(store).and_then(Option::as_ref).and_then(|s| s.get(key)))
    }

    pub fn get(&self, store: usize, key: &[u8]) -> Option<Entry> {
        self.with_entry(store, key, |e| e.cloned())
    }

    pub fn insert_new(&self, store: usize, entry: Entry) -> bool {
        self.with_store(store, |s| s.insert_new(entry)).unwrap_or(false)
    }

    /// Stores `entry` whether or not its key exists; returns what it replaced.
    pub fn upsert(&self, store: usize, entry: Entry) -> Option<Entry> {
        self.with_store(store, |s| s.upsert(entry)).flatten()
    }

    pub fn remove(&self, store: usize, key: &[u8]) -> Option<Entry> {
        self.with_store(store, |s| s.remove(key)).flatten()
    }

    /// Applies one change; says whether it took effect and what it replaced.
    pub fn apply(&self, store: usize, change: Change) -> ChangeApplied {
        self.with_store(store, |s| match change {
            Change::Upsert(e) => ChangeApplied { done: true, previous: s.upsert(e) },
            Change::Delete(k) => {
                let previous = s.remove(&k);
                ChangeApplied { done: previous.is_some(), previous }
            }
            Change::InsertNew(e) => ChangeApplied { done: s.insert_new(e), previous: None },
        })
        .unwrap_or_default()
    }

    /// One bounded slice of the store's keys after `after` (see `MemoryStore::keys_after`).
    pub fn keys_after(&self, store: usize, after: Option<&[u8]>, filter: &str, need: usize) -> KeySlice {
        let stores = self.stores.borrow();
        let Some(s) = stores.get(store).and_then(Option::as_ref) else { return KeySlice::default() };
        s.keys_after(after, filter, need, SLICE)
    }

    /// Records that the stores include every record below `next` on the
    /// partition (a snapshot loaded at start).
    pub fn note_applied(&self, topic: &str, partition: i32, next: i64) {
        self.applied.advance(topic, partition, next);
    }

    /// (topic, partition, next offset) for every partition applied so far.
    pub fn applied_positions(&self) -> Vec<(String, i32, i64)> {
        self.applied.positions()
    }

    /// Pins every in-memory store for a snapshot (see `MemoryStore::pin`):
    /// per store index, its entries as they are now; `None` for other stores.
    ///
    /// # Safety
    /// `unpin_all` must be called after the last use of the returned copies.
    pub unsafe fn pin_all(&self) -> Vec<Option<Vec<std::mem::ManuallyDrop<Entry>>>> {
        let mut stores = self.stores.borrow_mut();
        // SAFETY: passed on to the caller.
        stores.iter_mut().map(|s| s.as_mut().map(|m| unsafe { m.pin() })).collect()
    }

    /// Per store index, a compressed store's dictionaries and current
    /// dictionary id (what its entries need to be read back); `None` for
    /// plain and other stores.
    pub fn kept_dictionaries(&self) -> Vec<Option<KeptDictionaries>> {
        self.stores.borrow().iter().map(|s| s.as_ref().and_then(MemoryStore::kept_dictionaries)).collect()
    }

    /// Ends the pin of `pin_all`, returning the entries it kept alive.
    pub fn unpin_all(&self) -> Vec<Entry> {
        self.stores.borrow_mut().iter_mut().flatten().flat_map(MemoryStore::unpin).collect()
    }

    /// Replaces an in-memory store's contents (a snapshot loaded at start).
    /// Contents of another kind than the store (plain for a compressed one,
    /// say) go through the store entry by entry like new records.
    pub fn install(&self, store: usize, contents: MemoryStore) {
        self.with_store(store, |s| {
            if s.is_compressed() == contents.is_compressed() {
                *s = contents;
            } else {
                contents.iter().for_each(|e| drop(s.upsert(e.clone())));
            }
        });
    }

    /// Every entry of every in-memory store, by store index (shared, not
    /// copied): what the other replicas of a replicated index load.
    pub fn entries(&self) -> Vec<(usize, Vec<Entry>)> {
        let stores = self.stores.borrow();
        let held = stores.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|s| (i, s)));
        held.map(|(i, s)| (i, s.iter().cloned().collect())).collect()
    }

    fn with_store<R>(&self, store: usize, f: impl FnOnce(&mut MemoryStore) -> R) -> Option<R> {
        let mut stores = self.stores.borrow_mut();
        stores.get_mut(store).and_then(Option::as_mut).map(f)
    }

    pub fn snapshot(&self) -> ShardSnapshot {
        let stores = self.stores.borrow().iter().map(|s| s.as_ref().map(store_size)).collect();
        ShardSnapshot { shard: self.id, metrics: self.metrics.borrow().clone(), stores }
    }
}

fn store_size(m: &MemoryStore) -> StoreSize {
    let (trainings, dictionaries) = m.dictionaries();
    StoreSize {
        entries: m.len() as u64,
        bytes: m.bytes() as u64,
        raw_bytes: m.raw_bytes() as u64,
        dictionaries: dictionaries as u64,
        trainings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_stable_and_spread() {
        let mut counts = [0usize; 4];
        for i in 0..40_000 {
            let k = format!("acct-{i:08}");
            let o = owner_of(k.as_bytes(), 4);
            assert_eq!(o, owner_of(k.as_bytes(), 4));
            counts[o] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert_eq!(owner_of(b"anything", 1), 0);
    }

    #[test]
    fn shard_applies_changes_to_memory_stores_only() {
        let shard = Shard::new(0, 1, &[true, false]);
        let e = Entry::from_parts(b"k", b"\"1\"", b"{}").unwrap();
        shard.apply(0, Change::Upsert(e.clone()));
        shard.apply(1, Change::Upsert(e.clone()));
        assert_eq!(shard.get(0, b"k"), Some(e));
        assert_eq!(shard.get(1, b"k"), None);
        shard.apply(0, Change::Delete(b"k".to_vec().into()));
        assert_eq!(shard.get(0, b"k"), None);
        let snap = shard.snapshot();
        assert_eq!(snap.stores.len(), 2);
        assert!(snap.stores[1].is_none());
    }
}
