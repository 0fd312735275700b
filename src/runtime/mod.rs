//! Starts the shards: one glommio executor per shard on its own thread,
//! optionally pinned, joined into a channel mesh, each with its own
//! `SO_REUSEPORT` listener. Also the orderly stop: stop accepting, let
//! in-flight requests finish, then let the threads end.

pub mod applied;
pub mod mesh;
pub mod shard;
pub mod snapshot;

use crate::config::{Config, IndexMode, StoreConfig};
use crate::http::{connection, Handler};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use mesh::{Envelope, Mesh};
use shard::Shard;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Capacity of each shard-to-shard channel.
const MESH_CAPACITY: usize = 1024;
/// Capacity, in batches, of the channel from the Kafka consumer to a shard.
pub const INGEST_CAPACITY: usize = 64;
/// How long a stopping shard waits for in-flight requests.
const DRAIN_LIMIT: Duration = Duration::from_secs(4);
/// Memory each shard registers with io_uring; small, as sockets don't use it.
const IO_MEMORY: usize = 512 * 1024;

pub use crate::placement::{Ack, IngestBatch};
use crate::placement::{Fanout, ShardQueues};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "cannot start shard {shard}: {source} (io_uring needs locked memory: raise `ulimit -l`, \
         `LimitMEMLOCK=` in systemd, or the container's memlock limit)"
    )]
    Executor { shard: usize, source: glommio::GlommioError<()> },
    #[error("shard {shard} cannot listen on {address}: {source} (is another process using the port?)")]
    Bind { shard: usize, address: SocketAddr, source: std::io::Error },
    #[error("shard {0} stopped during start-up")]
    Died(usize),
}

/// A running set of shards.
pub struct Server {
    threads: Vec<glommio::ExecutorJoinHandle<()>>,
    stop: Vec<flume::Sender<()>>,
    /// The shards' queues for the Kafka consumer.
    pub ingest: ShardQueues,
    /// One sender per shard for snapshot orders.
    pub snapshot_orders: Vec<flume::Sender<snapshot::shard_file::WriteOrder>>,
}

/// A shard's part of loading a snapshot at start: it reads its file,
/// reports, and installs the contents only if every shard's file was good.
struct ShardLoad {
    path: std::path::PathBuf,
    expected: snapshot::shard_file::Expected,
    offsets: Vec<(String, i32, i64)>,
    report: std::sync::mpsc::Sender<Result<u64, String>>,
    verdict: std::sync::mpsc::Receiver<bool>,
    /// With a replicated index: shard 0 hands out the entries of its file,
    /// and the others index those same entries.
    share: Option<EntryShare>,
}

/// A replicated index's loaded entries, per store index.
type SharedEntries = Arc<Vec<(usize, Vec<crate::store::entry::Entry>)>>;

enum EntryShare {
    Give(Vec<std::sync::mpsc::Sender<SharedEntries>>),
    Take(std::sync::mpsc::Receiver<SharedEntries>),
}

/// Shard 0's `Give` and every other shard's `Take`, for a replicated index.
fn entry_shares(count: usize) -> Vec<EntryShare> {
    let (senders, receivers): (Vec<_>, Vec<_>) = (1..count).map(|_| std::sync::mpsc::channel()).unzip();
    std::iter::once(EntryShare::Give(senders)).chain(receivers.into_iter().map(EntryShare::Take)).collect()
}

/// What each shard serves: the HTTP handler, built on the shard's own
/// thread from its data and its mesh handle, and told when the shard drains.
/// The API implements it; the shards know nothing more of it.
pub trait ShardService: Handler + 'static {
    /// From now on, connections close after their current request.
    fn start_draining(&self);
    /// Requests parsed and not yet answered.
    fn in_flight(&self) -> usize;
}

/// Builds a shard's service; called once on every shard's thread.
pub type ServiceFactory<S> = Arc<dyn Fn(Rc<Shard>, Mesh) -> S + Send + Sync>;

