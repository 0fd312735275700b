//! The read path: the `redis-io` thread, a small tokio runtime that runs the
//! shards' requests (GET, SET NX, GETDEL, key listing) on one connection per
//! store (multiplexed, or a cluster connection that routes each key to its
//! node and follows `MOVED`/`ASK`), and PINGs every store to keep its
//! readiness current. A connection that breaks is re-established with
//! backoff; meanwhile requests fail fast.

use super::health::StoreHealth;
use super::stats::RedisStats;
use super::{
    decode_value, Op, Outcome, RedisCall, RedisError, StoreSpec, Target, BACKOFF_MAX, BACKOFF_START, CONNECT_TIMEOUT,
};
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, SingleNodeRoutingInfo};
use redis::AsyncConnectionConfig;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HEALTH_EVERY: Duration = Duration::from_millis(500);

#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }
}

/// One store's connection, re-established with backoff when it breaks.
struct Link {
    spec: StoreSpec,
    conn: Option<Conn>,
    connecting: bool,
    retry_at: Instant,
    backoff: Duration,
    last_error: String,
    stats: Arc<RedisStats>,
}

type Shared = Rc<RefCell<Link>>;

pub(super) fn io_thread(
    specs: Vec<StoreSpec>,
    health: Vec<Arc<StoreHealth>>,
    requests: flume::Receiver<RedisCall>,
    stats: Arc<RedisStats>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return tracing::error!(error = %e, "cannot start the redis-io runtime"),
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let mut links: Vec<Option<Shared>> = Vec::new();
        for (spec, health) in specs.into_iter().zip(health) {
            let index = spec.index;
            let link = Link {
                spec,
                conn: None,
                connecting: false,
                retry_at: Instant::now(),
                backoff: BACKOFF_START,
                last_error: String::new(),
                stats: stats.clone(),
            };
            let link = Rc::new(RefCell::new(link));
            tokio::task::spawn_local(watch_health(link.clone(), health));
            if links.len() <= index {
                links.resize(index + 1, None);
            }
            links[index] = Some(link);
        }
        while let Ok(req) = requests.recv_async().await {
            let Some(Some(link)) = links.get(req.store).cloned() else {
                continue;
            };
            tokio::task::spawn_local(async move {
                let result = execute(&link, req.op).await;
                let _ = req.reply.send(result);
            });
        }
    });
}

/// A usable connection, connecting if due; fails fast while backing off.
async fn connection(link: &Shared) -> Result<Conn, RedisError> {
    let target = {
        let mut l = link.borrow_mut();
        if let Some(c) = &l.conn {
            return Ok(c.clone());
        }
        if l.connecting || Instant::now() < l.retry_at {
            return Err(l.spec.unavailable(format!("reconnecting after: {}", l.last_error)));
        }
        l.connecting = true;
        l.spec.target.clone()
    };
    let result = match target {
        Target::Single(client) => {
            let config =
                AsyncConnectionConfig::new().set_connection_timeout(CONNECT_TIMEOUT).set_response_timeout(BACKOFF_MAX);
            client.get_multiplexed_async_connection_with_config(&config).await.map(Conn::Single)
        }
        Target::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
    };
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
            Err(l.spec.unavailable(e.to_string()))
        }
    }
}

/// Runs a command, counting it, and drops the connection when it broke.
async fn run<T: redis::FromRedisValue>(link: &Shared, cmd: &redis::Cmd) -> Result<T, RedisError> {
    let mut conn = connection(link).await?;
    let started = Instant::now();
    let result = conn.query::<T>(cmd).await;
    record(link, started, result.is_err());
    result.map_err(|e| broken(link, e))
}

/// Runs a command on one cluster node, by address.
async fn run_on(link: &Shared, cmd: &redis::Cmd, routing: RoutingInfo) -> Result<redis::Value, RedisError> {
    let Conn::Cluster(mut conn) = connection(link).await? else {
        return Err(link.borrow().spec.unavailable("not a cluster"));
    };
    let started = Instant::now();
    let result = conn.route_command(cmd, routing).await;
    record(link, started, result.is_err());
    result.map_err(|e| broken(link, e))
}

fn record(link: &Shared, started: Instant, failed: bool) {
    let l = link.borrow();
    l.stats.record(l.spec.index, started.elapsed(), failed);
}

fn broken(link: &Shared, e: redis::RedisError) -> RedisError {
    let mut l = link.borrow_mut();
    if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
    {
        l.conn = None;
        l.last_error = e.to_string();
    }
    l.spec.unavailable(e.to_string())
}

async fn execute(link: &Shared, op: Op) -> Result<Outcome, RedisError> {
    match op {
        Op::Get(key) => {
            let k = link.borrow().spec.key(&key);
            let value: Option<Vec<u8>> = run(link, redis::cmd("GET").arg(k)).await?;
            check_value(link, &key, value).map(Outcome::Value)
        }
        Op::InsertNew(key, value) => {
            let k = link.borrow().spec.key(&key);
            let set: Option<String> = run(link, redis::cmd("SET").arg(k).arg(value).arg("NX")).await?;
            Ok(Outcome::Inserted(set.is_some()))
        }
        Op::Upsert(key, value) => {
            let k = link.borrow().spec.key(&key);
            let old: Option<Vec<u8>> = run(link, redis::cmd("SET").arg(k).arg(value).arg("GET")).await?;
            check_value(link, &key, old).map(Outcome::Value)
        }
        Op::Remove(key) => {
            let k = link.borrow().spec.key(&key);
            let value: Option<Vec<u8>> = run(link, redis::cmd("GETDEL").arg(k)).await?;
            check_value(link, &key, value).map(Outcome::Value)
        }
        Op::KeysAfter { after, filter, need } => scan(link, after.as_deref(), &filter, need).await.map(Outcome::Keys),
    }
}

