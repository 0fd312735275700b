//! The Redis store: keys `{prefix}:{key}` in an external Redis, each value
//! holding what a GET needs (`{etag}\n{body}`) so a read is one round trip.
//!
//! Redis is reached from one `redis-io` thread running a small tokio
//! runtime, never from a shard's event loop: shards send requests over a
//! channel and await a oneshot reply under a deadline, so a slow or dead
//! Redis costs a Redis route a fast 503, and costs in-memory routes nothing.
//! Ingest writes go through the same thread as pipelined batches, retried
//! until Redis takes them, so the consumer waits rather than dropping.

use crate::config::StoreConfig;
use crate::readiness::Readiness;
use crate::store::entry::Entry;
use futures_channel::oneshot;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use stats::RedisStats;

mod stats;

/// Batch size limit the consumer sends a Redis store at once.
pub const WRITE_BATCH: usize = 512;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const HEALTH_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, thiserror::Error)]
pub enum RedisError {
    #[error("redis store `{store}` unavailable: {reason}")]
    Unavailable { store: String, reason: String },
    #[error("redis store `{store}` did not answer within {ms} ms")]
    Timeout { store: String, ms: u64 },
    #[error("redis store `{store}` holds a value for this key that is not ours: {reason}")]
    Corrupt { store: String, reason: String },
    #[error("redis store `{0}` cannot be used: {1} (check cache.stores[].url)")]
    Config(String, String),
}

/// A request from a shard.
#[derive(Debug)]
pub enum Op {
    Get(Vec<u8>),
    InsertNew(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
    Keys(String),
}

#[derive(Debug)]
pub enum Outcome {
    Value(Option<Vec<u8>>),
    Inserted(bool),
    Keys(Vec<String>),
}

struct Request {
    store: usize,
    op: Op,
    reply: oneshot::Sender<Result<Outcome, RedisError>>,
}

/// One batch of ingest changes for a store: key -> value (None: delete).
pub type WriteBatch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The shards' and the consumer's handle on the Redis stores.
#[derive(Clone)]
pub struct RedisStores {
    requests: flume::Sender<Request>,
    /// Indexed like `cache.stores`; `Some` for Redis stores.
    pub writers: Vec<Option<flume::Sender<WriteBatch>>>,
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
    /// Starts the `redis-io` thread for the Redis stores of `stores` (none: `None`).
    pub fn start(stores: &[StoreConfig], readiness: Arc<Readiness>, stats: Arc<RedisStats>) -> Result<Option<RedisStores>, RedisError> {
        let mut links = Vec::new();
        let mut writers = Vec::new();
        let mut write_rx = Vec::new();
        let mut timeouts = Vec::new();
        for s in stores {
            match s {
                StoreConfig::Redis { name, url, prefix, timeout_ms, .. } => {
                    let client = redis::Client::open(url.as_str()).map_err(|e| RedisError::Config(name.clone(), e.to_string()))?;
                    links.push(Some(LinkSpec { name: name.clone(), client, prefix: prefix.clone() }));
                    let (tx, rx) = flume::bounded(4);
                    writers.push(Some(tx));
                    write_rx.push(Some(rx));
                    timeouts.push(Duration::from_millis(*timeout_ms));
                    readiness.wait_for(&readiness_key(name), "connecting");
                }
                StoreConfig::InMemory { .. } => {
                    links.push(None);
                    writers.push(None);
                    write_rx.push(None);
                    timeouts.push(Duration::ZERO);
                }
            }
        }
        if links.iter().all(Option::is_none) {
            return Ok(None);
        }
        let names = stores.iter().map(|s| s.name().to_string()).collect();
        let (tx, rx) = flume::bounded(16 * 1024);
        std::thread::Builder::new()
            .name("redis-io".into())
            .spawn(move || io_thread(links, rx, write_rx, readiness, stats))
            .map_err(|e| RedisError::Config("*".into(), e.to_string()))?;
        Ok(Some(RedisStores { requests: tx, writers, timeouts, names }))
    }

    /// Runs `op` on store `store`, giving up after the store's timeout.
    /// Awaited on a shard: the wait is a timer, not a blocked thread.
    pub async fn call(&self, store: usize, op: Op) -> Result<Outcome, RedisError> {
        let (reply, rx) = oneshot::channel();
        let name = || self.names[store].clone();
        let limit = self.timeouts[store];
        let timeout = || RedisError::Timeout { store: name(), ms: limit.as_millis() as u64 };
        // A full queue means Redis is far behind: answer now rather than queue.
        self.requests.try_send(Request { store, op, reply }).map_err(|_| timeout())?;
        match glommio::timer::timeout(limit, async { Ok(rx.await) }).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(RedisError::Unavailable { store: name(), reason: "redis-io thread stopped".into() }),
            Err(_) => Err(timeout()),
        }
    }
}

