//! What one shard owns: its partition of every in-memory store and its
//! request metrics. Only the shard's own thread touches a `Shard`; other
//! threads reach it with messages (`mesh` for shards, `ingest` for Kafka).

use crate::metrics::{ShardMetrics, ShardSnapshot, StoreSize};
use crate::store::entry::Entry;
use crate::store::memory::MemoryStore;
use std::cell::RefCell;
use std::hash::BuildHasher;

/// Fixed seed: every thread, and every restart, must agree on owners.
const OWNER_SEED: u64 = 0x5eed_0f0a_11ca_5e00;

/// The one function that decides which shard owns a key. It is seeded apart
/// from the shard maps' own hashers, so a shard's keys still spread evenly
/// over its map's buckets.
pub fn owner_of(key: &[u8], shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let h = foldhash::fast::FixedState::with_seed(OWNER_SEED).hash_one(key);
    // Lemire's range reduction on the high half: uniform, no division.
    (((h >> 32) * shards as u64) >> 32) as usize
}

/// A change to one key of one store, applied by the key's owner.
#[derive(Debug)]
pub enum Change {
    Upsert(Entry),
    Delete(Box<[u8]>),
}

pub struct Shard {
    pub id: usize,
    pub count: usize,
    /// Indexed like `cache.stores`; `None` for stores kept elsewhere (Redis).
    stores: RefCell<Vec<Option<MemoryStore>>>,
    pub metrics: RefCell<ShardMetrics>,
}

impl Shard {
    pub fn new(id: usize, count: usize, memory_stores: &[bool]) -> Shard {
        let stores = memory_stores.iter().map(|m| m.then(MemoryStore::default)).collect();
        Shard { id, count, stores: RefCell::new(stores), metrics: RefCell::new(ShardMetrics::default()) }
    }

    pub fn owns(&self, key: &[u8]) -> bool {
        owner_of(key, self.count) == self.id
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

    pub fn remove(&self, store: usize, key: &[u8]) -> Option<Entry> {
        self.with_store(store, |s| s.remove(key)).flatten()
    }

    pub fn apply(&self, store: usize, change: Change) {
        self.with_store(store, |s| match change {
            Change::Upsert(e) => drop(s.upsert(e)),
            Change::Delete(k) => drop(s.remove(&k)),
        });
    }

    pub fn keys(&self, store: usize, filter: &str) -> Vec<String> {
        self.with_store(store, |s| s.keys(filter)).unwrap_or_default()
    }

    fn with_store<R>(&self, store: usize, f: impl FnOnce(&mut MemoryStore) -> R) -> Option<R> {
        let mut stores = self.stores.borrow_mut();
        stores.get_mut(store).and_then(Option::as_mut).map(f)
    }

    pub fn snapshot(&self) -> ShardSnapshot {
        let stores = self
            .stores
            .borrow()
            .iter()
            .map(|s| s.as_ref().map(|m| StoreSize { entries: m.len() as u64, bytes: m.bytes() as u64 }))
            .collect();
        ShardSnapshot { shard: self.id, metrics: self.metrics.borrow().clone(), stores }
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
