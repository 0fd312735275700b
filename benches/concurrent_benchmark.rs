//! Concurrent lookups of 100 000 customers: the project's cross-shard path
//! against a DashMap shared by threads, at 1, 2, 4 and 8 concurrent requesters.
//!
//! - `mesh/C`: C + 1 glommio executors joined in one `MeshBuilder::full` mesh
//!   of the project's `Envelope`s, each with its own `Shard` and `Mesh`
//!   (`Mesh::start`, as `runtime` does). Mesh peer 0 owns every key (its
//!   `Shard`'s `MemoryStore`); the other C are requesters that await
//!   `Mesh::call(0, ShardCall::Get { .. })` one at a time, which is what a shard
//!   does for a GET whose key another shard owns, minus the HTTP. The owner
//!   answers with `execute`, as in the server. So this measures one owner
//!   serving C forwarding shards, channel wake-ups included: the executors
//!   park when idle (the server's default, `spin_before_park_us: 0`), so with
//!   one lookup in flight per requester each lookup pays two cross-thread
//!   wake-ups. `BENCH_IN_FLIGHT=64` gives each requester 64 concurrent lookup
//!   tasks instead (`mesh_inflight64/C`), closer to a shard serving many
//!   connections under load.
//! - `dashmap/C`: C std threads `get` from one shared `DashMap` and clone the
//!   entry (a reference-count bump, like the owner's reply).
//!
//! One iteration is one lookup; a sample's time is the wall-clock time for
//! all C requesters to finish their share of the iterations, so the reported
//! throughput is lookups/s over all requesters. Executors and threads start
//! once per benchmark and are unpinned: on a 2-core machine C >= 2 (plus the
//! owner executor) oversubscribes the CPUs, which both sides pay alike.
//! `cargo bench --bench concurrent_benchmark` (about 20 s in all on 2 cores).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dashmap::DashMap;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use push_cache::runtime::mesh::{Envelope, Mesh, ShardCall, ShardReply};
use push_cache::runtime::shard::{Change, Shard};
use push_cache::store::entry::Entry;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CUSTOMERS: usize = 100_000;
const CONCURRENCY: [usize; 4] = [1, 2, 4, 8];

fn key(i: usize) -> String {
    format!("acct-{i:08}")
}

/// The same customer JSON the axum peer serves (and cache_benchmark stores).
fn entry(i: usize) -> Entry {
    let body = format!(
        r#"{{"accountId":"acct-{i:08}","name":"Customer Name {i}","address":"{i} Long Street, Some Town, AB1 2CD","phone":"+44 20 7946 0000","createdAt":{},"updatedAt":{}}}"#,
        1_700_000_000_000u64 + i as u64,
        1_700_000_500_000u64 + i as u64
    );
    Entry::from_parts(key(i).as_bytes(), format!("\"{}\"", 1_700_000_500_000u64 + i as u64).as_bytes(), body.as_bytes())
        .unwrap()
}

/// Every key once in a scattered order, starting at a requester's own offset.
fn scattered(offset: usize) -> Vec<Box<[u8]>> {
    let stride = (2_654_435_761usize % CUSTOMERS) | 1;
    (0..CUSTOMERS).map(|i| key((offset + i) * stride % CUSTOMERS).into_bytes().into_boxed_slice()).collect()
}

/// Splits `iters` over the requesters, waits for all of them, returns the wall time.
struct Pool {
    work: Vec<flume::Sender<u64>>,
    done: flume::Receiver<()>,
    stop: Box<dyn FnOnce()>,
}

impl Pool {
    fn run(&self, iters: u64) -> Duration {
        let n = self.work.len() as u64;
        let start = Instant::now();
        for (i, w) in self.work.iter().enumerate() {
            w.send(iters / n + u64::from((i as u64) < iters % n)).unwrap();
        }
        for _ in 0..n {
            self.done.recv().unwrap();
        }
        start.elapsed()
    }

    fn finish(self) {
        drop(self.work); // requesters end when their work channel closes
        (self.stop)();
    }
}

/// `n` forwarded GETs, one at a time, from `keys[next + 1]` on; returns where it stopped.
async fn lookups(mesh: &Mesh, keys: &[Box<[u8]>], mut next: usize, n: u64) -> usize {
    for _ in 0..n {
        next = (next + 1) % keys.len();
        match mesh.call(0, ShardCall::Get { store: 0, key: keys[next].clone() }).await {
            Ok(ShardReply::Entry(e)) => drop(black_box(e.expect("the owner has every key"))),
            other => panic!("unexpected reply {other:?}"),
        }
    }
    next
}