/// Which stores the shards keep in memory (the others live elsewhere).
fn memory_stores(config: &Config) -> Vec<bool> {
    config.cache.stores.iter().map(|s| matches!(s, StoreConfig::InMemory { .. })).collect()
}

/// Starts `config`'s shards on `address`. Returns once every shard listens.
pub fn start<S: ShardService>(
    config: &Config,
    address: SocketAddr,
    service: ServiceFactory<S>,
) -> Result<Server, StartError> {
    start_loading(config, address, service, None, &|_| {}).map(|(server, _)| server)
}

/// `start`, each shard first loading its file of `plan` (in parallel).
/// Returns whether the snapshot was loaded: only when every file was good;
/// else every shard starts empty. `decided` hears the outcome before any
/// shard listens.
pub fn start_loading<S: ShardService>(
    config: &Config,
    address: SocketAddr,
    service: ServiceFactory<S>,
    plan: Option<&snapshot::Plan>,
    decided: &dyn Fn(bool),
) -> Result<(Server, bool), StartError> {
    if plan.is_none() {
        decided(false);
    }
    let count = config.shard_count().expect("validated");
    let cpus = config.runtime.cores.as_ref().map(|c| c.cpus().expect("validated"));
    let memory = memory_stores(config);
    let spin = Duration::from_micros(config.runtime.spin_before_park_us);
    let mesh = MeshBuilder::full(count, MESH_CAPACITY);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<usize, StartError>>();
    let (ingest_txs, ingest_rxs): (Vec<_>, Vec<_>) = (0..count).map(|_| flume::bounded(INGEST_CAPACITY)).unzip();
    let ingest = match config.runtime.index {
        IndexMode::Partitioned => ShardQueues::Partitioned(ingest_txs),
        IndexMode::Replicated => ShardQueues::Replicated(Arc::new(Fanout::new(ingest_txs))),
    };
    let fanout = match &ingest {
        ShardQueues::Replicated(f) => Some(f.clone()),
        ShardQueues::Partitioned(_) => None,
    };
    let mut server = Server { threads: Vec::new(), stop: Vec::new(), ingest, snapshot_orders: Vec::new() };
    let (report_tx, report_rx) = std::sync::mpsc::channel();
    let mut verdicts = Vec::new();
    let offsets: Vec<_> = plan
        .map(|p| p.manifest.offsets.iter().map(|o| (o.topic.clone(), o.partition, o.next)).collect())
        .unwrap_or_default();
    let mut shares: Vec<Option<EntryShare>> = match &fanout {
        Some(_) => entry_shares(count).into_iter().map(Some).collect(),
        None => (0..count).map(|_| None).collect(),
    };
    for (id, ingest_rx) in ingest_rxs.into_iter().enumerate() {
        let (stop_tx, stop_rx) = flume::bounded(1);
        let (orders_tx, orders_rx) = flume::bounded(1);
        let load = plan.map(|p| {
            let (path, expected) = p.shard(id);
            let (verdict_tx, verdict) = std::sync::mpsc::channel();
            verdicts.push(verdict_tx);
            let share = shares[id].take();
            ShardLoad { path, expected, offsets: offsets.clone(), report: report_tx.clone(), verdict, share }
        });
        let placement = cpus.as_ref().map_or(Placement::Unbound, |c| Placement::Fixed(c[id]));
        let mut builder = LocalExecutorBuilder::new(placement).name(&format!("shard-{id}")).io_memory(IO_MEMORY);
        if !spin.is_zero() {
            builder = builder.spin_before_park(spin);
        }
        let (mesh, service, memory, ready) = (mesh.clone(), service.clone(), memory.clone(), ready_tx.clone());
        let compressed = config.cache.stores.iter().map(StoreConfig::compressed).collect();
        let (stop, ingest, orders, fanout) = (stop_rx, ingest_rx, orders_rx, fanout.clone());
        let run = ShardRun { id, count, address, memory, compressed, fanout, service, stop, ingest, orders, load };
        let handle = builder
            .spawn(move || async move { run.run(mesh, ready).await })
            .map_err(|source| StartError::Executor { shard: id, source })?;
        server.threads.push(handle);
        server.stop.push(stop_tx);
        server.snapshot_orders.push(orders_tx);
    }
    drop(ready_tx);
    drop(report_tx);
    let loaded = plan.is_some() && load_verdict(&report_rx, count, verdicts, decided);
    await_listening(&ready_rx, &mut server.threads)?;
    Ok((server, loaded))
}

