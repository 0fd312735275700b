//! Starts the shards: one glommio executor per shard on its own thread,
//! optionally pinned, joined into a channel mesh, each with its own
//! `SO_REUSEPORT` listener. Also the orderly stop: stop accepting, let
//! in-flight requests finish, then let the threads end.

pub mod mesh;
pub mod shard;

use crate::api::{memory_stores, Api, Shared};
use crate::config::Config;
use crate::http::connection;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use mesh::{Envelope, Mesh};
use shard::{Change, Shard};
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

/// Changes from the consumer for one shard: (store index, change) in order.
pub type IngestBatch = Vec<(usize, Change)>;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start shard {shard}: {source} (if this is about locked memory, raise `ulimit -l`)")]
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
    /// One sender per shard for the Kafka consumer.
    pub ingest: Vec<flume::Sender<IngestBatch>>,
}

/// Starts `config`'s shards on `address`. Returns once every shard listens.
pub fn start(config: &Config, address: SocketAddr, shared: Arc<Shared>) -> Result<Server, StartError> {
    let count = config.shard_count().expect("validated");
    let cpus = config.runtime.cores.as_ref().map(|c| c.cpus().expect("validated"));
    let memory = memory_stores(config);
    let spin = Duration::from_micros(config.runtime.spin_before_park_us);
    let mesh = MeshBuilder::full(count, MESH_CAPACITY);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<usize, StartError>>();
    let mut server = Server { threads: Vec::new(), stop: Vec::new(), ingest: Vec::new() };
    for id in 0..count {
        let (stop_tx, stop_rx) = flume::bounded(1);
        let (ingest_tx, ingest_rx) = flume::bounded(INGEST_CAPACITY);
        let placement = cpus.as_ref().map_or(Placement::Unbound, |c| Placement::Fixed(c[id]));
        let mut builder = LocalExecutorBuilder::new(placement).name(&format!("shard-{id}")).io_memory(IO_MEMORY);
        if !spin.is_zero() {
            builder = builder.spin_before_park(spin);
        }
        let (mesh, shared, memory, ready) = (mesh.clone(), shared.clone(), memory.clone(), ready_tx.clone());
        let run = ShardRun { id, count, address, memory, shared, stop: stop_rx, ingest: ingest_rx };
        let handle = builder
            .spawn(move || async move { run.run(mesh, ready).await })
            .map_err(|source| StartError::Executor { shard: id, source })?;
        server.threads.push(handle);
        server.stop.push(stop_tx);
        server.ingest.push(ingest_tx);
    }
    drop(ready_tx);
    for _ in 0..count {
        match ready_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(StartError::Died(0)),
        }
    }
    Ok(server)
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
struct ShardRun {
    id: usize,
    count: usize,
    address: SocketAddr,
    memory: Vec<bool>,
    shared: Arc<Shared>,
    stop: flume::Receiver<()>,
    ingest: flume::Receiver<IngestBatch>,
}

impl ShardRun {
    async fn run(self, mesh: MeshBuilder<Envelope, glommio::channels::channel_mesh::Full>, ready: std::sync::mpsc::Sender<Result<usize, StartError>>) {
        let Ok((senders, receivers)) = mesh.join().await else {
            let _ = ready.send(Err(StartError::Died(self.id)));
            return;
        };
        let shard = Rc::new(Shard::new(self.id, self.count, &self.memory));
        let api = Rc::new(Api {
            shard: shard.clone(),
            mesh: Mesh::start(senders, receivers, shard.clone()),
            shared: self.shared,
            draining: Default::default(),
            in_flight: Default::default(),
        });
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
        futures_lite::future::or(accept_loop(&listener, api.clone()), async {
            let _ = self.stop.recv_async().await;
        })
        .await;
        drop(listener);
        drain(&api).await;
    }
}

async fn accept_loop(listener: &TcpListener, api: Rc<Api>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let api = api.clone();
                api.shard.metrics.borrow_mut().connections_accepted += 1;
                glommio::spawn_local(async move {
                    api.shard.metrics.borrow_mut().connections_open += 1;
                    connection::serve(stream, &api).await;
                    api.shard.metrics.borrow_mut().connections_open -= 1;
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
async fn drain(api: &Api) {
    api.draining.set(true);
    let deadline = Instant::now() + DRAIN_LIMIT;
    while api.in_flight.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

/// Applies the consumer's batches in the order they arrive.
async fn apply_ingest(batches: flume::Receiver<IngestBatch>, shard: Rc<Shard>) {
    while let Ok(batch) = batches.recv_async().await {
        for (store, change) in batch {
            shard.apply(store, change);
        }
    }
}
