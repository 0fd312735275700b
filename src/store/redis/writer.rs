//! The feed's writer: a connection of its own to the store's Redis (one
//! server or a cluster), used only by that store's feed thread, which blocks
//! on each call (a small tokio runtime of the writer's own drives it).
//!
//! Each batch carries its data changes and the Kafka offsets they bring the
//! store to. The data goes first, as one pipeline (on a cluster, a cluster
//! pipeline: commands grouped per node, `MOVED`/`ASK` followed by the
//! client), and the offsets after it, only once every data write succeeded,
//! so a stored offset never covers a change that is not in Redis. A failure
//! or crash between the two leaves an older position in Redis, and the
//! retry or restart replays from it: each replayed change sets a key to the
//! value it had at that offset, in topic order, so once the replay passes
//! the crash point every key holds its latest value again (at-least-once
//! converges).
//!
//! Not `MULTI`/`EXEC`: a cluster cannot run a transaction across slots, and
//! Redis 7.0 with its `default` user off fails to reload transactions from
//! its append-only file (`-NOPERM ... ACLs rules changed` at start), which
//! would lose every write on a restart.
//!
//! Every call has a deadline (a batch `BATCH_TIMEOUT`), so a stalled Redis
//! turns into an error, not a thread stuck in a read; any error drops the
//! connection and the next call reconnects. Within a batch only the last
//! change of each key is written: that is what the batch leaves in Redis.

use super::position::{fed_field, offset_field, offsets_key, StoredPosition};
use super::stats::RedisStats;
use super::{RedisError, StoreSpec, Target, CONNECT_TIMEOUT};
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::AsyncConnectionConfig;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one Redis command may take before it counts as failed.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a whole batch of writes may take.
const BATCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting (to every node of a cluster) may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(3);

/// One batch of a feed: data changes in topic order, then the position.
#[derive(Debug, Default)]
pub struct FeedBatch {
    /// Cache key -> stored value (`None`: delete).
    pub changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// (topic, partition, next offset) for every partition the batch moves.
    pub offsets: Vec<(String, i32, i64)>,
    /// Topics that fed the store for the first time in this batch.
    pub fed_topics: Vec<String>,
}

impl FeedBatch {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.offsets.is_empty() && self.fed_topics.is_empty()
    }

    pub fn clear(&mut self) {
        self.changes.clear();
        self.offsets.clear();
        self.fed_topics.clear();
    }
}

#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

pub struct FeedWriter {
    spec: StoreSpec,
    conn: Option<Conn>,
    stats: Arc<RedisStats>,
    /// Drives this writer's connection; only ever entered from the feed's thread.
    runtime: tokio::runtime::Runtime,
}

