//! Ingest metrics: what the consumer applied, skipped and how far it is.
//!
//! The consumer thread counts into a plain local `Counters` and merges it
//! here once per batch, so the shared lock is taken a few times a second,
//! never per record and never by a shard.
//!
//! Positions and lag come from the in-memory stores' feed positions
//! (`positions::FeedPositions`, applied offsets), reported for every assigned
//! partition from the moment it is assigned. Freshness: the staleness of
//! each record when it became visible (apply time minus its Kafka
//! timestamp) and the age of the newest visible record per partition.

use crate::metrics::header;
use crate::metrics::MetricsSource;
use crate::positions::FeedPositions;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

/// Upper bounds of the staleness buckets, in seconds: from a few
/// milliseconds (following) to a day (replaying an old topic).
pub const STALENESS_BOUNDS_S: [f64; 17] =
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0];

/// A histogram of staleness (apply time minus record timestamp).
#[derive(Default, Debug, Clone)]
pub struct Staleness {
    /// Counts per bucket of `STALENESS_BOUNDS_S`, plus one for `+Inf`.
    pub buckets: [u64; STALENESS_BOUNDS_S.len() + 1],
    pub sum_ms: i64,
}

impl Staleness {
    pub fn observe(&mut self, ms: i64) {
        let ms = ms.max(0);
        let s = ms as f64 / 1000.0;
        let bucket = STALENESS_BOUNDS_S.iter().position(|b| s <= *b).unwrap_or(STALENESS_BOUNDS_S.len());
        self.buckets[bucket] += 1;
        self.sum_ms += ms;
    }

    fn add(&mut self, other: &Staleness) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.sum_ms += other.sum_ms;
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// Counts kept by the consumer between merges.
#[derive(Default, Debug, Clone)]
pub struct Counters {
    pub applied: BTreeMap<String, u64>,
    pub tombstones: u64,
    pub skipped: BTreeMap<&'static str, u64>,
    pub schema_fetches: u64,
    pub schema_failures: u64,
    /// Staleness of the records made visible, per topic.
    pub staleness: BTreeMap<String, Staleness>,
    /// Newest Kafka timestamp (ms) made visible, per topic and partition.
    pub newest_ms: BTreeMap<String, BTreeMap<i32, i64>>,
}

impl Counters {
    pub fn applied(&mut self, record_type: &str) {
        match self.applied.get_mut(record_type) {
            Some(n) => *n += 1,
            None => {
                self.applied.insert(record_type.to_string(), 1);
            }
        }
    }

    pub fn skipped(&mut self, reason: &'static str) {
        *self.skipped.entry(reason).or_insert(0) += 1;
    }

    /// A record with Kafka timestamp `ts_ms` became visible at `now_ms`.
    pub fn visible(&mut self, topic: &str, partition: i32, ts_ms: i64, now_ms: i64) {
        match self.staleness.get_mut(topic) {
            Some(h) => h.observe(now_ms - ts_ms),
            None => self.staleness.entry(topic.to_string()).or_default().observe(now_ms - ts_ms),
        }
        let partitions = match self.newest_ms.get_mut(topic) {
            Some(p) => p,
            None => self.newest_ms.entry(topic.to_string()).or_default(),
        };
        let newest = partitions.entry(partition).or_insert(ts_ms);
        *newest = (*newest).max(ts_ms);
    }

    fn merge_into(&mut self, total: &mut Counters) {
        for (k, v) in std::mem::take(&mut self.applied) {
            *total.applied.entry(k).or_insert(0) += v;
        }
        for (k, v) in std::mem::take(&mut self.skipped) {
            *total.skipped.entry(k).or_insert(0) += v;
        }
        total.tombstones += std::mem::take(&mut self.tombstones);
        total.schema_fetches += std::mem::take(&mut self.schema_fetches);
        total.schema_failures += std::mem::take(&mut self.schema_failures);
        for (k, h) in std::mem::take(&mut self.staleness) {
            total.staleness.entry(k).or_default().add(&h);
        }
        for (topic, partitions) in std::mem::take(&mut self.newest_ms) {
            let into = total.newest_ms.entry(topic).or_default();
            for (p, ts) in partitions {
                let n = into.entry(p).or_insert(ts);
                *n = (*n).max(ts);
            }
        }
    }
}

pub struct IngestStats {
    inner: Mutex<Counters>,
    /// The in-memory stores' feed: applied offsets and watermarks.
    positions: Arc<FeedPositions>,
}

impl Default for IngestStats {
    fn default() -> Self {
        IngestStats { inner: Mutex::default(), positions: Arc::new(FeedPositions::new("memory")) }
    }
}

impl IngestStats {
    /// Adds the consumer's local counts and resets them.
    pub fn merge(&self, local: &mut Counters) {
        let mut inner = self.lock();
        local.merge_into(&mut inner);
    }

    pub fn totals(&self) -> Counters {
        self.lock().clone()
    }

