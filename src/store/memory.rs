//! The in-memory store: one shard's partition of one store, a plain
//! `hashbrown` table of entries owned by that shard alone, plus an ordered
//! index of the same entries for key listings.
//!
//! No lock guards it: only the owning shard's thread ever touches it; other
//! shards ask through the mesh (`runtime::mesh`).
//!
//! The ordered index (`store::key_index`) holds the table's entries once more
//! (each a second reference to the same allocation, so a key costs one more
//! 8-byte pointer over its chunk's fill, measured by `examples/index_memory.rs`).
//! With it, a listing page that starts after a given key costs two binary
//! searches plus the keys it returns, instead of a sort of every key.

use super::compress::{Compressor, Dictionary};
use super::entry::Entry;
use super::key_index::KeyIndex;
use super::key_slice::{KeySlice, ListedKey};
use foldhash::fast::RandomState;
use hashbrown::hash_table::{Entry as Slot, HashTable};
use std::hash::BuildHasher;

/// Keys of one store that hash to one shard.
pub struct MemoryStore {
    table: HashTable<Entry>,
    order: KeyIndex,
    hasher: RandomState,
    bytes: usize,
    /// While a snapshot reads pinned entries: the entries replaced or
    /// removed since, kept alive until it is done (see `pin`).
    retired: Option<Vec<Entry>>,
    /// Bytes the entries would hold uncompressed.
    raw_bytes: usize,
    /// Set for a `compression: zstd` store.
    compression: Option<Box<Compressor>>,
    /// Keys stored uncompressed while the first dictionary was not ready.
    backlog: Vec<Box<[u8]>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            table: HashTable::new(),
            order: KeyIndex::default(),
            hasher: RandomState::default(),
            bytes: 0,
            raw_bytes: 0,
            compression: None,
            backlog: Vec::new(),
            retired: None,
        }
    }
}

/// A plain store of `entries` (the last of equal keys wins), sized once.
impl FromIterator<Entry> for MemoryStore {
    fn from_iter<I: IntoIterator<Item = Entry>>(entries: I) -> MemoryStore {
        let entries = entries.into_iter();
        let mut store = MemoryStore::default();
        store.reserve(entries.size_hint().0);
        entries.for_each(|e| drop(store.upsert(e)));
        store
    }
}