/// Waits until every shard listens. A shard thread that ended first (its
/// executor could not be built, e.g. io_uring without enough locked memory)
/// is joined for its own error, so the message names the cause; the other
/// shards may be waiting for it in the mesh and would never report.
fn await_listening(
    ready: &std::sync::mpsc::Receiver<Result<usize, StartError>>,
    threads: &mut Vec<glommio::ExecutorJoinHandle<()>>,
) -> Result<(), StartError> {
    let mut listening = 0;
    while listening < threads.len() {
        match ready.recv_timeout(Duration::from_millis(20)) {
            Ok(Ok(_)) => listening += 1,
            Ok(Err(e)) => return Err(e),
            Err(gone) => {
                if let Some(shard) = threads.iter().position(|t| t.is_finished()) {
                    return Err(match threads.remove(shard).join() {
                        Err(source) => StartError::Executor { shard, source },
                        Ok(()) => StartError::Died(shard),
                    });
                }
                if gone == std::sync::mpsc::RecvTimeoutError::Disconnected {
                    return Err(StartError::Died(0));
                }
            }
        }
    }
    Ok(())
}

/// Collects every shard's load report and tells them all whether to keep
/// what they read: only if every file was good.
fn load_verdict(
    reports: &std::sync::mpsc::Receiver<Result<u64, String>>,
    count: usize,
    verdicts: Vec<std::sync::mpsc::Sender<bool>>,
    decided: &dyn Fn(bool),
) -> bool {
    let mut ok = true;
    for _ in 0..count {
        match reports.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(why)) => {
                tracing::warn!("snapshot not used, replaying the topics from the beginning: {why}");
                ok = false;
            }
            Err(_) => ok = false,
        }
    }
    decided(ok);
    for v in verdicts {
        let _ = v.send(ok);
    }
    ok
}

