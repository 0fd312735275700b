//! Request counters and latency histograms, kept per shard without atomics,
//! and the Prometheus text exposition that gathers them.
//!
//! Each shard counts into its own `ShardMetrics`; `/metrics` asks every shard
//! for a snapshot over the mesh, so the hot path never touches shared memory.
//! Request counts sit in a table indexed by route label and method, with
//! the few statuses a route answers searched in place: no hashing per request.

use crate::http::request::Method;
use hashbrown::HashMap;
use std::fmt::Write;
use std::time::Duration;

/// A subsystem that adds its own series to `/metrics` (the Kafka consumer,
/// the Redis stores, snapshots). Defined here, beside the primitives, so
/// every layer can be a source without knowing the API that renders it.
pub trait MetricsSource: Send + Sync {
    fn render(&self, out: &mut String);

    /// The same figures as structured data for `/status`: a top-level key
    /// and its value. Sources without one are left out of `/status`.
    fn status(&self) -> Option<(&'static str, serde_json::Value)> {
        None
    }
}

/// Upper bounds of the latency buckets, in microseconds.
pub const LATENCY_BOUNDS_US: [u64; 14] =
    [25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 500_000, 1_000_000];

/// One shard's request counters.
#[derive(Clone, Debug, Default)]
pub struct ShardMetrics {
    /// (route label index, method, status) -> count.
    pub requests: RequestCounts,
    /// Counts per bucket of `LATENCY_BOUNDS_US`, plus one for `+Inf`.
    pub latency: [u64; LATENCY_BOUNDS_US.len() + 1],
    pub latency_sum_us: u64,
    /// Requests answered by forwarding to the owning shard.
    pub forwarded: u64,
    pub connections_accepted: u64,
    pub connections_open: u64,
}

impl ShardMetrics {
    pub fn record(&mut self, label: u16, method: Method, status: u16, elapsed: Duration) {
        self.requests.add(label, method, status);
        let us = elapsed.as_micros() as u64;
        let bucket = LATENCY_BOUNDS_US.iter().position(|b| us <= *b).unwrap_or(LATENCY_BOUNDS_US.len());
        self.latency[bucket] += 1;
        self.latency_sum_us += us;
    }
}

/// Every method, in the order of `RequestCounts`' columns.
const METHODS: [Method; 6] = [Method::Get, Method::Head, Method::Post, Method::Put, Method::Delete, Method::Other];

/// Request counts by route label (row), method (column) and status (a short
/// list per cell: a route answers a handful of statuses).
#[derive(Clone, Debug, Default)]
pub struct RequestCounts {
    rows: Vec<[Vec<(u16, u64)>; METHODS.len()]>,
}

impl RequestCounts {
    pub fn add(&mut self, label: u16, method: Method, status: u16) {
        let label = label as usize;
        if label >= self.rows.len() {
            self.rows.resize_with(label + 1, Default::default);
        }
        let cell = &mut self.rows[label][method as usize];
        match cell.iter_mut().find(|(s, _)| *s == status) {
            Some((_, count)) => *count += 1,
            None => cell.push((status, 1)),
        }
    }

    /// Every ((route label, method, status), count) counted so far.
    pub fn iter(&self) -> impl Iterator<Item = ((u16, Method, u16), u64)> + '_ {
        self.rows.iter().enumerate().flat_map(|(label, row)| {
            row.iter().zip(METHODS).flat_map(move |(cell, method)| {
                cell.iter().map(move |(status, count)| ((label as u16, method, *status), *count))
            })
        })
    }
}

/// Per-store size on one shard.
#[derive(Clone, Debug, Default)]
pub struct StoreSize {
    pub entries: u64,
    pub bytes: u64,
    /// `bytes` with every body uncompressed (equal to it without `compression`).
    pub raw_bytes: u64,
    /// zstd dictionaries in use and trained so far (`compression: zstd`).
    pub dictionaries: u64,
    pub trainings: u64,
}

/// What one shard reports to `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct ShardSnapshot {
    pub shard: usize,
    pub metrics: ShardMetrics,
    /// Indexed like `cache.stores`; memory stores only.
    pub stores: Vec<Option<StoreSize>>,
}

