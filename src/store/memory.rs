//! The in-memory store: one shard's partition of one store, a plain
//! `hashbrown` table of entries owned by that shard alone.
//!
//! No lock guards it: only the owning shard's thread ever touches it; other
//! shards ask through the mesh (`runtime::mesh`).

use super::entry::Entry;
use foldhash::fast::RandomState;
use hashbrown::hash_table::{Entry as Slot, HashTable};
use std::hash::BuildHasher;

/// Keys of one store that hash to one shard.
pub struct MemoryStore {
    table: HashTable<Entry>,
    hasher: RandomState,
    bytes: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore { table: HashTable::new(), hasher: RandomState::default(), bytes: 0 }
    }
}

impl MemoryStore {
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.table.find(self.hash(key), |e| e.key() == key)
    }

    /// Inserts or replaces; returns the previous entry.
    pub fn upsert(&mut self, entry: Entry) -> Option<Entry> {
        let hash = self.hash(entry.key());
        self.bytes += entry.weight();
        let hasher = &self.hasher;
        match self.table.entry(hash, |e| e.key() == entry.key(), |e| hasher.hash_one(e.key())) {
            Slot::Occupied(mut o) => {
                let old = std::mem::replace(o.get_mut(), entry);
                self.bytes -= old.weight();
                Some(old)
            }
            Slot::Vacant(v) => {
                v.insert(entry);
                None
            }
        }
    }

    /// Inserts only when the key is absent; returns false when it exists.
    pub fn insert_new(&mut self, entry: Entry) -> bool {
        if self.get(entry.key()).is_some() {
            return false;
        }
        self.upsert(entry);
        true
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let hash = self.hash(key);
        let removed = self.table.find_entry(hash, |e| e.key() == key).ok().map(|o| o.remove().0);
        if let Some(e) = &removed {
            self.bytes -= e.weight();
        }
        removed
    }

    /// Keys containing `filter` (all when empty), unsorted.
    pub fn keys(&self, filter: &str) -> Vec<String> {
        self.table
            .iter()
            .map(Entry::key_str)
            .filter(|k| filter.is_empty() || k.contains(filter))
            .map(str::to_owned)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Bytes of all entries (keys, ETags, bodies), not counting the table.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(k: &str, body: &str) -> Entry {
        Entry::from_parts(k.as_bytes(), b"\"1\"", body.as_bytes()).unwrap()
    }

    #[test]
    fn upsert_get_remove_and_bytes() {
        let mut s = MemoryStore::default();
        assert!(s.upsert(entry("a", "{}")).is_none());
        assert_eq!(s.get(b"a").unwrap().body(), b"{}");
        let old = s.upsert(entry("a", "{\"x\":1}")).unwrap();
        assert_eq!(old.body(), b"{}");
        assert_eq!(s.len(), 1);
        assert_eq!(s.bytes(), entry("a", "{\"x\":1}").weight());
        assert!(!s.insert_new(entry("a", "{}")));
        assert!(s.insert_new(entry("b", "{}")));
        assert_eq!(s.remove(b"a").unwrap().body(), b"{\"x\":1}");
        assert!(s.remove(b"a").is_none());
        assert_eq!(s.bytes(), entry("b", "{}").weight());
    }

    #[test]
    fn keys_filter_by_substring() {
        let mut s = MemoryStore::default();
        for k in ["acct-1", "acct-2", "other"] {
            s.upsert(entry(k, "{}"));
        }
        let mut keys = s.keys("acct");
        keys.sort();
        assert_eq!(keys, vec!["acct-1", "acct-2"]);
        assert_eq!(s.keys("").len(), 3);
    }
}
