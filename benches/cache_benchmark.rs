//! Shard map lookups and overwrites against a DashMap holding the same
//! entries, at growing sizes. Keys are visited in a scattered order so the
//! larger sizes measure memory, not a warm cache line.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dashmap::DashMap;
use push_cache::store::entry::Entry;
use push_cache::store::memory::MemoryStore;

fn key(i: usize) -> String {
    format!("acct-{i:08}")
}

fn body(i: usize) -> String {
    format!(
        r#"{{"accountId":"acct-{i:08}","name":"Customer Name {i}","address":"{i} Long Street, Some Town, AB1 2CD","phone":"+44 20 7946 0000","createdAt":{},"updatedAt":{}}}"#,
        1_700_000_000_000u64 + i as u64,
        1_700_000_500_000u64 + i as u64
    )
}

fn entry(i: usize) -> Entry {
    Entry::from_parts(
        key(i).as_bytes(),
        format!("\"{}\"", 1_700_000_500_000u64 + i as u64).as_bytes(),
        body(i).as_bytes(),
    )
    .unwrap()
}

/// Visits every index once in a scattered order (a large odd stride).
fn scattered(n: usize) -> Vec<String> {
    let stride = (2_654_435_761usize % n.max(1)) | 1;
    (0..n.min(100_000)).map(|i| key(i * stride % n)).collect()
}

fn sizes() -> Vec<usize> {
    match std::env::var("BENCH_MAX_ENTRIES").ok().and_then(|v| v.parse().ok()) {
        Some(max) => [100, 1_000, 10_000, 100_000, 1_000_000, 5_000_000].into_iter().filter(|n| *n <= max).collect(),
        None => vec![100, 1_000, 10_000, 100_000, 1_000_000, 5_000_000],
    }
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(1));
    for n in sizes() {
        let keys = scattered(n);
        let mut shard = MemoryStore::default();
        for i in 0..n {
            shard.upsert(entry(i));
        }
        let mut next = 0;
        group.bench_with_input(BenchmarkId::new("shard_map", n), &n, |b, _| {
            b.iter(|| {
                next = (next + 1) % keys.len();
                black_box(shard.get(keys[next].as_bytes()).map(|e| e.body().len()))
            })
        });
        drop(shard);
        let dash: DashMap<String, Entry> = DashMap::new();
        for i in 0..n {
            dash.insert(key(i), entry(i));
        }
        group.bench_with_input(BenchmarkId::new("dashmap", n), &n, |b, _| {
            b.iter(|| {
                next = (next + 1) % keys.len();
                black_box(dash.get(keys[next].as_str()).map(|e| e.body().len()))
            })
        });
    }
    group.finish();
}

fn overwrites(c: &mut Criterion) {
    let mut group = c.benchmark_group("overwrite");
    group.throughput(Throughput::Elements(1));
    let n = 100_000;
    let entries: Vec<Entry> = (0..n).map(entry).collect();
    let mut shard = MemoryStore::default();
    entries.iter().for_each(|e| drop(shard.upsert(e.clone())));
    let mut i = 0;
    group.bench_function("shard_map", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            black_box(shard.upsert(entries[i].clone()))
        })
    });
    let dash: DashMap<String, Entry> = DashMap::new();
    entries.iter().enumerate().for_each(|(k, e)| drop(dash.insert(key(k), e.clone())));
    group.bench_function("dashmap", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            black_box(dash.insert(key(i), entries[i].clone()))
        })
    });
    group.finish();
}

/// A GET's store work: look the entry up and copy its body into a reused
/// response buffer, for a plain and a `compression: zstd` store holding the
/// same 100 000 populate-tool customers (decompressing into the buffer).
fn get_copy(c: &mut Criterion) {
    let mut rng = push_cache_sample::Rng::new(7);
    let n = 100_000;
    let entries: Vec<Entry> = (0..n as u64)
        .map(|i| {
            let s = push_cache_sample::record(push_cache_sample::Kind::Customer, i, 0, &mut rng);
            Entry::from_parts(s.key.as_bytes(), b"\"1\"", &serde_json::to_vec(&s.json).unwrap()).unwrap()
        })
        .collect();
    let mut group = c.benchmark_group("get_copy");
    group.throughput(Throughput::Elements(1));
    for (name, mut store) in [("plain", MemoryStore::default()), ("zstd", MemoryStore::compressed())] {
        entries.iter().for_each(|e| drop(store.upsert(e.clone())));
        store.settle();
        eprintln!(
            "get_copy/{name}: entries hold {:.3}x their raw bytes",
            store.bytes() as f64 / store.raw_bytes() as f64
        );
        let keys = scattered(n);
        let (mut i, mut out) = (0, Vec::with_capacity(4096));
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                out.clear();
                store.get(keys[i].as_bytes()).unwrap().write_body(&mut out).unwrap();
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lookups, overwrites, get_copy);
criterion_main!(benches);
