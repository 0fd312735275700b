//! Ingest metrics: what the consumer applied, skipped and how far it is.
//!
//! The consumer thread counts into a plain local `Counters` and merges it
//! here once per batch, so the shared lock is taken a few times a second,
//! never per record and never by a shard.

use crate::api::MetricsSource;
use crate::metrics::header;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Counts kept by the consumer between merges.
#[derive(Default, Debug, Clone)]
pub struct Counters {
    pub applied: BTreeMap<String, u64>,
    pub tombstones: u64,
    pub skipped: BTreeMap<&'static str, u64>,
    pub schema_fetches: u64,
    pub schema_failures: u64,
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
    }
}

/// Where one partition stands.
#[derive(Default, Debug, Clone, Copy)]
pub struct PartitionProgress {
    /// Next offset to apply.
    pub position: i64,
    /// Latest high watermark known.
    pub high: i64,
}

/// Progress per (topic, partition).
type Progress = BTreeMap<(String, i32), PartitionProgress>;

#[derive(Default)]
pub struct IngestStats {
    inner: Mutex<(Counters, Progress)>,
}

impl IngestStats {
    /// Adds the consumer's local counts and resets them.
    pub fn merge(&self, local: &mut Counters) {
        let mut inner = self.lock();
        local.merge_into(&mut inner.0);
    }

    pub fn set_progress(&self, topic: &str, partition: i32, progress: PartitionProgress) {
        self.lock().1.insert((topic.to_string(), partition), progress);
    }

    pub fn totals(&self) -> Counters {
        self.lock().0.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Counters, Progress)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl MetricsSource for IngestStats {
    fn render(&self, out: &mut String) {
        let inner = self.lock();
        let (c, parts) = (&inner.0, &inner.1);
        header(out, "push_cache_kafka_records_applied_total", "counter", "Records applied to the stores, by record type.");
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
        header(out, "push_cache_schema_fetch_failures_total", "counter", "Failed schema fetches (unknown IDs and unreachable registry).");
        let _ = writeln!(out, "push_cache_schema_fetch_failures_total {}", c.schema_failures);
        header(out, "push_cache_kafka_position", "gauge", "Next offset to apply, per partition.");
        for ((t, p), pr) in parts {
            let _ = writeln!(out, "push_cache_kafka_position{{topic=\"{t}\",partition=\"{p}\"}} {}", pr.position);
        }
        header(out, "push_cache_kafka_lag", "gauge", "High watermark minus position, per partition.");
        for ((t, p), pr) in parts {
            let _ = writeln!(out, "push_cache_kafka_lag{{topic=\"{t}\",partition=\"{p}\"}} {}", (pr.high - pr.position).max(0));
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
        stats.set_progress("t", 0, PartitionProgress { position: 5, high: 9 });
        let mut out = String::new();
        stats.render(&mut out);
        assert!(out.contains("push_cache_kafka_records_applied_total{type=\"customer\"} 3"), "{out}");
        assert!(out.contains("push_cache_kafka_records_skipped_total{reason=\"bad_magic\"} 1"));
        assert!(out.contains("push_cache_kafka_tombstones_applied_total 3"));
        assert!(out.contains("push_cache_kafka_lag{topic=\"t\",partition=\"0\"} 4"));
    }
}