/// Names needed to label the series.
pub struct Labels<'a> {
    /// Route labels, then `ops`, then `unmatched`.
    pub routes: &'a [String],
    pub stores: &'a [String],
}

pub fn render_shards(out: &mut String, labels: &Labels, shards: &[ShardSnapshot]) {
    render_requests(out, labels, shards);
    render_latency(out, shards);
    header(
        out,
        "push_cache_requests_forwarded_total",
        "counter",
        "Requests answered by the key's owning shard over the mesh.",
    );
    for s in shards {
        let _ = writeln!(out, "push_cache_requests_forwarded_total{{shard=\"{}\"}} {}", s.shard, s.metrics.forwarded);
    }
    header(out, "push_cache_connections_open", "gauge", "Open client connections.");
    for s in shards {
        let _ = writeln!(out, "push_cache_connections_open{{shard=\"{}\"}} {}", s.shard, s.metrics.connections_open);
    }
    header(out, "push_cache_connections_accepted_total", "counter", "Client connections accepted.");
    for s in shards {
        let _ = writeln!(
            out,
            "push_cache_connections_accepted_total{{shard=\"{}\"}} {}",
            s.shard, s.metrics.connections_accepted
        );
    }
    render_stores(out, labels, shards);
}

pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn render_requests(out: &mut String, labels: &Labels, shards: &[ShardSnapshot]) {
    header(out, "push_cache_http_requests_total", "counter", "HTTP requests by route, method and status.");
    for ((label, method, status), count) in request_totals(shards) {
        let route = labels.routes.get(label as usize).map(String::as_str).unwrap_or("unknown");
        let _ = writeln!(
            out,
            "push_cache_http_requests_total{{route=\"{route}\",method=\"{}\",status=\"{status}\"}} {count}",
            method.as_str()
        );
    }
}

fn render_latency(out: &mut String, shards: &[ShardSnapshot]) {
    let name = "push_cache_http_request_duration_seconds";
    header(out, name, "histogram", "Time from a complete request to its response being ready.");
    let (buckets, sum_us) = latency_totals(shards);
    let mut cumulative = 0;
    for (i, bound) in LATENCY_BOUNDS_US.iter().enumerate() {
        cumulative += buckets[i];
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", *bound as f64 / 1e6);
    }
    cumulative += buckets[LATENCY_BOUNDS_US.len()];
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {}", sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {cumulative}");
}

/// Requests summed over every shard, by (route label, method, status), in
/// a stable order (route label, method, status).
pub fn request_totals(shards: &[ShardSnapshot]) -> Vec<((u16, Method, u16), u64)> {
    let mut total: HashMap<(u16, Method, u16), u64> = HashMap::new();
    for s in shards {
        for (k, v) in s.metrics.requests.iter() {
            *total.entry(k).or_insert(0) += v;
        }
    }
    let mut rows: Vec<_> = total.into_iter().collect();
    rows.sort_by_key(|((l, m, s), _)| (*l, m.as_str(), *s));
    rows
}

/// Latency bucket counts (not cumulative; the last is `+Inf`) summed over
/// every shard, and the sum of all latencies in microseconds.
pub fn latency_totals(shards: &[ShardSnapshot]) -> ([u64; LATENCY_BOUNDS_US.len() + 1], u64) {
    let mut buckets = [0u64; LATENCY_BOUNDS_US.len() + 1];
    let mut sum_us = 0u64;
    for s in shards {
        for (b, c) in buckets.iter_mut().zip(s.metrics.latency.iter()) {
            *b += c;
        }
        sum_us += s.metrics.latency_sum_us;
    }
    (buckets, sum_us)
}