pub fn readiness_key(store: &str) -> String {
    format!("redis:{store}")
}

struct LinkSpec {
    name: String,
    client: redis::Client,
    prefix: Option<String>,
}

/// One store's connection, re-established with backoff when it breaks.
struct Link {
    spec: LinkSpec,
    conn: Option<MultiplexedConnection>,
    connecting: bool,
    retry_at: Instant,
    backoff: Duration,
    last_error: String,
    stats: Arc<RedisStats>,
    index: usize,
}

type Shared = Rc<RefCell<Link>>;

impl Link {
    fn key(&self, key: &[u8]) -> Vec<u8> {
        match &self.spec.prefix {
            Some(p) => [p.as_bytes(), b":", key].concat(),
            None => key.to_vec(),
        }
    }

    fn unavailable(&self, reason: impl Into<String>) -> RedisError {
        RedisError::Unavailable { store: self.spec.name.clone(), reason: reason.into() }
    }
}

/// A usable connection, connecting if due; fails fast while backing off.
async fn connection(link: &Shared) -> Result<MultiplexedConnection, RedisError> {
    let client = {
        let mut l = link.borrow_mut();
        if let Some(c) = &l.conn {
            return Ok(c.clone());
        }
        if l.connecting || Instant::now() < l.retry_at {
            return Err(l.unavailable(format!("reconnecting after: {}", l.last_error)));
        }
        l.connecting = true;
        l.spec.client.clone()
    };
    let config = AsyncConnectionConfig::new().set_connection_timeout(CONNECT_TIMEOUT).set_response_timeout(BACKOFF_MAX);
    let result = client.get_multiplexed_async_connection_with_config(&config).await;
    let mut l = link.borrow_mut();
    l.connecting = false;
    match result {
        Ok(c) => {
            l.conn = Some(c.clone());
            l.backoff = BACKOFF_START;
            Ok(c)
        }
        Err(e) => {
            l.last_error = e.to_string();
            l.retry_at = Instant::now() + l.backoff;
            l.backoff = (l.backoff * 2).min(BACKOFF_MAX);
            Err(l.unavailable(e.to_string()))
        }
    }
}

/// Runs a command, counting it, and drops the connection when it broke.
async fn run<T: redis::FromRedisValue>(link: &Shared, cmd: &redis::Cmd) -> Result<T, RedisError> {
    let mut conn = connection(link).await?;
    let started = Instant::now();
    let result = cmd.query_async::<T>(&mut conn).await;
    record(link, started, &result);
    result.map_err(|e| broken(link, e))
}

fn record<T>(link: &Shared, started: Instant, result: &redis::RedisResult<T>) {
    let l = link.borrow();
    l.stats.record(l.index, started.elapsed(), result.is_err());
}

fn broken(link: &Shared, e: redis::RedisError) -> RedisError {
    let mut l = link.borrow_mut();
    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal() || e.is_unrecoverable_error() {
        l.conn = None;
        l.last_error = e.to_string();
    }
    l.unavailable(e.to_string())
}

fn io_thread(
    links: Vec<Option<LinkSpec>>,
    requests: flume::Receiver<Request>,
    writes: Vec<Option<flume::Receiver<WriteBatch>>>,
    readiness: Arc<Readiness>,
    stats: Arc<RedisStats>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return tracing::error!(error = %e, "cannot start the redis-io runtime"),
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let make = |i: usize, spec: LinkSpec| {
            Rc::new(RefCell::new(Link { spec, conn: None, connecting: false, retry_at: Instant::now(), backoff: BACKOFF_START, last_error: String::new(), stats: stats.clone(), index: i }))
        };
        let mut read_links: Vec<Option<Shared>> = Vec::new();
        for (i, (spec, rx)) in links.into_iter().zip(writes).enumerate() {
            let (Some(spec), Some(rx)) = (spec, rx) else {
                read_links.push(None);
                continue;
            };
            let write_spec = LinkSpec { name: spec.name.clone(), client: spec.client.clone(), prefix: spec.prefix.clone() };
            let read = make(i, spec);
            tokio::task::spawn_local(watch_health(read.clone(), readiness.clone()));
            tokio::task::spawn_local(write_loop(make(i, write_spec), rx, readiness.clone()));
            read_links.push(Some(read));
        }
        while let Ok(req) = requests.recv_async().await {
            let Some(Some(link)) = read_links.get(req.store).cloned() else { continue };
            tokio::task::spawn_local(async move {
                let result = execute(&link, req.op).await;
                let _ = req.reply.send(result);
            });
        }
    });
}

