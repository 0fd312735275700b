//! Where an in-memory store's bytes go per key, counted by a counting
//! allocator: `cargo run --release --example index_memory [KEYS] [SHARDS] [JSONL]`.
//!
//! It splits KEYS customers (from JSONL, the `--expect` file of the populate
//! tool, as `scripts/memory.sh` writes it to `target/memory/expected.jsonl`;
//! else customer-like bodies made up here, in a shuffled order) over SHARDS
//! stores as the service does, and prints per key: the raw key and body, the
//! entry as laid out (header, key, compact ETag, body), what the allocator
//! really hands out for it (its header and rounding, by `malloc_usable_size`),
//! the hash table's slots, the ordered key index, and for comparison the
//! `BTreeSet` the index used to be. Then the same for `compression: zstd`.

use push_cache::placement::owner_of;
use push_cache::store::entry::Entry;
use push_cache::store::memory::MemoryStore;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

/// Bytes asked for, and bytes the allocator really uses for them (glibc:
/// the usable size plus its 8-byte chunk header).
static ASKED: AtomicUsize = AtomicUsize::new(0);
static USED: AtomicUsize = AtomicUsize::new(0);

fn used(ptr: *mut u8) -> usize {
    // SAFETY: `ptr` is a live allocation of the system allocator.
    unsafe { libc::malloc_usable_size(ptr.cast()) + 8 }
}

// SAFETY: forwards to the system allocator, only counting bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        ASKED.fetch_add(layout.size(), Ordering::Relaxed);
        USED.fetch_add(used(ptr), Ordering::Relaxed);
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ASKED.fetch_sub(layout.size(), Ordering::Relaxed);
        USED.fetch_sub(used(ptr), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn counters() -> (usize, usize) {
    (ASKED.load(Ordering::Relaxed), USED.load(Ordering::Relaxed))
}

/// An entry ordered by its key: what the ordered index was (a `BTreeSet` of these).
struct ByKey(Entry);

impl PartialEq for ByKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}
impl Eq for ByKey {}
impl PartialOrd for ByKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.key().cmp(other.0.key())
    }
}

/// (key, ETag, body) of each customer.
fn records(keys: usize, jsonl: Option<&str>) -> Vec<(String, String, String)> {
    if let Some(path) = jsonl {
        let text = std::fs::read_to_string(path).expect("reading the JSONL file");
        return text
            .lines()
            .filter_map(|line| {
                let rec: serde_json::Value = serde_json::from_str(line).ok()?;
                let body = rec.get("body").filter(|b| !b.is_null())?;
                let etag = format!("\"{}\"", body.get("updatedAt").and_then(|u| u.as_i64()).unwrap_or(0));
                Some((rec["key"].as_str()?.to_owned(), etag, serde_json::to_string(body).ok()?))
            })
            .take(keys)
            .collect();
    }
    // A fixed-seed shuffle of the key numbers (xorshift), so the index fills as a replay might.
    let mut order: Vec<usize> = (0..keys).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let streets = ["Manor Road", "Church Lane", "Park Avenue", "High Street", "Station Road"];
    order
        .iter()
        .map(|i| {
            let updated = 1_704_067_200_001u64 + *i as u64 * 1000;
            let body = format!(
                r#"{{"accountId":"acct-{i:08}","name":"Customer {i}","address":"{} {}, Bristol, LS6 4AB","phone":"+44 20 7946 {:04}","createdAt":{},"updatedAt":{updated}}}"#,
                i % 300,
                streets[i % 5],
                i % 10_000,
                updated - 1
            );
            (format!("acct-{i:08}"), format!("\"{updated}\""), body)
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let keys: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let shards: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(2);
    let recs = records(keys, args.get(3).map(String::as_str));
    let n = recs.len() as f64;
    let raw: usize = recs.iter().map(|(k, _, b)| k.len() + b.len()).sum();
    println!("{} keys over {shards} shards, raw key + body {:.1} bytes/key", recs.len(), raw as f64 / n);
    for compressed in [false, true] {
        let before = counters();
        let mut stores: Vec<MemoryStore> =
            (0..shards).map(|_| if compressed { MemoryStore::compressed() } else { MemoryStore::default() }).collect();
        for (k, etag, body) in &recs {
            let e = Entry::from_parts(k.as_bytes(), etag.as_bytes(), body.as_bytes()).unwrap();
            stores[owner_of(k.as_bytes(), shards)].upsert(e);
        }
        stores.iter_mut().for_each(MemoryStore::settle);
        let after = counters();
        let entries: usize = stores.iter().map(MemoryStore::bytes).sum();
        let (table, index) = stores.iter().map(MemoryStore::overhead).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let allocator = (after.1 - before.1) - (after.0 - before.0);
        let other = (after.0 - before.0).saturating_sub(entries + table + index);
        let per = |b: usize| b as f64 / n;
        println!("{}:", if compressed { "compression: zstd" } else { "plain" });
        println!("  entries as laid out (header, key, ETag, body): {:.1} bytes/key", per(entries));
        println!("  allocator headers and rounding, all allocations: {:.1} bytes/key", per(allocator));
        println!("  hash table slots and control bytes: {:.1} bytes/key", per(table));
        println!("  ordered key index: {:.1} bytes/key", per(index));
        println!("  anything else (compressors, dictionaries): {:.1} bytes/key", per(other));
        println!(
            "  total heap: {:.1} bytes/key = {:.2}x raw",
            per(after.1 - before.1),
            (after.1 - before.1) as f64 / raw as f64
        );
        if !compressed {
            let before = counters();
            let mut trees: Vec<BTreeSet<ByKey>> = (0..shards).map(|_| BTreeSet::new()).collect();
            for s in &stores {
                for e in s.iter() {
                    trees[owner_of(e.key(), shards)].insert(ByKey(e.clone()));
                }
            }
            let tree = counters();
            println!(
                "  a BTreeSet index instead (filled in table order): {:.1} bytes/key asked, {:.1} used",
                per(tree.0 - before.0),
                per(tree.1 - before.1)
            );
        }
    }
}
