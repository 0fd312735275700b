//! Wiring of the `push-cache` process: load the configuration, start the
//! shards (and the consumer), wait for SIGTERM/SIGINT, stop in order.

use crate::api::{MetricsSource, Shared};
use crate::kafka::consumer::{self, ConsumerError};
use crate::kafka::stats::IngestStats;
use crate::store::redis::{RedisError, RedisStats, RedisStores};
use crate::config::{Config, ConfigError};
use crate::readiness::Readiness;
use crate::runtime::{self, StartError};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The longest a stop may take before the process exits anyway.
const STOP_LIMIT: Duration = Duration::from_millis(4_800);

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
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl RunError {
    pub fn is_usage(&self) -> bool {
        matches!(self, RunError::Usage(_))
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Usage(_) | RunError::Config(_) | RunError::Redis(_) | RunError::Consumer(ConsumerError::Create(_) | ConsumerError::Registry(_)) => 2,
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
    let config_path = flag(&flags, &["--config", "-c"]).ok_or_else(|| RunError::Usage("--config FILE is required".into()))?;
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
    let redis = RedisStores::start(&config.cache.stores, readiness.clone(), redis_stats.clone())?;
    let writers = redis.as_ref().map(|r| r.writers.clone()).unwrap_or_default();
    let sources: Vec<Arc<dyn MetricsSource>> = vec![stats.clone(), redis_stats];
    let shared = Arc::new(Shared::new(&config, readiness.clone(), sources, redis));
    let server = runtime::start(&config, address, shared)?;
    let consumer = consumer::start(&config, server.ingest.clone(), writers, readiness, stats)?;
    eprintln!("push-cache {} listening on http://{address} with {} shards", env!("CARGO_PKG_VERSION"), server.ingest.len());
    signals.forever().next();
    tracing::info!("stopping: no new connections, finishing in-flight requests");
    std::thread::spawn(|| {
        std::thread::sleep(STOP_LIMIT);
        tracing::warn!("stop took too long; exiting anyway");
        std::process::exit(0);
    });
    consumer.stop();
    server.shutdown();
    Ok(())
}

/// Port 0 means "any free port": pick one now, so every shard binds the same.
fn resolve_address(text: &str) -> Result<SocketAddr, RunError> {
    let addr: SocketAddr = text.parse().map_err(|_| ConfigError::Invalid { key: "webservice.address".into(), problem: format!("`{text}` is not host:port") })?;
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
