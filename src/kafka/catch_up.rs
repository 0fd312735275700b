//! Initial catch-up: the high watermark of every partition noted at start,
//! and whether the consumer's position has reached it. Judged by position,
//! not by the last record seen, so empty partitions, offsets removed by
//! compaction and transaction markers at a tail cannot hold readiness back.
//! The positions fed here are applied positions (visible to a GET), not the
//! consumer's read position.

use std::collections::BTreeMap;

#[derive(Default, Debug)]
pub struct CatchUp {
    /// (topic, partition) -> high watermark at start, for partitions not yet reached.
    remaining: BTreeMap<(String, i32), i64>,
    /// Partitions noted at start.
    total: usize,
}

impl CatchUp {
    /// Notes a partition with its watermarks at start. One with nothing in
    /// it (high <= low) is caught up already.
    pub fn add(&mut self, topic: &str, partition: i32, low: i64, high: i64) {
        self.total += 1;
        if high > low {
            self.remaining.insert((topic.to_string(), partition), high);
        }
    }

    /// The consumer's position (next offset) on a partition.
    pub fn position(&mut self, topic: &str, partition: i32, position: i64) {
        let key = (topic.to_string(), partition);
        if self.remaining.get(&key).is_some_and(|high| position >= *high) {
            self.remaining.remove(&key);
        }
    }

    /// The watermark a partition must reach, while it has not.
    pub fn target(&self, topic: &str, partition: i32) -> Option<i64> {
        self.remaining.get(&(topic.to_string(), partition)).copied()
    }

    pub fn is_done(&self) -> bool {
        self.remaining.is_empty()
    }

    /// A readiness message: how many partitions are still behind, and the first few.
    pub fn describe(&self, positions: &BTreeMap<(String, i32), i64>) -> String {
        let mut parts: Vec<String> = self
            .remaining
            .iter()
            .take(5)
            .map(|((t, p), high)| {
                format!("{t}/{p} at {} of {high}", positions.get(&(t.clone(), *p)).copied().unwrap_or(0))
            })
            .collect();
        if self.remaining.len() > 5 {
            parts.push(format!("and {} more", self.remaining.len() - 5));
        }
        format!("catching up: {} of {} partitions behind ({})", self.remaining.len(), self.total, parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_partitions_are_done_and_positions_finish_the_rest() {
        let mut c = CatchUp::default();
        c.add("t", 0, 0, 0);
        c.add("t", 1, 5, 5);
        c.add("t", 2, 0, 10);
        c.add("u", 0, 0, 3);
        assert!(!c.is_done());
        c.position("t", 2, 9);
        let text = c.describe(&BTreeMap::from([(("t".to_string(), 2), 9)]));
        assert!(text.contains("2 of 4 partitions behind") && text.contains("t/2 at 9 of 10"), "{text}");
        c.position("t", 2, 11);
        assert_eq!(c.target("u", 0), Some(3));
        c.position("u", 0, 3);
        assert_eq!(c.target("u", 0), None);
        assert!(c.is_done());
    }
}