async fn execute(link: &Shared, op: Op) -> Result<Outcome, RedisError> {
    match op {
        Op::Get(key) => {
            let k = link.borrow().key(&key);
            run(link, redis::cmd("GET").arg(k)).await.map(Outcome::Value)
        }
        Op::InsertNew(key, value) => {
            let k = link.borrow().key(&key);
            let set: Option<String> = run(link, redis::cmd("SET").arg(k).arg(value).arg("NX")).await?;
            Ok(Outcome::Inserted(set.is_some()))
        }
        Op::Remove(key) => {
            let k = link.borrow().key(&key);
            run(link, redis::cmd("GETDEL").arg(k)).await.map(Outcome::Value)
        }
        Op::Keys(filter) => scan(link, &filter).await.map(Outcome::Keys),
    }
}

/// Keys under the store's prefix containing `filter`, by SCAN (never KEYS).
async fn scan(link: &Shared, filter: &str) -> Result<Vec<String>, RedisError> {
    let (pattern, strip) = {
        let l = link.borrow();
        match &l.spec.prefix {
            Some(p) => (format!("{}:*", glob_escape(p)), p.len() + 1),
            None => ("*".to_string(), 0),
        }
    };
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = run(link, redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000)).await?;
        for k in batch {
            if let Ok(k) = String::from_utf8(k) {
                let key = &k[strip.min(k.len())..];
                if filter.is_empty() || key.contains(filter) {
                    keys.push(key.to_string());
                }
            }
        }
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

fn glob_escape(s: &str) -> String {
    s.chars().flat_map(|c| if "*?[]\\".contains(c) { vec!['\\', c] } else { vec![c] }).collect()
}

/// Keeps readiness in step with whether the store answers PING.
async fn watch_health(link: Shared, readiness: Arc<Readiness>) {
    let key = readiness_key(&link.borrow().spec.name);
    loop {
        match run::<String>(&link, &redis::cmd("PING")).await {
            Ok(_) => readiness.done(&key),
            Err(e) => readiness.wait_for(&key, e.to_string()),
        }
        tokio::time::sleep(HEALTH_EVERY).await;
    }
}

/// Applies ingest batches in order, each retried until Redis takes it.
async fn write_loop(link: Shared, batches: flume::Receiver<WriteBatch>, readiness: Arc<Readiness>) {
    let key = readiness_key(&link.borrow().spec.name);
    while let Ok(batch) = batches.recv_async().await {
        let mut backoff = BACKOFF_START;
        while let Err(e) = write(&link, &batch).await {
            tracing::warn!(error = %e, "redis write failed; retrying in {backoff:?}, ingestion waits");
            readiness.wait_for(&key, format!("writes failing, ingestion paused: {e}"));
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

async fn write(link: &Shared, batch: &WriteBatch) -> Result<(), RedisError> {
    let mut pipe = redis::pipe();
    {
        let l = link.borrow();
        for (key, value) in batch {
            match value {
                Some(v) => pipe.cmd("SET").arg(l.key(key)).arg(v).ignore(),
                None => pipe.cmd("DEL").arg(l.key(key)).ignore(),
            };
        }
    }
    let mut conn = connection(link).await?;
    let started = Instant::now();
    let result = pipe.query_async::<()>(&mut conn).await;
    record(link, started, &result);
    result.map_err(|e| broken(link, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_globs_are_escaped() {
        let v = encode_value(b"\"5\"", b"{\"a\":\"x\ny\"}");
        let e = decode_value(b"k", &v).unwrap();
        assert_eq!((e.key(), &*e.etag(), e.body()), (&b"k"[..], &b"\"5\""[..], &b"{\"a\":\"x\ny\"}"[..]));
        assert!(decode_value(b"k", b"no newline").is_none());
        assert_eq!(glob_escape("a*b?[c]"), "a\\*b\\?\\[c\\]");
    }
}
