//! The ordered key index of an in-memory store: the store's entries once
//! more, sorted by key bytes (UTF-8 byte order is code point order), in
//! chunks of at most [`CHUNK`] one-word entry pointers.
//!
//! Why not a `BTreeSet` of the entries: its nodes hold at most 11 keys, so a
//! key costs its 8-byte pointer plus a share of a node's parent pointer,
//! lengths and child pointers, in nodes left half full by a topic replayed in
//! key order, and a malloc header per node: 18 to 23 bytes per key at a
//! million keys (`examples/index_memory.rs`). Here a key costs its pointer
//! over the chunks' fill, and a chunk that fills while keys arrive in order
//! (inserted at its end) stays full when it splits: about 8 to 12 bytes per
//! key. A lookup is a binary search over the chunks' first keys and one
//! within a chunk (as many key comparisons as the tree's descent); an insert
//! moves at most a chunk's 4 KiB.

use super::entry::Entry;

/// Most entries in one chunk.
pub const CHUNK: usize = 512;

/// A chunk that shrinks to this many entries together with a neighbour is
/// merged into it, so deletions do not leave many near-empty chunks.
const MERGE: usize = CHUNK / 2;

/// Entries sorted by key, without duplicates.
#[derive(Default)]
pub struct KeyIndex {
    /// Each non-empty and sorted; every key of a chunk sorts before every key of the next.
    chunks: Vec<Vec<Entry>>,
    len: usize,
}

impl KeyIndex {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunk that holds `key` or where it belongs (the first one when
    /// `key` sorts before every key).
    fn chunk_of(&self, key: &[u8]) -> usize {
        self.chunks.partition_point(|c| c[0].key() <= key).saturating_sub(1)
    }

    /// (chunk, position of `key` in it, or where it would go).
    fn find(&self, key: &[u8]) -> (usize, Result<usize, usize>) {
        let c = self.chunk_of(key);
        let at = self.chunks.get(c).map_or(Err(0), |chunk| chunk.binary_search_by(|e| e.key().cmp(key)));
        (c, at)
    }

    /// Adds `entry`, or replaces the entry with its key and returns that one.
    /// A key after every other (a snapshot loading, a topic replayed in key
    /// order) is appended after one comparison.
    pub fn put(&mut self, entry: Entry) -> Option<Entry> {
        if let Some(last) = self.chunks.last_mut().filter(|c| c[c.len() - 1].key() < entry.key()) {
            self.len += 1;
            if last.len() < CHUNK {
                last.push(entry);
            } else {
                let mut next = Vec::with_capacity(CHUNK);
                next.push(entry);
                self.chunks.push(next);
            }
            return None;
        }
        match self.find(entry.key()) {
            (c, Ok(i)) => Some(std::mem::replace(&mut self.chunks[c][i], entry)),
            (c, Err(i)) => {
                self.insert_at(c, i, entry);
                None
            }
        }
    }

    fn insert_at(&mut self, c: usize, i: usize, entry: Entry) {
        self.len += 1;
        if self.chunks.is_empty() {
            self.chunks.push(vec![entry]);
            return;
        }
        let chunk = &mut self.chunks[c];
        if chunk.len() < CHUNK {
            chunk.insert(i, entry);
            return;
        }
        // Full: split in halves, or, when the key goes near the end (keys
        // arriving in order), where it goes, leaving this chunk (nearly) full.
        let at = if i >= CHUNK * 7 / 8 { i } else { CHUNK / 2 };
        let mut right = Vec::with_capacity(CHUNK);
        right.extend(chunk.drain(at..));
        if i < at {
            chunk.insert(i, entry);
        } else {
            right.insert(i - at, entry);
        }
        self.chunks.insert(c + 1, right);
    }

    /// Removes the entry with `key`.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let (c, Ok(i)) = self.find(key) else { return None };
        let removed = self.chunks[c].remove(i);
        self.len -= 1;
        if self.chunks[c].is_empty() {
            self.chunks.remove(c);
        } else if c + 1 < self.chunks.len() && self.chunks[c].len() + self.chunks[c + 1].len() <= MERGE {
            self.merge(c);
        } else if c > 0 && self.chunks[c - 1].len() + self.chunks[c].len() <= MERGE {
            self.merge(c - 1);
        }
        Some(removed)
    }

    /// Moves chunk `left + 1` to the end of chunk `left`.
    fn merge(&mut self, left: usize) {
        let right = self.chunks.remove(left + 1);
        self.chunks[left].extend(right);
    }

