//! The Redis stores: keys `{prefix}:{key}` in an external Redis (one server
//! or a Redis Cluster), each value holding what a GET needs (`{etag}\n{body}`)
//! so a read is one round trip.
//!
//! Two paths reach Redis, and neither can hold up anything else:
//! - requests from the shards (`RedisStores::call`) go to one `redis-io`
//!   thread running a small tokio runtime (`link`); a shard awaits the reply
//!   under the store's deadline, so a slow or dead Redis costs a Redis route a
//!   fast 503 and costs in-memory routes nothing;
//! - ingest writes come from the store's own feed (a consumer thread of its
//!   own, in `kafka::redis_feed`), which writes through a blocking
//!   `FeedWriter` (`writer`): each batch of data together with the Kafka
//!   offsets it covers (`position`), so a restart resumes where the writes
//!   stopped.
//!
//! `health` turns what both paths see (PING answers, write outcomes, the
//! feed's catch-up) into the store's readiness.

use crate::config::StoreConfig;
use crate::positions::FeedPositions;
use crate::readiness::Readiness;
use crate::store::entry::Entry;
use futures_channel::oneshot;
use std::sync::Arc;
use std::time::Duration;

pub use health::StoreHealth;
pub use position::{offsets_key, StoredPosition};
pub use stats::{RedisLag, RedisStats};
pub use writer::{FeedBatch, FeedWriter};

mod health;
mod link;
mod position;
mod stats;
mod writer;

/// Most changes a feed writes to Redis in one batch.
pub const WRITE_BATCH: usize = 512;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, thiserror::Error)]
pub enum RedisError {
    #[error("redis store `{store}` unavailable: {reason}")]
    Unavailable { store: String, reason: String },
    #[error("redis store `{store}` did not answer within {ms} ms")]
    Timeout { store: String, ms: u64 },
    #[error(
        "redis store `{store}` holds a value for this key that push-cache did not write ({reason}); \
         delete the key in Redis or give the store a prefix of its own"
    )]
    Corrupt { store: String, reason: String },
    #[error("redis store `{0}` cannot be used: {1} (check cache.stores[].url or cluster_nodes)")]
    Config(String, String),
}

impl RedisError {
    /// The HTTP status a request failing with this error gets: 502 for a
    /// value that is not ours (retrying will not help), else 503.
    pub fn status(&self) -> u16 {
        match self {
            RedisError::Corrupt { .. } => 502,
            _ => 503,
        }
    }
}

/// A request from a shard.
#[derive(Debug)]
pub enum Op {
    Get(Vec<u8>),
    InsertNew(Vec<u8>, Vec<u8>),
    /// Stores whether or not the key exists; answers the value it replaced.
    Upsert(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
    /// The `need` smallest keys after `after` that contain `filter`, ascending.
    KeysAfter {
        after: Option<String>,
        filter: String,
        need: usize,
    },
}

#[derive(Debug)]
pub enum Outcome {
    Value(Option<Vec<u8>>),
    Inserted(bool),
    Keys(Vec<String>),
}

/// One shard request on its way to the `redis-io` thread, with where to answer.
struct RedisCall {
    store: usize,
    op: Op,
    reply: oneshot::Sender<Result<Outcome, RedisError>>,
}

/// Where a store's data lives.
#[derive(Clone)]
pub enum Target {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

/// One configured Redis store, ready to connect.
#[derive(Clone)]
pub struct StoreSpec {
    /// Its index in `cache.stores`.
    pub index: usize,
    pub name: String,
    pub prefix: Option<String>,
    pub schemas: Vec<String>,
    /// Top-level fields each record keeps (empty: the whole record).
    pub fields: Vec<String>,
    /// How long a request waits for Redis before answering 503.
    pub timeout: Duration,
    pub target: Target,
}

impl StoreSpec {
    /// The Redis key of cache key `key`.
    pub fn key(&self, key: &[u8]) -> Vec<u8> {
        match &self.prefix {
            Some(p) => [p.as_bytes(), b":", key].concat(),
            None => key.to_vec(),
        }
    }

    /// Whether records of `record_type` go to this store (empty list: all).
    pub fn accepts(&self, record_type: &str) -> bool {
        self.schemas.is_empty() || self.schemas.iter().any(|t| t.eq_ignore_ascii_case(record_type))
    }

