//! Which zstd dictionary size and level compress the populate tool's
//! customers best: trains on the first 2 000 bodies (as a shard does) and
//! compresses the next COUNT (default 100 000), printing the ratio per size.
//! `cargo run --release --example compression_ratio`

use push_cache::store::compress::{train, SAMPLE_RECORDS};
use push_cache::store::entry::Entry;
use push_cache::store::memory::MemoryStore;
use push_cache_sample::{record, Kind, Rng};

fn main() {
    let count: usize = std::env::var("COUNT").ok().and_then(|c| c.parse().ok()).unwrap_or(100_000);
    let mut rng = Rng::new(7);
    let bodies: Vec<(String, Vec<u8>)> = (0..count as u64)
        .map(|n| {
            let s = record(Kind::Customer, n, 0, &mut rng);
            (s.key, serde_json::to_vec(&s.json).expect("JSON"))
        })
        .collect();
    let raw: usize = bodies.iter().map(|(_, b)| b.len()).sum();
    println!("{count} customers, {:.0} bytes per body on average", raw as f64 / count as f64);
    let sample = &bodies[..SAMPLE_RECORDS.min(count)];
    let samples: Vec<u8> = sample.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    let sizes: Vec<usize> = sample.iter().map(|(_, b)| b.len()).collect();
    let rest = || bodies[sample.len()..].iter().map(|(_, b)| &b[..]);
    let rest_raw: usize = rest().map(<[u8]>::len).sum();
    for dict_kib in [4, 8, 16, 32, 64, 110] {
        match train(&samples, &sizes, dict_kib * 1024).and_then(|d| d.packed_size(rest())) {
            Ok(packed) => println!("dictionary {dict_kib:>3} KiB: bodies {:.3}x raw", packed as f64 / rest_raw as f64),
            Err(e) => println!("dictionary {dict_kib:>3} KiB: {e}"),
        }
    }
    let mut store = MemoryStore::compressed();
    for (k, b) in &bodies {
        store.upsert(Entry::from_parts(k.as_bytes(), b"\"1\"", b).expect("fits"));
    }
    store.settle();
    println!(
        "a compressed store of them: entries {:.3}x their raw bytes",
        store.bytes() as f64 / store.raw_bytes() as f64
    );
}