fn mesh_pool(requesters: usize, in_flight: usize, entries: &Arc<Vec<Entry>>) -> Pool {
    let mesh = MeshBuilder::<Envelope, _>::full(requesters + 1, 1024);
    let (done_tx, done) = flume::unbounded();
    let (ready_tx, ready) = flume::unbounded::<()>();
    let (owner_stop_tx, owner_stop) = flume::bounded::<()>(1);
    let mut work = Vec::new();
    let mut handles = Vec::new();
    let mut work_rxs = Vec::new();
    for _ in 0..requesters {
        let (tx, rx) = flume::unbounded::<u64>();
        work.push(tx);
        work_rxs.push(rx);
    }
    // Every executor joins the mesh the same way; the one that gets peer id 0
    // becomes the owner, the others take a work channel each.
    let work_rxs = Arc::new(std::sync::Mutex::new(work_rxs));
    for _ in 0..=requesters {
        let (mesh, entries, done_tx, ready_tx, owner_stop, work_rxs) =
            (mesh.clone(), entries.clone(), done_tx.clone(), ready_tx.clone(), owner_stop.clone(), work_rxs.clone());
        let h = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(512 * 1024)
            .spawn(move || async move {
                let (senders, receivers) = mesh.join().await.expect("join the mesh");
                let id = senders.peer_id();
                let shard = Rc::new(Shard::new(id, requesters + 1, &[true]));
                let mesh = Mesh::start(senders, receivers, shard.clone());
                if id == 0 {
                    for e in entries.iter() {
                        shard.apply(0, Change::Upsert(e.clone()));
                    }
                    ready_tx.send(()).unwrap();
                    let _ = owner_stop.recv_async().await;
                    return;
                }
                let rx = work_rxs.lock().unwrap().pop().unwrap();
                ready_tx.send(()).unwrap();
                let (mesh, keys) = (Rc::new(mesh), Rc::new(scattered(id * 7_919)));
                let mut next = 0;
                while let Ok(n) = rx.recv_async().await {
                    if in_flight == 1 {
                        next = lookups(&mesh, &keys, next, n).await;
                    } else {
                        let tasks: Vec<_> = (0..in_flight)
                            .map(|t| {
                                let (mesh, keys) = (mesh.clone(), keys.clone());
                                let share = n / in_flight as u64 + u64::from((t as u64) < n % in_flight as u64);
                                glommio::spawn_local(async move { lookups(&mesh, &keys, t * 1_009, share).await })
                            })
                            .collect();
                        for t in tasks {
                            t.await;
                        }
                    }
                    done_tx.send(()).unwrap();
                }
            })
            .expect("start an executor (raise `ulimit -l` if this is about locked memory)");
        handles.push(h);
    }
    for _ in 0..=requesters {
        ready.recv().unwrap();
    }
    let stop: Box<dyn FnOnce()> = Box::new(move || {
        drop(owner_stop_tx);
        for h in handles {
            h.join().unwrap();
        }
    });
    Pool { work, done, stop }
}

fn dashmap_pool(threads: usize, map: &Arc<DashMap<String, Entry>>) -> Pool {
    let (done_tx, done) = flume::unbounded();
    let mut work = Vec::new();
    let mut handles = Vec::new();
    for t in 0..threads {
        let (tx, rx) = flume::unbounded::<u64>();
        work.push(tx);
        let (map, done_tx) = (map.clone(), done_tx.clone());
        handles.push(std::thread::spawn(move || {
            let keys: Vec<String> =
                scattered((t + 1) * 7_919).into_iter().map(|k| String::from_utf8(k.into()).unwrap()).collect();
            let mut next = 0;
            while let Ok(n) = rx.recv() {
                for _ in 0..n {
                    next = (next + 1) % keys.len();
                    drop(black_box(map.get(keys[next].as_str()).map(|r| r.value().clone()).expect("every key")));
                }
                done_tx.send(()).unwrap();
            }
        }));
    }
    let stop: Box<dyn FnOnce()> = Box::new(move || handles.into_iter().for_each(|h| h.join().unwrap()));
    Pool { work, done, stop }
}

fn concurrent_lookups(c: &mut Criterion) {
    let entries: Arc<Vec<Entry>> = Arc::new((0..CUSTOMERS).map(entry).collect());
    let map: Arc<DashMap<String, Entry>> = Arc::new(DashMap::new());
    for (i, e) in entries.iter().enumerate() {
        map.insert(key(i), e.clone());
    }
    let mut group = c.benchmark_group("concurrent_lookup");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_millis(1500));
    let in_flight: usize = std::env::var("BENCH_IN_FLIGHT").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let mesh_name = if in_flight == 1 { "mesh".to_string() } else { format!("mesh_inflight{in_flight}") };
    for n in CONCURRENCY {
        let pool = mesh_pool(n, in_flight, &entries);
        group.bench_with_input(BenchmarkId::new(&mesh_name, n), &n, |b, _| b.iter_custom(|iters| pool.run(iters)));
        pool.finish();
        let pool = dashmap_pool(n, &map);
        group.bench_with_input(BenchmarkId::new("dashmap", n), &n, |b, _| b.iter_custom(|iters| pool.run(iters)));
        pool.finish();
    }
    group.finish();
}

// No plots: plotters takes about 40 s for these 8 benchmarks on a 2-core VM.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = concurrent_lookups
}
criterion_main!(benches);
