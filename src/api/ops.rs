//! Operational endpoints: `/health/live`, `/health/ready`, `/metrics`,
//! `/offsets`, and the gathering of every shard's snapshot that `/metrics`
//! and `/status` share.

use super::Api;
use crate::http::response::{self, Framing};
use crate::metrics::{self, Labels, ShardSnapshot};
use crate::runtime::mesh::{ShardCall, ShardReply};
use std::fmt::Write;

pub fn live(out: &mut Vec<u8>, framing: Framing) -> u16 {
    response::json(out, 200, &[], br#"{"status":"live"}"#, framing);
    200
}

/// 200 once nothing is awaited, else 503 naming what is awaited and why.
pub fn ready(api: &Api, out: &mut Vec<u8>, framing: Framing) -> u16 {
    let waiting = api.shared.readiness.waiting();
    if waiting.is_empty() {
        response::json(out, 200, &[], br#"{"status":"ready"}"#, framing);
        return 200;
    }
    let body = serde_json::json!({ "error": "not ready", "waiting_for": waiting });
    response::json(out, 503, &[], body.to_string().as_bytes(), framing);
    503
}

/// Prometheus text exposition: every shard's snapshot plus the sources
/// registered by other subsystems.
pub async fn metrics(api: &Api, out: &mut Vec<u8>, framing: Framing) -> u16 {
    let Some(snapshots) = shard_snapshots(api).await else {
        response::error(out, 503, "shards unavailable during shutdown", framing);
        return 503;
    };
    let shared = &api.shared;
    let mut text = String::with_capacity(16 * 1024);
    metrics::render_shards(
        &mut text,
        &Labels { routes: &shared.route_labels, stores: &shared.store_names },
        &snapshots,
    );
    for source in &shared.metrics_sources {
        source.render(&mut text);
    }
    metrics::header(&mut text, "push_cache_ready", "gauge", "1 when /health/ready answers 200.");
    let _ = writeln!(text, "push_cache_ready {}", u8::from(shared.readiness.is_ready()));
    metrics::header(&mut text, "push_cache_build_info", "gauge", "Build information.");
    let _ = writeln!(text, "push_cache_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    metrics::header(&mut text, "push_cache_shards", "gauge", "Number of shards.");
    let _ = writeln!(text, "push_cache_shards {}", api.shard.count);
    response::with_type(out, 200, "text/plain; version=0.0.4; charset=utf-8", text.as_bytes(), framing);
    200
}

/// Every shard's counters and store sizes, asked for over the mesh, in shard
/// order; `None` while the shards are stopping. `/metrics` and `/status`
/// both start here.
pub async fn shard_snapshots(api: &Api) -> Option<Vec<ShardSnapshot>> {
    let replies = api.mesh.call_all(|| ShardCall::Snapshot).await.ok()?;
    let mut snapshots: Vec<_> =
        replies.into_iter().filter_map(|r| if let ShardReply::Snapshot(s) = r { Some(*s) } else { None }).collect();
    snapshots.sort_by_key(|s| s.shard);
    Some(snapshots)
}

/// Every feed's applied offset and high watermark per assigned partition:
/// `{"memory": [{"topic", "partition", "applied", "high", "lag"}], ...}`.
pub fn offsets(api: &Api, out: &mut Vec<u8>, framing: Framing) -> u16 {
    let mut feeds = serde_json::Map::new();
    for feed in &api.shared.feeds {
        let rows: Vec<serde_json::Value> = feed
            .snapshot()
            .into_iter()
            .map(|((topic, partition), p)| {
                let lag = (p.high - p.applied).max(0);
                serde_json::json!({
                    "topic": topic, "partition": partition, "applied": p.applied, "high": p.high, "lag": lag,
                })
            })
            .collect();
        feeds.insert(feed.feed.clone(), serde_json::Value::Array(rows));
    }
    response::json(out, 200, &[], serde_json::Value::Object(feeds).to_string().as_bytes(), framing);
    200
}
