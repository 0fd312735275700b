//! The status page for a person (`GET /`) and its JSON twin (`GET /status`).
//!
//! The page is one self-contained HTML document (`status.html`: inline CSS
//! and JS, no external asset), built into the binary. Its script polls
//! `/status` every two seconds and keeps the last minutes of answers in the
//! browser, so rates, recent latency quantiles and the lag chart are computed
//! client-side and the server keeps no history.
//!
//! `/status` is built from the very sources `/metrics` renders: every shard's
//! snapshot gathered over the mesh, the readiness set, and each registered
//! metrics source's structured view (the Kafka consumer's counts and
//! partitions). The two endpoints cannot disagree about what they count.

use super::{ops, Api};
use crate::http::response::{self, Framing};
use crate::metrics::{self, ShardSnapshot, LATENCY_BOUNDS_US};
use serde_json::{json, Map, Value};
use std::time::SystemTime;

/// The page, inline CSS and JS included.
pub const PAGE: &str = include_str!("status.html");

/// What the page may load: nothing but itself and `/status`.
const PAGE_POLICY: &[u8] = b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /`: the status page.
pub fn page(out: &mut Vec<u8>, framing: Framing) -> u16 {
    response::status_line(out, 200);
    let headers: &[(&str, &[u8])] = &[
        ("Content-Type", b"text/html; charset=utf-8"),
        ("Cache-Control", b"no-cache"),
        ("Content-Security-Policy", PAGE_POLICY),
        ("X-Content-Type-Options", b"nosniff"),
    ];
    response::headers(out, headers);
    response::finish(out, framing, Some(PAGE.as_bytes()));
    200
}

/// `GET /status`: shards, stores, routes, readiness, requests, latency and
/// every metrics source's figures, as one JSON object.
pub async fn status(api: &Api, out: &mut Vec<u8>, framing: Framing) -> u16 {
    let Some(snapshots) = ops::shard_snapshots(api).await else {
        response::error(out, 503, "shards unavailable during shutdown", framing);
        return 503;
    };
    let body = build(api, &snapshots).to_string();
    response::json(out, 200, &[("Cache-Control", b"no-store")], body.as_bytes(), framing);
    200
}

fn build(api: &Api, snapshots: &[ShardSnapshot]) -> Value {
    let shared = &api.shared;
    let waiting = shared.readiness.waiting();
    let mut doc = Map::new();
    doc.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    doc.insert("time_ms".into(), json!(unix_millis()));
    doc.insert("ready".into(), json!(waiting.is_empty()));
    doc.insert("waiting_for".into(), json!(waiting));
    doc.insert("shards".into(), shards(&shared.store_names, snapshots));
    doc.insert("stores".into(), stores(api, snapshots));
    doc.insert("routes".into(), routes(api));
    doc.insert("requests".into(), requests(&shared.route_labels, snapshots));
    doc.insert("latency".into(), latency(snapshots));
    for source in &shared.metrics_sources {
        if let Some((key, value)) = source.status() {
            doc.insert(key.into(), value);
        }
    }
    Value::Object(doc)
}

fn unix_millis() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Per shard: its connections, forwarded requests, and keys and bytes of
/// each in-memory store.
fn shards(store_names: &[String], snapshots: &[ShardSnapshot]) -> Value {
    let list = snapshots.iter().map(|s| {
        let stores: Vec<Value> = s
            .stores
            .iter()
            .zip(store_names)
            .filter_map(|(size, name)| size.as_ref().map(|z| (name, z)))
            .map(|(name, z)| json!({"store": name, "entries": z.entries, "bytes": z.bytes}))
            .collect();
        json!({
            "shard": s.shard,
            "connections_open": s.metrics.connections_open,
            "connections_accepted": s.metrics.connections_accepted,
            "forwarded": s.metrics.forwarded,
            "stores": stores,
        })
    });
    Value::Array(list.collect())
}

/// Per store: its kind, its keys and bytes over every shard (in-memory
/// stores; `null` for stores kept elsewhere) and the routes that read it.
fn stores(api: &Api, snapshots: &[ShardSnapshot]) -> Value {
    let shared = &api.shared;
    let list = shared.store_names.iter().enumerate().map(|(i, name)| {
        let sizes: Vec<_> = snapshots.iter().filter_map(|s| s.stores.get(i).and_then(Option::as_ref)).collect();
        let in_memory = !sizes.is_empty();
        let (entries, bytes) = if in_memory {
            (json!(sizes.iter().map(|z| z.entries).sum::<u64>()), json!(sizes.iter().map(|z| z.bytes).sum::<u64>()))
        } else {
            (Value::Null, Value::Null)
        };
        let kind = if in_memory {
            "in_memory"
        } else if shared.redis_for(i).is_some() {
            "redis"
        } else {
            "external"
        };
        let routes: Vec<&str> =
            shared.router.routes.iter().filter(|r| r.store == i).map(|r| r.full_path.as_str()).collect();
        json!({"name": name, "kind": kind, "entries": entries, "bytes": bytes, "routes": routes})
    });
    Value::Array(list.collect())
}

fn routes(api: &Api) -> Value {
    let shared = &api.shared;
    let list = shared.router.routes.iter().map(|r| {
        let store = shared.store_names.get(r.store).map(String::as_str).unwrap_or("?");
        json!({"path": r.full_path, "store": store, "key_field": r.key_field})
    });
    Value::Array(list.collect())
}

/// Request counts as `/metrics` has them: by route label (the route's path,
/// `ops` or `unmatched`), method and status, and their total.
fn requests(route_labels: &[String], snapshots: &[ShardSnapshot]) -> Value {
    let rows = metrics::request_totals(snapshots);
    let total: u64 = rows.iter().map(|(_, n)| n).sum();
    let by_route: Vec<Value> = rows
        .into_iter()
        .map(|((label, method, status), count)| {
            let route = route_labels.get(label as usize).map(String::as_str).unwrap_or("unknown");
            json!({"route": route, "method": method.as_str(), "status": status, "count": count})
        })
        .collect();
    json!({"total": total, "by_route": by_route})
}

/// The latency histogram (cumulative counts per finite upper bound, in
/// seconds, plus the total) and its quantiles since start.
fn latency(snapshots: &[ShardSnapshot]) -> Value {
    let (counts, sum_us) = metrics::latency_totals(snapshots);
    let mut cumulative = Vec::with_capacity(LATENCY_BOUNDS_US.len());
    let mut running = 0;
    for c in &counts[..LATENCY_BOUNDS_US.len()] {
        running += c;
        cumulative.push(running);
    }
    let count: u64 = counts.iter().sum();
    let bounds: Vec<f64> = LATENCY_BOUNDS_US.iter().map(|b| *b as f64 / 1e6).collect();
    let q = |q| quantile(q, &LATENCY_BOUNDS_US, &cumulative, count).map(|us| us / 1e6);
    json!({
        "bounds_seconds": bounds,
        "cumulative": cumulative,
        "count": count,
        "sum_seconds": sum_us as f64 / 1e6,
        "p50_seconds": q(0.5),
        "p90_seconds": q(0.9),
        "p99_seconds": q(0.99),
    })
}

/// The `q`-quantile of a histogram as Prometheus' `histogram_quantile`
/// estimates it: linear interpolation inside the bucket holding the rank;
/// the highest finite bound when the rank falls in `+Inf`. `cumulative[i]`
/// counts observations at most `bounds[i]`; `total` includes `+Inf`.
pub fn quantile(q: f64, bounds: &[u64], cumulative: &[u64], total: u64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let Some(i) = cumulative.iter().position(|c| *c as f64 >= rank) else {
        return bounds.last().map(|b| *b as f64);
    };
    let (lower, below) = if i == 0 { (0.0, 0) } else { (bounds[i - 1] as f64, cumulative[i - 1]) };
    let inside = cumulative[i] - below;
    if inside == 0 {
        return Some(bounds[i] as f64);
    }
    Some(lower + (bounds[i] as f64 - lower) * (rank - below as f64) / inside as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let bounds = [10, 20, 40];
        // 10 at most 10, 30 at most 20, 40 at most 40, none above.
        let cumulative = [10, 30, 40];
        assert_eq!(quantile(0.5, &bounds, &cumulative, 40), Some(15.0));
        assert_eq!(quantile(0.25, &bounds, &cumulative, 40), Some(10.0));
        assert_eq!(quantile(0.1, &bounds, &cumulative, 40), Some(4.0));
        assert_eq!(quantile(0.875, &bounds, &cumulative, 40), Some(30.0));
    }

    #[test]
    fn quantiles_of_nothing_and_of_the_overflow() {
        assert_eq!(quantile(0.5, &[10, 20], &[0, 0], 0), None);
        // Half the observations are above every bound.
        assert_eq!(quantile(0.9, &[10, 20], &[5, 5], 10), Some(20.0));
    }

    #[test]
    fn the_page_is_self_contained() {
        let lower = PAGE.to_ascii_lowercase();
        for external in ["src=", "href=\"http", "@import", "url(http", "//cdn", "<link rel=\"stylesheet"] {
            assert!(!lower.contains(external), "the page must not load `{external}`");
        }
        assert!(lower.contains("<meta name=\"viewport\""), "readable on a phone");
        assert!(PAGE.contains("fetch('status'"), "the page polls its JSON twin");
    }
}