impl MemoryStore {
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.table.find(self.hash(key), |e| e.key() == key)
    }

    /// A store that keeps bodies zstd-compressed (see `store::compress`).
    pub fn compressed() -> Self {
        MemoryStore { compression: Some(Box::default()), ..MemoryStore::default() }
    }

    /// A compressed store going on with `compressor` (its dictionaries read
    /// back from a snapshot); fill it, then call `drop_unused_dictionaries`.
    pub fn resumed(compressor: Compressor) -> Self {
        MemoryStore { compression: Some(Box::new(compressor)), ..MemoryStore::default() }
    }

    /// Lets go of resumed dictionaries that no entry of the store uses.
    pub fn drop_unused_dictionaries(&mut self) {
        if let Some(c) = self.compression.as_mut() {
            c.drop_unused();
        }
    }

    /// For a compressed store: the dictionaries its entries use and the
    /// current one's id (see `Compressor::kept_dictionaries`).
    pub fn kept_dictionaries(&self) -> Option<(Vec<std::sync::Arc<Dictionary>>, Option<u32>)> {
        self.compression.as_ref().map(|c| c.kept_dictionaries())
    }

    /// Inserts or replaces; returns the previous entry.
    pub fn upsert(&mut self, entry: Entry) -> Option<Entry> {
        let entry = self.pack(entry);
        let old = self.put(entry);
        if let Some(old) = &old {
            self.forget(old);
        }
        self.work_backlog();
        old
    }

    /// The entry as this store keeps it: compressed when it compresses.
    fn pack(&mut self, entry: Entry) -> Entry {
        let Some(c) = self.compression.as_mut() else { return entry };
        if let Some((dict, _)) = entry.compression() {
            c.retain(dict);
            return entry;
        }
        let packed = c.admit(entry.body()).and_then(|p| {
            let compressed = entry.compressed_from(p.dict, p.frame);
            compressed.ok().map(|e| (p.dict, e))
        });
        match packed {
            Some((dict, compressed)) => {
                c.retain(dict);
                compressed
            }
            None => {
                if !c.ready() {
                    self.backlog.push(entry.key().into());
                }
                entry
            }
        }
    }

    /// Lets go of what `old` held in the compression state.
    fn forget(&mut self, old: &Entry) {
        if let (Some(c), Some((dict, _))) = (self.compression.as_mut(), old.compression()) {
            c.release(dict);
        }
    }

    /// Compresses a few of the bodies stored before the first dictionary.
    fn work_backlog(&mut self) {
        let ready = self.compression.as_ref().is_some_and(|c| c.ready());
        for _ in 0..super::compress::BACKLOG_SLICE {
            if !ready {
                return;
            }
            let Some(key) = self.backlog.pop() else { return };
            let Some(entry) = self.get(&key).filter(|e| !e.is_compressed()).cloned() else { continue };
            let c = self.compression.as_mut().expect("ready implies compression");
            let Some(p) = c.compress_backlog(entry.body()) else { continue };
            let dict = p.dict;
            if let Ok(compressed) = entry.compressed_from(dict, p.frame) {
                c.retain(dict);
                self.put(compressed);
            }
        }
    }

    /// Blocks until a dictionary training under way is done, then works off
    /// the whole backlog (tools and tests: a shard never waits).
    pub fn settle(&mut self) {
        if let Some(c) = self.compression.as_mut() {
            c.wait_for_training();
        }
        while !self.backlog.is_empty() && self.compression.as_ref().is_some_and(|c| c.ready()) {
            self.work_backlog();
        }
    }

    /// Dictionary trainings so far and dictionaries in use (zero for a plain store).
    /// Whether this is a `compression: zstd` store.
    pub fn is_compressed(&self) -> bool {
        self.compression.is_some()
    }

    pub fn dictionaries(&self) -> (u64, usize) {
        self.compression.as_ref().map_or((0, 0), |c| (c.trainings, c.dictionaries()))
    }

    /// Bytes of all entries as if no body were compressed.
    pub fn raw_bytes(&self) -> usize {
        self.raw_bytes
    }

    fn put(&mut self, entry: Entry) -> Option<Entry> {
        let hash = self.hash(entry.key());
        self.bytes += entry.weight();
        self.raw_bytes += entry.raw_weight();
        let hasher = &self.hasher;
        let indexed = entry.clone();
        let old = match self.table.entry(hash, |e| e.key() == entry.key(), |e| hasher.hash_one(e.key())) {
            Slot::Occupied(mut o) => {
                let old = std::mem::replace(o.get_mut(), entry);
                self.bytes -= old.weight();
                self.retire(&old);
                self.raw_bytes -= old.raw_weight();
                Some(old)
            }
            Slot::Vacant(v) => {
                v.insert(entry);
                None
            }
        };
        self.order.put(indexed);
        old
    }

    /// Makes room in the table for `additional` more keys at once (a
    /// snapshot loading), instead of growing it step by step.
    pub fn reserve(&mut self, additional: usize) {
        let hasher = &self.hasher;
        self.table.reserve(additional, |e| hasher.hash_one(e.key()));
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
            self.raw_bytes -= e.raw_weight();
            self.order.remove(key);
            self.retire(e);
            self.forget(e);
        }
        removed
    }

    /// Keys after `after` (from the first when `None`) that contain `filter`,
    /// ascending: at most `need` of them, looking at no more than `budget`
    /// keys, so one call costs a tree descent plus `budget` steps at most.
    /// `next` says where to resume when the slice stopped before the end.
    pub fn keys_after(&self, after: Option<&[u8]>, filter: &str, need: usize, budget: usize) -> KeySlice {
        let mut keys = Vec::new();
        let mut last: Option<&str> = None;
        for (examined, entry) in self.order.after(after).enumerate() {
            if keys.len() >= need.max(1) || examined >= budget.max(1) {
                let next = last.map(str::to_owned);
                return KeySlice { keys, next };
            }
            let key = entry.key_str();
            if filter.is_empty() || key.contains(filter) {
                keys.push(ListedKey::Shared(entry.clone()));
            }
            last = Some(key);
        }
        KeySlice { keys, next: None }
    }

    fn retire(&mut self, old: &Entry) {
        if let Some(retired) = &mut self.retired {
            retired.push(old.clone());
        }
    }

    /// Every entry as it is now, in key order, for a snapshot, without
    /// touching the entries themselves: one sequential pass over the ordered
    /// index's chunks of pointers (about a millisecond per 500 000 keys), not
    /// a reference-count increment per entry (a cache miss each). In key
    /// order, so that loading the snapshot appends to the index.
    ///
    /// # Safety
    /// The returned copies do not own their entries. The caller must call
    /// `unpin` only after the last use of every copy; until then this store
    /// keeps every entry it replaces or removes alive, so the copies stay
    /// valid. Only one pin may be active at a time.
    pub unsafe fn pin(&mut self) -> Vec<std::mem::ManuallyDrop<Entry>> {
        assert!(self.retired.is_none(), "a snapshot already pins this store");
        self.retired = Some(Vec::new());
        // SAFETY: a bitwise copy that is never dropped borrows the entry; the
        // retired list keeps it alive until `unpin` (the caller's contract).
        self.order.after(None).map(|e| std::mem::ManuallyDrop::new(unsafe { std::ptr::read(e) })).collect()
    }

    /// Ends a pin: hands back the entries kept alive for it, for the caller
    /// to drop (in slices, if there are many).
    pub fn unpin(&mut self) -> Vec<Entry> {
        self.retired.take().unwrap_or_default()
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.table.iter()
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

    /// Heap bytes of the hash table's slots and control bytes, and of the
    /// ordered index, beside the entries (for the memory example).
    pub fn overhead(&self) -> (usize, usize) {
        let capacity = self.table.capacity();
        let buckets = if capacity < 8 { capacity + 1 } else { (capacity * 8 / 7).next_power_of_two() };
        let table = if capacity == 0 { 0 } else { buckets * (std::mem::size_of::<Entry>() + 1) + 16 };
        (table, self.order.heap_bytes())
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

    fn names(slice: KeySlice) -> (Vec<String>, Option<String>) {
        (slice.keys.iter().map(|k| k.as_str().to_owned()).collect(), slice.next)
    }

    #[test]
    fn pinned_entries_outlive_replacement_and_removal() {
        let mut s = MemoryStore::default();
        s.upsert(entry("a", "{\"v\":1}"));
        s.upsert(entry("b", "{\"v\":1}"));
        // SAFETY: `unpin` is called after the last use of `pinned`.
        let pinned = unsafe { s.pin() };
        s.upsert(entry("a", "{\"v\":2}"));
        s.remove(b"b");
        s.upsert(entry("c", "{}"));
        let mut seen: Vec<(String, String)> =
            pinned.iter().map(|e| (e.key_str().to_string(), String::from_utf8(e.body().to_vec()).unwrap())).collect();
        seen.sort();
        assert_eq!(seen, [("a".to_string(), "{\"v\":1}".to_string()), ("b".to_string(), "{\"v\":1}".to_string())]);
        drop(pinned);
        assert_eq!(s.unpin().len(), 2);
        assert!(s.unpin().is_empty());
        assert_eq!(s.get(b"a").unwrap().body(), b"{\"v\":2}");
    }

    #[test]
    fn keys_come_in_order_after_a_cursor_and_filtered() {
        let mut s = MemoryStore::default();
        for k in ["b", "acct-2", "other", "acct-1", "zz"] {
            s.upsert(entry(k, "{}"));
        }
        s.upsert(entry("b", "{\"x\":1}"));
        s.remove(b"zz");
        let all = names(s.keys_after(None, "", 10, 100));
        assert_eq!(all, (vec!["acct-1".to_string(), "acct-2".into(), "b".into(), "other".into()], None));
        let page = names(s.keys_after(Some(b"acct-1"), "", 2, 100));
        assert_eq!(page, (vec!["acct-2".to_string(), "b".into()], Some("b".to_string())));
        let filtered = names(s.keys_after(None, "acct", 10, 100));
        assert_eq!(filtered.0, vec!["acct-1", "acct-2"]);
        // A budget of two keys examined stops early and says where to resume.
        let bounded = names(s.keys_after(None, "other", 10, 2));
        assert_eq!(bounded, (vec![], Some("acct-2".to_string())));
        let rest = names(s.keys_after(Some(b"acct-2"), "other", 10, 2));
        assert_eq!(rest, (vec!["other".to_string()], None));
        assert_eq!(s.order.len(), s.len());
    }

    fn customer(i: usize) -> String {
        format!(
            r#"{{"accountId":"acct-{i:08}","name":"Customer {i}","email":"customer{i}@example.com","plan":"{}","country":"{}","updatedAt":{}}}"#,
            ["free", "pro", "team"][i % 3],
            ["DE", "FR", "US", "JP"][i % 4],
            1_700_000_000_000u64 + i as u64
        )
    }

    /// Other records, alike among themselves but unlike `customer`.
    fn order(i: usize) -> String {
        format!(
            r#"[{i},"SKU-{:05}",{},"EUR",true,null,"warehouse-{}","{}"]"#,
            i * 7 % 99_991,
            i % 97,
            i % 5,
            "z".repeat(i % 40)
        )
    }

    fn noise(i: usize) -> Vec<u8> {
        let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..(i % 300))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn served(e: &Entry) -> Vec<u8> {
        let mut out = b"HTTP".to_vec();
        e.write_body(&mut out).unwrap();
        out.split_off(4)
    }

    #[test]
    fn every_body_comes_back_before_and_after_training() {
        let mut s = MemoryStore::compressed();
        let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
        let mut put = |s: &mut MemoryStore, k: String, b: Vec<u8>| {
            s.upsert(Entry::from_parts(k.as_bytes(), b"\"7\"", &b).unwrap());
            bodies.push((k, b));
        };
        put(&mut s, "empty-before".into(), Vec::new());
        for i in 0..3_000 {
            let body = if i % 10 == 9 { noise(i) } else { customer(i).into_bytes() };
            put(&mut s, format!("k{i}"), body);
        }
        s.settle();
        assert_eq!(s.dictionaries(), (1, 1));
        put(&mut s, "empty-after".into(), Vec::new());
        put(&mut s, "big".into(), customer(1).repeat(2_000).into_bytes());
        for i in 3_000..4_000 {
            put(&mut s, format!("k{i}"), if i % 10 == 9 { noise(i) } else { customer(i).into_bytes() });
        }
        s.settle();
        let mut compressed = 0;
        for (k, b) in &bodies {
            let e = s.get(k.as_bytes()).unwrap();
            assert_eq!((served(e), &*e.etag(), e.raw_len()), (b.clone(), &b"\"7\""[..], b.len()), "{k}");
            compressed += usize::from(e.is_compressed());
        }
        // The sample (first 2 000) was compressed from the backlog too; the
        // random bodies stay as they are.
        assert!(compressed >= 3_500, "{compressed} of {}", bodies.len());
        assert!(s.bytes() * 2 < s.raw_bytes(), "{} of {}", s.bytes(), s.raw_bytes());
        assert!(!s.get(b"k9").unwrap().is_compressed());
        let removed = s.remove(b"k1").unwrap();
        assert_eq!(served(&removed), customer(1).into_bytes());
        assert_eq!(&*removed.raw_body().unwrap(), customer(1).as_bytes());
        let plain: usize = bodies.iter().filter(|(k, _)| k != "k1").map(|(k, b)| 12 + k.len() + 8 + b.len()).sum();
        assert_eq!(s.raw_bytes(), plain);
    }

    #[test]
    fn retraining_keeps_old_entries_readable_and_drops_unused_dictionaries() {
        let mut s = MemoryStore::compressed();
        for i in 0..2_000 {
            s.upsert(entry(&format!("c{i}"), &customer(i)));
        }
        s.settle();
        let first = s.get(b"c5").unwrap().compression().unwrap().0;
        // Records of another shape make the ratio drift: after a window the
        // store samples them and trains a second dictionary.
        for i in 0..super::super::compress::WINDOW + 2_000 {
            s.upsert(entry(&format!("o{i}"), &order(i)));
        }
        s.settle();
        assert_eq!(s.dictionaries(), (2, 2));
        let newer = s.get(b"o1").unwrap().clone();
        s.upsert(entry("o-late", &order(7)));
        let late = s.get(b"o-late").unwrap().compression().unwrap().0;
        assert_ne!(late, first);
        assert_eq!(served(s.get(b"c5").unwrap()), customer(5).into_bytes());
        assert_eq!(served(s.get(b"o-late").unwrap()), order(7).into_bytes());
        assert_eq!(served(&newer), order(1).into_bytes());
        // Once no entry uses the first dictionary (the customers, and the
        // orders stored before the second one was ready) it is dropped.
        let keys = (0..2_000).map(|i| format!("c{i}")).chain((0..12_000).map(|i| format!("o{i}")));
        for k in keys {
            if s.get(k.as_bytes()).and_then(Entry::compression).is_some_and(|(d, _)| d == first) {
                s.remove(k.as_bytes());
            }
        }
        assert_eq!(s.dictionaries().1, 1);
        let mut out = Vec::new();
        assert!(crate::store::compress::decompress_into(first, b"x", 1, &mut out).is_err());
    }

    #[test]
    fn raw_bytes_of_a_compressed_store_are_the_plain_stores_bytes() {
        let (mut plain, mut zipped) = (MemoryStore::default(), MemoryStore::compressed());
        for i in 0..3_000 {
            let etag = format!("\"{}\"", 1_700_000_000_000u64 + i as u64);
            let e = Entry::from_parts(format!("c{i}").as_bytes(), etag.as_bytes(), customer(i).as_bytes()).unwrap();
            plain.upsert(e.clone());
            zipped.upsert(e);
        }
        zipped.settle();
        assert_eq!(
            plain.get(b"c7").unwrap().weight(),
            12 + 2 + customer(7).len(),
            "the ETag is the body's last number"
        );
        assert!(zipped.get(b"c7").unwrap().is_compressed());
        assert_eq!(&*zipped.get(b"c7").unwrap().etag(), &*plain.get(b"c7").unwrap().etag());
        assert_eq!(zipped.raw_bytes(), plain.bytes());
    }

    #[test]
    fn forwarded_entries_decode_on_another_thread() {
        let mut s = MemoryStore::compressed();
        for i in 0..2_100 {
            s.upsert(entry(&format!("c{i}"), &customer(i)));
        }
        s.settle();
        let e = s.get(b"c2050").unwrap().clone();
        assert!(e.is_compressed());
        let body = std::thread::spawn(move || served(&e)).join().unwrap();
        assert_eq!(body, customer(2050).into_bytes());
    }
}