    /// The in-memory stores' feed positions (for `GET /offsets`).
    pub fn positions(&self) -> Arc<FeedPositions> {
        self.positions.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl MetricsSource for IngestStats {
    fn render(&self, out: &mut String) {
        let c = self.lock();
        let parts = self.positions.snapshot();
        header(
            out,
            "push_cache_kafka_records_applied_total",
            "counter",
            "Records applied to the stores, by record type.",
        );
        for (t, n) in &c.applied {
            let _ = writeln!(out, "push_cache_kafka_records_applied_total{{type=\"{t}\"}} {n}");
        }
        header(out, "push_cache_kafka_tombstones_applied_total", "counter", "Tombstones applied (keys removed).");
        let _ = writeln!(out, "push_cache_kafka_tombstones_applied_total {}", c.tombstones);
        header(out, "push_cache_kafka_records_skipped_total", "counter", "Records that could not be used, by reason.");
        for (r, n) in &c.skipped {
            let _ = writeln!(out, "push_cache_kafka_records_skipped_total{{reason=\"{r}\"}} {n}");
        }
        header(out, "push_cache_schema_fetches_total", "counter", "Writer schemas fetched from the registry.");
        let _ = writeln!(out, "push_cache_schema_fetches_total {}", c.schema_fetches);
        header(
            out,
            "push_cache_schema_fetch_failures_total",
            "counter",
            "Failed schema fetches (unknown IDs and unreachable registry).",
        );
        let _ = writeln!(out, "push_cache_schema_fetch_failures_total {}", c.schema_failures);
        header(out, "push_cache_kafka_position", "gauge", "Next offset applied (visible), per assigned partition.");
        for ((t, p), pr) in &parts {
            let _ = writeln!(out, "push_cache_kafka_position{{topic=\"{t}\",partition=\"{p}\"}} {}", pr.applied);
        }
        let help = "High watermark minus the applied position, per assigned partition.";
        header(out, "push_cache_kafka_lag", "gauge", help);
        for ((t, p), pr) in &parts {
            let lag = (pr.high - pr.applied).max(0);
            let _ = writeln!(out, "push_cache_kafka_lag{{topic=\"{t}\",partition=\"{p}\"}} {lag}");
        }
        render_freshness(out, &c);
    }

    /// The figures `render` writes, as JSON for the status page.
    fn status(&self) -> Option<(&'static str, serde_json::Value)> {
        let c = self.lock();
        let partitions: Vec<serde_json::Value> = self
            .positions
            .snapshot()
            .into_iter()
            .map(|((topic, partition), p)| {
                let lag = (p.high - p.applied).max(0);
                serde_json::json!({"topic": topic, "partition": partition, "position": p.applied, "high": p.high,
                    "lag": lag})
            })
            .collect();
        let value = serde_json::json!({
            "applied": c.applied,
            "tombstones": c.tombstones,
            "skipped": c.skipped,
            "schema_fetches": c.schema_fetches,
            "schema_failures": c.schema_failures,
            "partitions": partitions,
        });
        Some(("ingest", value))
    }
}

fn render_freshness(out: &mut String, c: &Counters) {
    let name = "push_cache_staleness_seconds";
    header(out, name, "histogram", "Apply time minus the record's Kafka timestamp, per topic, observed when visible.");
    for (topic, h) in &c.staleness {
        let mut cumulative = 0;
        for (i, bound) in STALENESS_BOUNDS_S.iter().enumerate() {
            cumulative += h.buckets[i];
            let _ = writeln!(out, "{name}_bucket{{topic=\"{topic}\",le=\"{bound}\"}} {cumulative}");
        }
        cumulative += h.buckets[STALENESS_BOUNDS_S.len()];
        let _ = writeln!(out, "{name}_bucket{{topic=\"{topic}\",le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum{{topic=\"{topic}\"}} {}", h.sum_ms as f64 / 1000.0);
        let _ = writeln!(out, "{name}_count{{topic=\"{topic}\"}} {cumulative}");
    }
    let name = "push_cache_newest_record_age_seconds";
    header(out, name, "gauge", "Now minus the Kafka timestamp of the newest visible record, per partition.");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    for (t, partitions) in &c.newest_ms {
        for (p, ts) in partitions {
            let _ = writeln!(out, "{name}{{topic=\"{t}\",partition=\"{p}\"}} {}", (now_ms - ts).max(0) as f64 / 1000.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_renders() {
        let stats = IngestStats::default();
        let mut local = Counters::default();
        local.applied("customer");
        local.applied("customer");
        local.skipped("bad_magic");
        local.tombstones = 3;
        stats.merge(&mut local);
        assert!(local.applied.is_empty());
        local.applied("customer");
        stats.merge(&mut local);
        stats.positions().assigned("t", 0, 9);
        stats.positions().assigned("t", 1, 4);
        stats.positions().applied("t", 0, 5);
        local.visible("t", 0, 1_000, 1_030);
        local.visible("t", 0, 2_000, 4_000);
        stats.merge(&mut local);
        let mut out = String::new();
        stats.render(&mut out);
        assert!(out.contains("push_cache_kafka_records_applied_total{type=\"customer\"} 3"), "{out}");
        assert!(out.contains("push_cache_kafka_records_skipped_total{reason=\"bad_magic\"} 1"));
        assert!(out.contains("push_cache_kafka_tombstones_applied_total 3"));
        assert!(out.contains("push_cache_kafka_lag{topic=\"t\",partition=\"0\"} 4"));
        let unapplied = "push_cache_kafka_lag{topic=\"t\",partition=\"1\"} 4";
        assert!(out.contains(unapplied), "assigned, nothing applied: {out}");
        assert!(out.contains("push_cache_staleness_seconds_bucket{topic=\"t\",le=\"0.05\"} 1"), "{out}");
        assert!(out.contains("push_cache_staleness_seconds_bucket{topic=\"t\",le=\"2.5\"} 2"), "{out}");
        assert!(out.contains("push_cache_staleness_seconds_count{topic=\"t\"} 2"));
        assert!(out.contains("push_cache_newest_record_age_seconds{topic=\"t\",partition=\"0\"} "));
        let (key, json) = stats.status().unwrap();
        assert_eq!(key, "ingest");
        assert_eq!(json["applied"]["customer"], 3);
        assert_eq!(json["skipped"]["bad_magic"], 1);
        let partition = serde_json::json!({"topic": "t", "partition": 0, "position": 5, "high": 9, "lag": 4});
        assert_eq!(json["partitions"][0], partition);
    }
}