/// A value that is not `{etag}\n{body}` is an error, not a miss.
fn check_value(link: &Shared, key: &[u8], value: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, RedisError> {
    match value {
        Some(v) if decode_value(key, &v).is_none() => Err(RedisError::Corrupt {
            store: link.borrow().spec.name.clone(),
            reason: "the value is not an ETag line followed by a JSON body".into(),
        }),
        other => Ok(other),
    }
}

/// The `need` smallest keys under the store's prefix that sort after
/// `after` and contain `filter`, ascending, by SCAN (never KEYS); on a
/// cluster, every master is scanned. Redis keeps no order, so this walks the
/// whole keyspace; memory stays at `need` keys (a max-heap of the smallest
/// seen), whatever the store holds.
async fn scan(link: &Shared, after: Option<&str>, filter: &str, need: usize) -> Result<Vec<String>, RedisError> {
    let (pattern, strip, cluster) = {
        let l = link.borrow();
        let cluster = matches!(l.spec.target, Target::Cluster(_));
        let matching = if filter.is_empty() { "*".to_string() } else { format!("*{}*", glob_escape(filter)) };
        match &l.spec.prefix {
            Some(p) => (format!("{}:{matching}", glob_escape(p)), p.len() + 1, cluster),
            None => (matching, 0, cluster),
        }
    };
    let nodes = if cluster { masters(link).await?.into_iter().map(Some).collect() } else { vec![None] };
    let mut smallest = std::collections::BinaryHeap::with_capacity(need + 1);
    for node in nodes {
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000);
            let (next, batch): (u64, Vec<Vec<u8>>) = match &node {
                None => run(link, &cmd).await?,
                Some((host, port)) => {
                    let routing =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host: host.clone(), port: *port });
                    let value = run_on(link, &cmd, routing).await?;
                    redis::from_owned_redis_value(value).map_err(|e| link.borrow().spec.unavailable(e.to_string()))?
                }
            };
            for k in batch {
                // Not UTF-8: not a cache key (the position hash, or another program's key).
                let Ok(k) = String::from_utf8(k) else { continue };
                let key = k.get(strip..).unwrap_or_default();
                let wanted = after.is_none_or(|a| key > a) && key.contains(filter);
                let smaller = smallest.len() < need || smallest.peek().is_some_and(|max: &String| key < max.as_str());
                if wanted && smaller {
                    smallest.push(key.to_string());
                    if smallest.len() > need {
                        smallest.pop();
                    }
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(smallest.into_sorted_vec())
}

/// The cluster's masters that are up, from `CLUSTER NODES`.
async fn masters(link: &Shared) -> Result<Vec<(String, u16)>, RedisError> {
    let text: String = run(link, &redis::cmd("CLUSTER").arg("NODES").to_owned()).await?;
    Ok(parse_masters(&text))
}

/// `<id> <ip:port@cport[,host]> <flags> ...` lines: masters not failed.
fn parse_masters(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, addr, flags) = (fields.next()?, fields.next()?, fields.next()?);
            let flags: Vec<&str> = flags.split(',').collect();
            if !flags.contains(&"master") || flags.iter().any(|f| f.starts_with("fail") || *f == "noaddr") {
                return None;
            }
            let hostport = addr.split('@').next()?;
            let (host, port) = hostport.rsplit_once(':')?;
            Some((host.to_string(), port.parse().ok()?))
        })
        .collect()
}

fn glob_escape(s: &str) -> String {
    s.chars().flat_map(|c| if "*?[]\\".contains(c) { vec!['\\', c] } else { vec![c] }).collect()
}

/// Keeps the store's reachability current: PING (every master of a cluster).
async fn watch_health(link: Shared, health: Arc<StoreHealth>) {
    let cluster = matches!(link.borrow().spec.target, Target::Cluster(_));
    loop {
        let ping = redis::cmd("PING");
        let outcome = if cluster {
            let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, Some(ResponsePolicy::AllSucceeded)));
            run_on(&link, &ping, all).await.map(drop)
        } else {
            run::<String>(&link, &ping).await.map(drop)
        };
        health.reachable(outcome.map_err(|e| e.to_string()));
        tokio::time::sleep(HEALTH_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_are_escaped_and_masters_parsed() {
        assert_eq!(glob_escape("a*b?[c]"), "a\\*b\\?\\[c\\]");
        let nodes = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                     b2 127.0.0.1:7001@17001 master,fail - 0 0 2 connected\n\
                     c3 127.0.0.1:7002@17002,host slave a1 0 0 3 connected\n\
                     d4 127.0.0.1:7003@17003 master - 0 0 4 connected 5461-16383\n";
        assert_eq!(parse_masters(nodes), vec![("127.0.0.1".to_string(), 7000), ("127.0.0.1".to_string(), 7003)]);
    }
}