impl Server {
    /// Stops accepting, waits for in-flight requests (bounded) and joins
    /// the shard threads.
    pub fn shutdown(self) {
        for s in &self.stop {
            let _ = s.try_send(());
        }
        drop(self.ingest);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Everything a shard thread starts with.
struct ShardRun<S> {
    id: usize,
    count: usize,
    address: SocketAddr,
    memory: Vec<bool>,
    /// Stores kept zstd-compressed, indexed like `memory`.
    compressed: Vec<bool>,
    /// With a replicated index, every shard's queue.
    fanout: Option<Arc<Fanout>>,
    service: ServiceFactory<S>,
    stop: flume::Receiver<()>,
    ingest: flume::Receiver<IngestBatch>,
    orders: flume::Receiver<snapshot::shard_file::WriteOrder>,
    load: Option<ShardLoad>,
}

impl<S: ShardService> ShardRun<S> {
    async fn run(
        self,
        mesh: MeshBuilder<Envelope, glommio::channels::channel_mesh::Full>,
        ready: std::sync::mpsc::Sender<Result<usize, StartError>>,
    ) {
        let Ok((senders, receivers)) = mesh.join().await else {
            if let Some(load) = &self.load {
                let _ = load.report.send(Err(format!("shard {} stopped during start-up", self.id)));
            }
            let _ = ready.send(Err(StartError::Died(self.id)));
            return;
        };
        let mut shard = Shard::new(self.id, self.count, &self.memory).with_compression(&self.compressed);
        if let Some(fanout) = &self.fanout {
            shard = shard.replicated(fanout.clone());
        }
        let shard = Rc::new(shard);
        if let Some(load) = &self.load {
            load_snapshot(&shard, load, &self.memory);
        }
        glommio::spawn_local(snapshot::shard_file::serve_orders(self.orders.clone(), shard.clone())).detach();
        let service = Rc::new((self.service)(shard.clone(), Mesh::start(senders, receivers, shard.clone())));
        glommio::spawn_local(apply_ingest(self.ingest, shard.clone())).detach();
        let listener = match TcpListener::bind(self.address) {
            Ok(l) => l,
            Err(e) => {
                let source = std::io::Error::other(e.to_string());
                let _ = ready.send(Err(StartError::Bind { shard: self.id, address: self.address, source }));
                return;
            }
        };
        let _ = ready.send(Ok(self.id));
        futures_lite::future::or(accept_loop(&listener, service.clone(), shard.clone()), async {
            let _ = self.stop.recv_async().await;
        })
        .await;
        drop(listener);
        drain(&*service).await;
    }
}

async fn accept_loop<S: ShardService>(listener: &TcpListener, service: Rc<S>, shard: Rc<Shard>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let (service, shard) = (service.clone(), shard.clone());
                shard.metrics.borrow_mut().connections_accepted += 1;
                glommio::spawn_local(async move {
                    shard.metrics.borrow_mut().connections_open += 1;
                    connection::serve_tcp(stream, &*service).await;
                    shard.metrics.borrow_mut().connections_open -= 1;
                })
                .detach();
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed; retrying in 10 ms (raise `ulimit -n` if this repeats)");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Marks the shard as draining and waits, bounded, for in-flight requests.
async fn drain(service: &impl ShardService) {
    service.start_draining();
    let deadline = Instant::now() + DRAIN_LIMIT;
    while service.in_flight() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads this shard's snapshot file, reports, and installs it if told to.
fn load_snapshot(shard: &Shard, load: &ShardLoad, memory: &[bool]) {
    let read = snapshot::shard_file::load(&load.path, &load.expected, memory);
    let _ = load.report.send(read.as_ref().map(|l| l.bytes).map_err(Clone::clone));
    let (Ok(read), Ok(true)) = (read, load.verdict.recv()) else { return };
    for (index, store) in read.stores {
        shard.install(index, store);
    }
    match &load.share {
        Some(EntryShare::Give(others)) if !others.is_empty() => {
            let shared: SharedEntries = Arc::new(shard.entries());
            others.iter().for_each(|o| drop(o.send(shared.clone())));
        }
        Some(EntryShare::Take(from_first)) => {
            let Ok(shared) = from_first.recv() else { return };
            for (index, entries) in shared.iter() {
                shard.install(*index, entries.iter().cloned().collect());
            }
        }
        _ => {}
    }
    for (topic, partition, next) in &load.offsets {
        shard.note_applied(topic, *partition, *next);
    }
}

/// Applies the consumer's batches in the order they arrive, then records
/// the positions a flush covers (waking readers parked on them) and
/// acknowledges its mark. It yields after each batch: while a large topic is
/// replayed the queue is never empty, and the shard's requests (health
/// checks included) must still be answered meanwhile.
async fn apply_ingest(batches: flume::Receiver<IngestBatch>, shard: Rc<Shard>) {
    while let Ok(batch) = batches.recv_async().await {
        apply_batch(&shard, batch);
        futures_lite::future::yield_now().await;
    }
}

/// Applies one batch on this thread (also used by tests).
pub fn apply_batch(shard: &Shard, batch: IngestBatch) {
    let IngestBatch { changes, mark, write } = batch;
    for (store, change) in changes {
        let applied = shard.apply(store, change);
        if let Some(write) = &write {
            write.report(applied);
        }
    }
    if let Some(ack) = mark {
        for (topic, partition, next) in &ack.0.positions {
            shard.applied.advance(topic, *partition, *next);
        }
    }
}