    fn unavailable(&self, reason: impl Into<String>) -> RedisError {
        RedisError::Unavailable { store: self.name.clone(), reason: reason.into() }
    }
}

/// Everything the service wires up for its Redis stores: each store's spec,
/// its readiness, and the positions its feed publishes (as feed `redis:{name}`).
pub struct RedisSetup {
    pub specs: Vec<StoreSpec>,
    pub health: Vec<Arc<StoreHealth>>,
    pub positions: Vec<Arc<FeedPositions>>,
    pub stats: Arc<RedisStats>,
}

impl RedisSetup {
    /// Opens a client for every Redis store of `stores` (none: empty lists).
    pub fn new(
        stores: &[StoreConfig],
        readiness: &Arc<Readiness>,
        stats: Arc<RedisStats>,
    ) -> Result<RedisSetup, RedisError> {
        let mut setup = RedisSetup { specs: Vec::new(), health: Vec::new(), positions: Vec::new(), stats };
        for (index, s) in stores.iter().enumerate() {
            let StoreConfig::Redis { name, url, cluster_nodes, prefix, schemas, fields, timeout_ms } = s else {
                continue;
            };
            let target = target(name, url.as_deref(), cluster_nodes)?;
            let timeout = Duration::from_millis(*timeout_ms);
            let spec = StoreSpec {
                index,
                name: name.clone(),
                prefix: prefix.clone(),
                schemas: schemas.clone(),
                fields: fields.clone(),
                timeout,
                target,
            };
            setup.health.push(Arc::new(StoreHealth::new(&readiness_key(name), readiness.clone())));
            setup.positions.push(Arc::new(FeedPositions::new(readiness_key(name))));
            setup.specs.push(spec);
        }
        Ok(setup)
    }
}

fn target(name: &str, url: Option<&str>, nodes: &[String]) -> Result<Target, RedisError> {
    let config = |e: redis::RedisError| RedisError::Config(name.to_string(), e.to_string());
    match url {
        Some(url) => Ok(Target::Single(redis::Client::open(url).map_err(config)?)),
        None => {
            let builder = redis::cluster::ClusterClientBuilder::new(nodes.to_vec())
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(writer::RESPONSE_TIMEOUT)
                .retries(2);
            Ok(Target::Cluster(builder.build().map_err(config)?))
        }
    }
}

/// The shards' handle on the Redis stores.
#[derive(Clone)]
pub struct RedisStores {
    requests: flume::Sender<RedisCall>,
    /// Indexed like `cache.stores`: whether the store is a Redis store.
    serves: Vec<bool>,
    timeouts: Vec<Duration>,
    names: Vec<String>,
}

/// What a Redis value holds: `{etag}\n{body}`.
pub fn encode_value(etag: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(etag.len() + 1 + body.len());
    v.extend_from_slice(etag);
    v.push(b'\n');
    v.extend_from_slice(body);
    v
}

/// Splits a Redis value back into an entry for `key`.
pub fn decode_value(key: &[u8], value: &[u8]) -> Option<Entry> {
    let nl = value.iter().position(|b| *b == b'\n')?;
    Entry::from_parts(key, &value[..nl], &value[nl + 1..]).ok()
}

impl RedisStores {
    /// Starts the `redis-io` thread serving the shards' requests for the
    /// stores of `setup` (none: `None`). `count` is the number of stores.
    pub fn start(setup: &RedisSetup, count: usize) -> Result<Option<RedisStores>, RedisError> {
        if setup.specs.is_empty() {
            return Ok(None);
        }
        let mut serves = vec![false; count];
        let mut timeouts = vec![Duration::ZERO; count];
        let mut names = vec![String::new(); count];
        for spec in &setup.specs {
            serves[spec.index] = true;
            timeouts[spec.index] = spec.timeout;
            names[spec.index] = spec.name.clone();
        }
        let (tx, rx) = flume::bounded(16 * 1024);
        let (specs, health, stats) = (setup.specs.clone(), setup.health.clone(), setup.stats.clone());
        std::thread::Builder::new()
            .name("redis-io".into())
            .spawn(move || link::io_thread(specs, health, rx, stats))
            .map_err(|e| RedisError::Config("*".into(), e.to_string()))?;
        Ok(Some(RedisStores { requests: tx, serves, timeouts, names }))
    }

    /// Whether store `store` (index in `cache.stores`) is a Redis store.
    pub fn serves(&self, store: usize) -> bool {
        self.serves.get(store).copied().unwrap_or(false)
    }

    /// Runs `op` on store `store`, giving up after the store's timeout.
    /// Awaited on a shard: the wait is a timer, not a blocked thread.
    pub async fn call(&self, store: usize, op: Op) -> Result<Outcome, RedisError> {
        let (reply, rx) = oneshot::channel();
        let name = || self.names[store].clone();
        let limit = self.timeouts[store];
        let timeout = || RedisError::Timeout { store: name(), ms: limit.as_millis() as u64 };
        // A full queue means Redis is far behind: answer now rather than queue.
        self.requests.try_send(RedisCall { store, op, reply }).map_err(|_| timeout())?;
        match glommio::timer::timeout(limit, async { Ok(rx.await) }).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(RedisError::Unavailable { store: name(), reason: "redis-io thread stopped".into() }),
            Err(_) => Err(timeout()),
        }
    }
}

/// The readiness key of a Redis store, and the name of its feed's positions.
pub fn readiness_key(store: &str) -> String {
    format!("redis:{store}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let v = encode_value(b"\"5\"", b"{\"a\":\"x\ny\"}");
        let e = decode_value(b"k", &v).unwrap();
        assert_eq!((e.key(), &*e.etag(), e.body()), (&b"k"[..], &b"\"5\""[..], &b"{\"a\":\"x\ny\"}"[..]));
        assert!(decode_value(b"k", b"no newline").is_none());
    }

    #[test]
    fn corrupt_values_are_502_and_say_what_to_do() {
        let e = RedisError::Corrupt { store: "bills".into(), reason: "no ETag line".into() };
        assert_eq!(e.status(), 502);
        assert!(e.to_string().contains("bills") && e.to_string().contains("delete the key"), "{e}");
        assert_eq!(RedisError::Timeout { store: "b".into(), ms: 1 }.status(), 503);
    }
}