    /// Entries in key order, from the first whose key sorts after `after`
    /// (from the first of all when `None`).
    pub fn after(&self, after: Option<&[u8]>) -> impl Iterator<Item = &Entry> {
        let (c, i) = match after {
            None => (0, 0),
            Some(key) => match self.find(key) {
                (c, Ok(i)) => (c, i + 1),
                (c, Err(i)) => (c, i),
            },
        };
        let chunks = self.chunks.get(c..).unwrap_or_default();
        chunks.iter().enumerate().flat_map(move |(n, chunk)| chunk[if n == 0 { i } else { 0 }..].iter())
    }

    /// Heap bytes of the index itself (its chunks' pointers, not the entries).
    pub fn heap_bytes(&self) -> usize {
        let pointers: usize = self.chunks.iter().map(Vec::capacity).sum();
        self.chunks.capacity() * std::mem::size_of::<Vec<Entry>>() + pointers * std::mem::size_of::<Entry>()
    }

    /// Chunks (for tests and the memory example).
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn entry(key: &str, v: u32) -> Entry {
        Entry::from_parts(key.as_bytes(), b"\"1\"", v.to_string().as_bytes()).unwrap()
    }

    fn keys(index: &KeyIndex, after: Option<&str>) -> Vec<String> {
        index.after(after.map(str::as_bytes)).map(|e| e.key_str().to_owned()).collect()
    }

    fn check(index: &KeyIndex, model: &BTreeMap<String, u32>) {
        assert_eq!(index.len(), model.len());
        let all: Vec<(String, Vec<u8>)> = index.after(None).map(|e| (e.key_str().into(), e.body().to_vec())).collect();
        let want: Vec<(String, Vec<u8>)> = model.iter().map(|(k, v)| (k.clone(), v.to_string().into_bytes())).collect();
        assert_eq!(all, want);
        assert!(index.chunks.iter().all(|c| !c.is_empty() && c.len() <= CHUNK));
    }

    /// xorshift, so the test is the same every run.
    fn next(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    #[test]
    fn agrees_with_a_sorted_map_under_random_puts_replaces_and_removes() {
        let (mut index, mut model, mut x) = (KeyIndex::default(), BTreeMap::new(), 7u64);
        for round in 0..40_000u32 {
            let key = format!("k{:05}", next(&mut x) % 6_000);
            if next(&mut x).is_multiple_of(3) {
                assert_eq!(
                    index.remove(key.as_bytes()).map(|e| e.key_str().to_owned()),
                    model.remove(&key).map(|_| key)
                );
            } else {
                let old = index.put(entry(&key, round)).map(|e| e.body().to_vec());
                assert_eq!(old, model.insert(key, round).map(|v| v.to_string().into_bytes()));
            }
            if round % 5_000 == 0 {
                check(&index, &model);
            }
        }
        check(&index, &model);
        for (k, _) in model.clone() {
            index.remove(k.as_bytes()).unwrap();
        }
        assert!(index.is_empty() && index.chunks() == 0 && index.after(None).next().is_none());
    }

    #[test]
    fn iterates_after_a_key_present_or_absent() {
        let mut index = KeyIndex::default();
        for i in (0..3_000).step_by(2) {
            index.put(entry(&format!("k{i:05}"), i));
        }
        assert_eq!(keys(&index, Some("k00010"))[..2], ["k00012", "k00014"]);
        assert_eq!(keys(&index, Some("k00011"))[..2], ["k00012", "k00014"]);
        assert_eq!(keys(&index, Some("a")).len(), 1_500);
        assert!(keys(&index, Some("k02998")).is_empty() && keys(&index, Some("z")).is_empty());
        let across = keys(&index, Some(&keys(&index, None)[CHUNK - 1]));
        assert_eq!(across.len(), 1_500 - CHUNK);
    }

    #[test]
    fn keys_in_order_fill_their_chunks_and_removals_merge_them() {
        let mut index = KeyIndex::default();
        for i in 0..100 * CHUNK {
            index.put(entry(&format!("k{i:07}"), 0));
        }
        assert_eq!(index.chunks(), 100, "keys in order fill every chunk");
        for i in 0..100 * CHUNK {
            if i % 8 != 0 {
                index.remove(format!("k{i:07}").as_bytes());
            }
        }
        assert!(index.chunks() <= 60, "{} chunks for {} keys left", index.chunks(), index.len());
    }
}