impl FeedWriter {
    pub fn new(spec: StoreSpec, stats: Arc<RedisStats>) -> Result<FeedWriter, RedisError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RedisError::Config(spec.name.clone(), format!("cannot start its writer's runtime: {e}")))?;
        Ok(FeedWriter { spec, conn: None, stats, runtime })
    }

    pub fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    /// The position stored with the data (empty when the store is new).
    pub fn load(&mut self) -> Result<StoredPosition, RedisError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(offsets_key(self.spec.prefix.as_deref()));
        let fields: Vec<(Vec<u8>, Vec<u8>)> =
            self.run(RESPONSE_TIMEOUT, |mut conn| async move { conn.query(&cmd).await })?;
        Ok(StoredPosition::parse(fields))
    }

    /// Applies `batch`: its data, then its position (see the module doc).
    pub fn write(&mut self, batch: &FeedBatch) -> Result<(), RedisError> {
        let changes = latest_per_key(&batch.changes);
        if !changes.is_empty() {
            let commands: Vec<redis::Cmd> = changes
                .iter()
                .map(|(key, value)| match value {
                    Some(v) => redis::cmd("SET").arg(self.spec.key(key)).arg(*v).to_owned(),
                    None => redis::cmd("DEL").arg(self.spec.key(key)).to_owned(),
                })
                .collect();
            self.run(BATCH_TIMEOUT, |conn| write_all(conn, commands))?;
        }
        if let Some(position) = self.position_command(batch) {
            self.run(RESPONSE_TIMEOUT, |mut conn| async move { conn.query::<()>(&position).await })?;
        }
        self.stats.written(self.spec.index, batch.changes.len());
        Ok(())
    }

    /// `HSET offsets topic/partition next ... fed:topic 1 ...`, if anything moved.
    fn position_command(&self, batch: &FeedBatch) -> Option<redis::Cmd> {
        if batch.offsets.is_empty() && batch.fed_topics.is_empty() {
            return None;
        }
        let mut cmd = redis::cmd("HSET");
        cmd.arg(offsets_key(self.spec.prefix.as_deref()));
        for (topic, partition, next) in &batch.offsets {
            cmd.arg(offset_field(topic, *partition)).arg(*next);
        }
        for topic in &batch.fed_topics {
            cmd.arg(fed_field(topic)).arg(1);
        }
        Some(cmd)
    }

    /// Runs `f` on a connection (connecting first when there is none) under
    /// `limit`, counting it; any failure drops the connection.
    fn run<T, F>(&mut self, limit: Duration, f: impl FnOnce(Conn) -> F) -> Result<T, RedisError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let result = match self.connection() {
            Ok(conn) => match self.runtime.block_on(async { tokio::time::timeout(limit, f(conn)).await }) {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(self.spec.unavailable(e.to_string())),
                Err(_) => Err(self.spec.unavailable(format!("no answer within {limit:?}"))),
            },
            Err(e) => Err(e),
        };
        self.stats.record(self.spec.index, started.elapsed(), result.is_err());
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn connection(&mut self) -> Result<Conn, RedisError> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let target = self.spec.target.clone();
        let connect = async move {
            match target {
                Target::Single(client) => {
                    let config = AsyncConnectionConfig::new()
                        .set_connection_timeout(CONNECT_TIMEOUT)
                        .set_response_timeout(RESPONSE_TIMEOUT);
                    client.get_multiplexed_async_connection_with_config(&config).await.map(Conn::Single)
                }
                Target::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
            }
        };
        let conn = match self.runtime.block_on(async { tokio::time::timeout(CONNECT_LIMIT, connect).await }) {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(self.spec.unavailable(format!("cannot connect: {e}"))),
            Err(_) => return Err(self.spec.unavailable(format!("cannot connect within {CONNECT_LIMIT:?}"))),
        };
        self.conn = Some(conn.clone());
        Ok(conn)
    }
}

impl Conn {
    async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }
}

/// One pipeline on one server; on a cluster every command on its own, all
/// in flight at once: the cluster connection routes each to its node (and
/// follows `MOVED`/`ASK`), and its connection per node pipelines them.
async fn write_all(conn: Conn, commands: Vec<redis::Cmd>) -> redis::RedisResult<()> {
    match conn {
        Conn::Single(mut c) => {
            let mut pipe = redis::pipe();
            for cmd in commands {
                pipe.add_command(cmd).ignore();
            }
            pipe.query_async::<()>(&mut c).await
        }
        Conn::Cluster(c) => {
            let writes = commands.into_iter().map(|cmd| {
                let mut c = c.clone();
                async move { cmd.query_async::<redis::Value>(&mut c).await }
            });
            futures_util::future::try_join_all(writes).await.map(drop)
        }
    }
}

/// The last change of each key, in the order of those last changes: what the
/// batch leaves in Redis, so no two writes of one key are ever in flight.
fn latest_per_key(changes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<(&[u8], Option<&[u8]>)> {
    let mut last: HashMap<&[u8], usize> = HashMap::with_capacity(changes.len());
    for (i, (key, _)) in changes.iter().enumerate() {
        last.insert(key, i);
    }
    changes
        .iter()
        .enumerate()
        .filter(|(i, (key, _))| last[key.as_slice()] == *i)
        .map(|(_, (k, v))| (k.as_slice(), v.as_deref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_keeps_the_last_change_of_each_key() {
        let changes =
            vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"b".to_vec(), Some(b"2".to_vec())), (b"a".to_vec(), None)];
        let latest = latest_per_key(&changes);
        assert_eq!(latest, vec![(&b"b"[..], Some(&b"2"[..])), (&b"a"[..], None)]);
    }
}
