//! Wiring of the `push-cache` process: load the configuration, start the
//! shards (and the consumer), wait for SIGTERM/SIGINT, stop in order.

use crate::api::{Api, Shared};
use crate::config::{Config, ConfigError};
use crate::kafka::consumer::Resume;
use crate::kafka::consumer::{self, ConsumerError};
use crate::kafka::dispatch::KnownTypes;
use crate::kafka::produce::{KafkaWriter, WriteError};
use crate::kafka::redis_feed::{self, FeedError};
use crate::kafka::stats::IngestStats;
use crate::metrics::MetricsSource;
use crate::readiness::Readiness;
use crate::runtime::snapshot::{self, Plan, SnapshotStats, SnapshotWriter, WriterHandle};
use crate::runtime::{self, Server, StartError};
use crate::store::redis::{RedisError, RedisLag, RedisSetup, RedisStats, RedisStores};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The longest a stop may take before the process exits anyway.
const STOP_LIMIT: Duration = Duration::from_millis(4_800);
/// How long a stop waits for the Redis feeds (one may be stuck on a stalled Redis).
const FEEDS_STOP_LIMIT: Duration = Duration::from_millis(300);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Feed(#[from] FeedError),
    #[error(transparent)]
    Writer(#[from] WriteError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl RunError {
    pub fn is_usage(&self) -> bool {
        matches!(self, RunError::Usage(_))
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Usage(_) | RunError::Config(_) | RunError::Redis(_) => 2,
            RunError::Consumer(ConsumerError::Create(_) | ConsumerError::Registry(_)) => 2,
            RunError::Feed(FeedError::Create(..) | FeedError::Registry(_)) => 2,
            _ => 1,
        }
    }
}

/// `--name value` pairs after the command; unknown flags are usage errors.
fn flags(args: &[String], known: &[&str]) -> Result<Vec<(String, String)>, RunError> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => (flag.clone(), it.next().cloned().ok_or_else(|| RunError::Usage(format!("{flag} needs a value")))?),
        };
        if !known.contains(&name.as_str()) {
            return Err(RunError::Usage(format!("unknown argument `{name}`")));
        }
        out.push((name, value));
    }
    Ok(out)
}

fn flag<'a>(flags: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    flags.iter().rev().find(|(n, _)| names.contains(&n.as_str())).map(|(_, v)| v.as_str())
}

pub fn run_server(args: &[String]) -> Result<(), RunError> {
    let flags = flags(args, &["--config", "-c", "--secrets", "-s"])?;
    let config_path =
        flag(&flags, &["--config", "-c"]).ok_or_else(|| RunError::Usage("--config FILE is required".into()))?;
    let secrets = PathBuf::from(flag(&flags, &["--secrets", "-s"]).unwrap_or("secrets"));
    let config = Config::load(config_path.as_ref(), Some(&secrets))?;
    // Installed first, so a stop requested during start-up is not lost.
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    let address = resolve_address(&config.webservice.address)?;
    let readiness = Arc::new(Readiness::default());
    // Not ready until the consumer has caught up; said before the first
    // request can arrive.
    readiness.wait_for(consumer::READINESS_KEY, "starting the Kafka consumer");
    let stats = Arc::new(IngestStats::default());
    let redis_stats = Arc::new(RedisStats::new(config.cache.stores.iter().map(|s| s.name().to_string()).collect()));
    let redis_setup = RedisSetup::new(&config.cache.stores, &readiness, redis_stats.clone())?;
    let redis = RedisStores::start(&redis_setup, config.cache.stores.len())?;
    // Each Redis store's feed positions (`redis:{store}`), for lag metrics.
    let feeds = redis_setup.positions.clone();
    let lag = RedisLag { feeds: redis_setup.specs.iter().map(|s| s.name.clone()).zip(feeds.iter().cloned()).collect() };
    let snapshot_stats = Arc::new(SnapshotStats::default());
    let sources: Vec<Arc<dyn MetricsSource>> = vec![stats.clone(), redis_stats, Arc::new(lag), snapshot_stats.clone()];
    let mut shared = Shared::new(&config, readiness.clone(), sources, redis);
    shared.feeds.push(stats.positions());
    shared.feeds.extend(feeds.iter().cloned());
    if shared.write_topics.iter().any(Option::is_some) {
        shared.writer = Some(KafkaWriter::start(&config)?);
    }
    let shared = Arc::new(shared);
    let (server, resume, plan) = start_shards(&config, address, shared, &snapshot_stats)?;
    let known_types = resume.known_types.clone();
    let consumer = consumer::start_from(&config, server.ingest.clone(), readiness, stats, resume)?;
    let redis_feeds = redis_feed::start(&config, &redis_setup)?;
    let snapshots = start_snapshots(&config, &server, known_types, snapshot_stats, plan.as_ref())?;
    eprintln!(
        "push-cache {} listening on http://{address} with {} shards",
        env!("CARGO_PKG_VERSION"),
        server.ingest.shards()
    );
    signals.forever().next();
    tracing::info!("stopping: no new connections, finishing in-flight requests");
    let stopping = std::time::Instant::now();
    std::thread::spawn(|| {
        std::thread::sleep(STOP_LIMIT);
        tracing::warn!("stop took too long; exiting anyway");
        std::process::exit(0);
    });
    // Nothing waits on a Redis feed: told first, joined last and briefly.
    redis_feeds.request_stop();
    consumer.stop();
    if let Some(s) = snapshots {
        if !s.finish(STOP_LIMIT.saturating_sub(stopping.elapsed())) {
            tracing::warn!("the final snapshot did not finish in time; the previous one stays in place");
        }
    }
    server.shutdown();
    redis_feeds.stop(FEEDS_STOP_LIMIT);
    Ok(())
}

