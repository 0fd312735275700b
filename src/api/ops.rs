//! Operational endpoints: `/health/live`, `/health/ready`, `/metrics`.

use super::Api;
use crate::http::response::{self, Framing};
use crate::metrics::{self, Labels};
use crate::runtime::mesh::{Reply, Request};
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
    let Ok(replies) = api.mesh.call_all(|| Request::Snapshot).await else {
        response::error(out, 503, "shards unavailable during shutdown", framing);
        return 503;
    };
    let mut snapshots: Vec<_> = replies.into_iter().filter_map(|r| if let Reply::Snapshot(s) = r { Some(*s) } else { None }).collect();
    snapshots.sort_by_key(|s| s.shard);
    let shared = &api.shared;
    let mut text = String::with_capacity(16 * 1024);
    metrics::render_shards(&mut text, &Labels { routes: &shared.route_labels, stores: &shared.store_names }, &snapshots);
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
