//! Redis commands, errors and latency per store, records written by each
//! store's feed, and each feed's lag, for `/metrics`. Written by the
//! `redis-io` thread and the feeds with relaxed atomics.

use crate::metrics::MetricsSource;
use crate::metrics::{header, LATENCY_BOUNDS_US};
use crate::positions::FeedPositions;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct StoreStats {
    commands: AtomicU64,
    errors: AtomicU64,
    written: AtomicU64,
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

pub struct RedisStats {
    names: Vec<String>,
    stores: Vec<StoreStats>,
}

impl RedisStats {
    /// One slot per configured store (indexed like `cache.stores`).
    pub fn new(names: Vec<String>) -> RedisStats {
        let stores = names.iter().map(|_| StoreStats::default()).collect();
        RedisStats { names, stores }
    }

    /// `n` changes (sets and deletes) of a feed batch reached Redis.
    pub fn written(&self, store: usize, n: usize) {
        if let Some(s) = self.stores.get(store) {
            s.written.fetch_add(n as u64, Relaxed);
        }
    }

    pub fn record(&self, store: usize, took: Duration, failed: bool) {
        let Some(s) = self.stores.get(store) else { return };
        s.commands.fetch_add(1, Relaxed);
        if failed {
            s.errors.fetch_add(1, Relaxed);
        }
        let us = took.as_micros() as u64;
        let bucket = LATENCY_BOUNDS_US.iter().position(|b| us <= *b).unwrap_or(LATENCY_BOUNDS_US.len());
        s.buckets[bucket].fetch_add(1, Relaxed);
        s.sum_us.fetch_add(us, Relaxed);
    }
}

impl MetricsSource for RedisStats {
    fn render(&self, out: &mut String) {
        let used: Vec<(&String, &StoreStats)> =
            self.names.iter().zip(&self.stores).filter(|(_, s)| s.commands.load(Relaxed) > 0).collect();
        header(
            out,
            "push_cache_redis_commands_total",
            "counter",
            "Redis commands (a pipeline counts once), per store.",
        );
        for (name, s) in &used {
            let _ = writeln!(out, "push_cache_redis_commands_total{{store=\"{name}\"}} {}", s.commands.load(Relaxed));
        }
        header(out, "push_cache_redis_errors_total", "counter", "Redis commands that failed, per store.");
        for (name, s) in &used {
            let _ = writeln!(out, "push_cache_redis_errors_total{{store=\"{name}\"}} {}", s.errors.load(Relaxed));
        }
        header(
            out,
            "push_cache_redis_records_written_total",
            "counter",
            "Record changes a Redis store's feed wrote, per store.",
        );
        for (name, s) in &used {
            let _ =
                writeln!(out, "push_cache_redis_records_written_total{{store=\"{name}\"}} {}", s.written.load(Relaxed));
        }
        let metric = "push_cache_redis_command_duration_seconds";
        header(out, metric, "histogram", "Redis command latency, per store.");
        for (name, s) in &used {
            let mut cumulative = 0;
            for (i, bound) in LATENCY_BOUNDS_US.iter().enumerate() {
                cumulative += s.buckets[i].load(Relaxed);
                let _ =
                    writeln!(out, "{metric}_bucket{{store=\"{name}\",le=\"{}\"}} {cumulative}", *bound as f64 / 1e6);
            }
            cumulative += s.buckets[LATENCY_BOUNDS_US.len()].load(Relaxed);
            let _ = writeln!(out, "{metric}_bucket{{store=\"{name}\",le=\"+Inf\"}} {cumulative}");
            let _ = writeln!(out, "{metric}_sum{{store=\"{name}\"}} {}", s.sum_us.load(Relaxed) as f64 / 1e6);
            let _ = writeln!(out, "{metric}_count{{store=\"{name}\"}} {cumulative}");
        }
    }
}

/// Each Redis store's feed lag: high watermark minus applied offset, per partition.
pub struct RedisLag {
    /// (store name, its feed's positions).
    pub feeds: Vec<(String, Arc<FeedPositions>)>,
}

impl MetricsSource for RedisLag {
    fn render(&self, out: &mut String) {
        if self.feeds.is_empty() {
            return;
        }
        let metric = "push_cache_redis_lag";
        header(out, metric, "gauge", "Records a Redis store's feed has not yet written, per store and partition.");
        for (store, feed) in &self.feeds {
            for ((topic, partition), p) in feed.snapshot() {
                let lag = (p.high - p.applied).max(0);
                let _ =
                    writeln!(out, "{metric}{{store=\"{store}\",topic=\"{topic}\",partition=\"{partition}\"}} {lag}");
            }
        }
    }
}