/// Starts the shards, loading the snapshot when a usable one exists.
fn start_shards(
    config: &Config,
    address: SocketAddr,
    shared: Arc<Shared>,
    stats: &SnapshotStats,
) -> Result<(Server, Resume, Option<Plan>), RunError> {
    let plan = snapshot::plan(config);
    let begun = std::time::Instant::now();
    let snapshots_on = config.snapshot.dir.is_some();
    let decided = |loaded: bool| {
        if snapshots_on {
            stats.started_from_snapshot(loaded);
        }
    };
    let (server, loaded) = runtime::start_loading(config, address, Api::factory(shared), plan.as_ref(), &decided)?;
    match plan.filter(|_| loaded) {
        Some(plan) => {
            snapshot::loaded(stats, plan.manifest.files.iter().map(|f| f.bytes).sum(), begun.elapsed());
            Ok((server, plan.resume(), Some(plan)))
        }
        None => Ok((server, Resume::default(), None)),
    }
}

/// Starts the periodic snapshot writer when `snapshot.dir` is set.
fn start_snapshots(
    config: &Config,
    server: &Server,
    known: KnownTypes,
    stats: Arc<SnapshotStats>,
    plan: Option<&Plan>,
) -> Result<Option<WriterHandle>, RunError> {
    let orders = server.snapshot_orders.clone();
    let Some(writer) = SnapshotWriter::new(config, orders, known, stats, plan) else { return Ok(None) };
    Ok(Some(writer.start(Duration::from_secs(config.snapshot.interval_seconds))?))
}

/// Port 0 means "any free port": pick one now, so every shard binds the same.
fn resolve_address(text: &str) -> Result<SocketAddr, RunError> {
    let addr: SocketAddr = text.parse().map_err(|_| ConfigError::Invalid {
        key: "webservice.address".into(),
        problem: format!("`{text}` is not host:port"),
    })?;
    if addr.port() != 0 {
        return Ok(addr);
    }
    Ok(TcpListener::bind(addr)?.local_addr()?)
}

/// `schema-registry --listen ADDR [--data FILE]`.
pub fn run_registry(args: &[String]) -> Result<(), RunError> {
    let flags = flags(args, &["--listen", "--data"])?;
    let listen = flag(&flags, &["--listen"]).unwrap_or("127.0.0.1:8081");
    let data = flag(&flags, &["--data"]).map(PathBuf::from);
    crate::registry::server::run(listen, data)?;
    Ok(())
}