fn render_stores(out: &mut String, labels: &Labels, shards: &[ShardSnapshot]) {
    header(out, "push_cache_store_entries", "gauge", "Keys held, per shard and in-memory store.");
    for_each_store(shards, labels, |shard, store, size| {
        let _ = writeln!(out, "push_cache_store_entries{{shard=\"{shard}\",store=\"{store}\"}} {}", size.entries);
    });
    header(
        out,
        "push_cache_store_bytes",
        "gauge",
        "Bytes of keys, ETags and bodies held, per shard and in-memory store.",
    );
    for_each_store(shards, labels, |shard, store, size| {
        let _ = writeln!(out, "push_cache_store_bytes{{shard=\"{shard}\",store=\"{store}\"}} {}", size.bytes);
    });
    header(out, "push_cache_store_raw_bytes", "gauge", "What push_cache_store_bytes would be with no body compressed.");
    for_each_store(shards, labels, |shard, store, size| {
        let _ = writeln!(out, "push_cache_store_raw_bytes{{shard=\"{shard}\",store=\"{store}\"}} {}", size.raw_bytes);
    });
    header(
        out,
        "push_cache_store_dictionaries",
        "gauge",
        "zstd dictionaries the store's entries use (compression: zstd).",
    );
    for_each_store(shards, labels, |shard, store, size| {
        let _ =
            writeln!(out, "push_cache_store_dictionaries{{shard=\"{shard}\",store=\"{store}\"}} {}", size.dictionaries);
    });
    header(out, "push_cache_store_dictionary_trainings_total", "counter", "zstd dictionaries trained for the store.");
    for_each_store(shards, labels, |shard, store, size| {
        let line = format!("push_cache_store_dictionary_trainings_total{{shard=\"{shard}\",store=\"{store}\"}}");
        let _ = writeln!(out, "{line} {}", size.trainings);
    });
}

fn for_each_store(shards: &[ShardSnapshot], labels: &Labels, mut f: impl FnMut(usize, &str, &StoreSize)) {
    for s in shards {
        for (i, size) in s.stores.iter().enumerate() {
            if let (Some(size), Some(name)) = (size, labels.stores.get(i)) {
                f(s.shard, name, size);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_requests_are_summed() {
        let mut a = ShardMetrics::default();
        a.record(0, Method::Get, 200, Duration::from_micros(10));
        a.record(0, Method::Get, 200, Duration::from_micros(700));
        let mut b = ShardMetrics::default();
        b.record(0, Method::Get, 200, Duration::from_secs(5));
        b.record(1, Method::Post, 201, Duration::from_micros(30));
        let snaps = vec![
            ShardSnapshot {
                shard: 0,
                metrics: a,
                stores: vec![Some(StoreSize { entries: 2, bytes: 10, ..Default::default() })],
            },
            ShardSnapshot {
                shard: 1,
                metrics: b,
                stores: vec![Some(StoreSize { entries: 1, bytes: 5, ..Default::default() })],
            },
        ];
        let routes = vec!["/customers".to_string(), "ops".to_string()];
        let stores = vec!["main".to_string()];
        let mut out = String::new();
        render_shards(&mut out, &Labels { routes: &routes, stores: &stores }, &snaps);
        assert!(
            out.contains("push_cache_http_requests_total{route=\"/customers\",method=\"GET\",status=\"200\"} 3"),
            "{out}"
        );
        assert!(out.contains("push_cache_http_requests_total{route=\"ops\",method=\"POST\",status=\"201\"} 1"));
        assert!(out.contains("push_cache_http_request_duration_seconds_bucket{le=\"0.000025\"} 1"));
        assert!(out.contains("push_cache_http_request_duration_seconds_bucket{le=\"0.001\"} 3"), "{out}");
        assert!(out.contains("push_cache_http_request_duration_seconds_bucket{le=\"+Inf\"} 4"));
        assert!(out.contains("push_cache_store_entries{shard=\"1\",store=\"main\"} 1"));
    }

    #[test]
    fn request_counts_keep_every_label_method_and_status_apart() {
        let mut c = RequestCounts::default();
        for (label, method, status) in [(3, Method::Get, 200), (3, Method::Get, 404), (0, Method::Other, 405)] {
            c.add(label, method, status);
        }
        c.add(3, Method::Get, 200);
        let mut rows: Vec<_> = c.iter().collect();
        rows.sort_by_key(|((l, m, s), _)| (*l, m.as_str(), *s));
        let want = vec![((0, Method::Other, 405), 1), ((3, Method::Get, 200), 2), ((3, Method::Get, 404), 1)];
        assert_eq!(rows, want);
    }
}
