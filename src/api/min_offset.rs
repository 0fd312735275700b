//! Position-bound reads: a GET carrying `min_offset=TOPIC/PARTITION/OFFSET`
//! (repeatable) or a `Kafka-Min-Position` header (comma-separated) is
//! answered only once those offsets are applied, or 504 after
//! `webservice.limits.min_offset_wait_ms` with the positions reached.
//!
//! Where the wait happens decides whether the read sees the write: a record
//! is applied by the shard that owns its key, and shards apply their queues
//! independently, so only the owner's own applied position proves the record
//! is visible. An item GET therefore waits on the key's owner (over the mesh
//! when that is another shard); a listing, which reads every shard, waits on
//! every shard. A waiting request is parked (see `runtime::applied`): it
//! costs no CPU and the shards go on serving.

use super::router::Target;
use super::Api;
use crate::http::request::{percent_decode, query_pairs, split_target, Method, Request};
use crate::http::response::{self, Framing};
use crate::positions::{MinPosition, Reached};
use crate::runtime::mesh::PeerGone;
use std::time::{Duration, Instant};

/// Holds a GET until its required positions are applied. `Some(status)`
/// when it answered instead (400 for a malformed position, 504 when the
/// wait ran out); `None` to go on serving.
pub async fn gate(
    api: &Api,
    target: &Target<'_>,
    req: &Request<'_>,
    framing: Framing,
    out: &mut Vec<u8>,
) -> Option<u16> {
    if !matches!(req.method, Method::Get | Method::Head) {
        return None;
    }
    let route = target.route()?;
    let min = match parse(req) {
        Ok(min) if min.is_empty() => return None,
        Ok(min) => min,
        Err(reason) => {
            response::error(out, 400, &reason, framing);
            return Some(400);
        }
    };
    let store = api.shared.router.routes[route].store;
    let key = match target {
        Target::Item { key, .. } => Some(&key[..]),
        _ => None,
    };
    match wait_visible(api, store, key, min, api.shared.limits.min_offset_wait()).await {
        Ok(Ok(())) => None,
        Ok(Err(missing)) => Some(timed_out(out, framing, api.shared.limits.min_offset_wait_ms, &missing)),
        Err(_) => {
            response::error(out, 503, "shard unavailable, the server is shutting down; retry", framing);
            Some(503)
        }
    }
}

/// Waits until every position in `min` is visible to reads of `store` (of
/// `key` only, for an item), or `wait` passed: for a Redis store once its
/// feed wrote it (known on this shard), for an in-memory one once the
/// key's owner applied it (every shard, for a listing).
pub async fn wait_visible(
    api: &Api,
    store: usize,
    key: Option<&str>,
    min: Vec<MinPosition>,
    wait: Duration,
) -> Result<Result<(), Vec<Reached>>, PeerGone> {
    let deadline = Instant::now() + wait;
    if let Some(redis) = api.redis_applied.of(store) {
        return Ok(redis.wait(&min, deadline).await);
    }
    let shards: Vec<usize> = match key {
        Some(key) => vec![api.shard.holder_of(key.as_bytes())],
        None if api.shard.fanout().is_some() => vec![api.shard.id],
        None => (0..api.shard.count).collect(),
    };
    for shard in shards {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(missing) = api.mesh.wait_applied(shard, min.clone(), left).await? {
            return Ok(Err(missing));
        }
    }
    Ok(Ok(()))
}

/// The positions named by the query's `min_offset` values and the header.
fn parse(req: &Request<'_>) -> Result<Vec<MinPosition>, String> {
    let (_, query) = split_target(req.target);
    let mut values = Vec::new();
    for (name, raw) in query_pairs(query) {
        if name == b"min_offset" {
            values.push(percent_decode(raw, true).ok_or("min_offset: bad percent-encoding")?);
        }
    }
    let header = match req.min_position {
        Some(h) => Some(std::str::from_utf8(h).map_err(|_| "Kafka-Min-Position must be ASCII")?),
        None => None,
    };
    MinPosition::parse_all(values.iter().map(String::as_str), header).map_err(|e| format!("min_offset: {e}"))
}

fn timed_out(out: &mut Vec<u8>, framing: Framing, waited_ms: u64, missing: &[Reached]) -> u16 {
    let reached: Vec<serde_json::Value> = missing
        .iter()
        .map(|r| {
            serde_json::json!({
                "topic": r.wanted.topic,
                "partition": r.wanted.partition,
                "offset": r.wanted.offset,
                "applied": r.applied,
            })
        })
        .collect();
    let body = serde_json::json!({
        "error": format!("position not applied within {waited_ms} ms; retry later"),
        "waiting_for": reached,
    });
    response::json(out, 504, &[], body.to_string().as_bytes(), framing);
    504
}
