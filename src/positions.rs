//! Where each feed stands on each partition it reads: the offset applied so
//! far (visible to a GET) and the latest high watermark seen.
//!
//! A *feed* is one consumer loop and the stores it writes: the in-memory
//! stores share one feed; each Redis store has its own, with its own
//! position. `GET /offsets` reports every feed, and readiness and
//! position-bound reads are judged by the applied offsets, never by what was
//! merely sent. The feed's owner writes here a few times a second; readers
//! (the ops endpoints) take a snapshot. No shard's hot path touches it.
//!
//! Also here, as they are shared by ingest, shards and API: the mark a
//! consumer attaches to each flush so that shards can acknowledge what they
//! applied (`FlushMark`), and the positions a reader may require before a GET
//! is answered (`MinPosition`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One partition's standing in one feed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionPosition {
    /// Next offset to apply: everything below it is applied (0: nothing yet).
    pub applied: i64,
    /// Latest high watermark known for the partition.
    pub high: i64,
}

/// The positions of one feed, by (topic, partition).
#[derive(Debug)]
pub struct FeedPositions {
    /// `memory` for the in-memory stores' feed, `redis:{store}` for a Redis store's.
    pub feed: String,
    partitions: Mutex<BTreeMap<(String, i32), PartitionPosition>>,
    /// Told (coalesced, never blocking) whenever an applied offset advances.
    watchers: Mutex<Vec<flume::Sender<()>>>,
}

impl FeedPositions {
    pub fn new(feed: impl Into<String>) -> FeedPositions {
        FeedPositions { feed: feed.into(), partitions: Mutex::new(BTreeMap::new()), watchers: Mutex::default() }
    }

    /// A receiver that gets a message after the applied offsets advanced:
    /// one pending message at most, so a slow watcher costs the feed nothing
    /// and sees the newest positions when it reads `snapshot`.
    pub fn watch(&self) -> flume::Receiver<()> {
        let (tx, rx) = flume::bounded(1);
        self.watchers.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
        rx
    }

    /// Notes an assigned partition, so it is reported before any record.
    pub fn assigned(&self, topic: &str, partition: i32, high: i64) {
        let mut all = self.lock();
        let p = all.entry((topic.to_string(), partition)).or_default();
        p.high = p.high.max(high);
    }

    /// Everything below `next` is applied on this partition.
    pub fn applied(&self, topic: &str, partition: i32, next: i64) {
        let mut all = self.lock();
        let p = all.entry((topic.to_string(), partition)).or_default();
        let advanced = next > p.applied;
        p.applied = p.applied.max(next);
        p.high = p.high.max(next);
        drop(all);
        if advanced {
            let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
            // A full channel already holds a wake-up; a closed one lost its watcher.
            watchers.retain(|w| !matches!(w.try_send(()), Err(flume::TrySendError::Disconnected(_))));
        }
    }

    /// A newer high watermark for the partition.
    pub fn high(&self, topic: &str, partition: i32, high: i64) {
        let mut all = self.lock();
        let p = all.entry((topic.to_string(), partition)).or_default();
        p.high = p.high.max(high);
    }

    /// A copy of every partition's position, in (topic, partition) order.
    pub fn snapshot(&self) -> Vec<((String, i32), PartitionPosition)> {
        self.lock().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, i32), PartitionPosition>> {
        // A panic elsewhere cannot leave the map half-written: every update is one field.
        self.partitions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The partitions' next offsets covered by one flush of the consumer: once
/// every shard has applied the flush's batches, everything below them is
/// visible. Each shard receives the mark with its last batch of the flush
/// (an empty batch if it got no record) and acknowledges it after applying.
#[derive(Debug)]
pub struct FlushMark {
    pub seq: u64,
    /// (topic, partition, next offset) for the partitions this flush advanced.
    pub positions: Vec<(Arc<str>, i32, i64)>,
    /// Shards that have not applied it yet.
    remaining: AtomicUsize,
    /// The highest `seq` every shard has applied, shared with the consumer.
    done: Arc<AtomicU64>,
}

impl FlushMark {
    pub fn new(seq: u64, positions: Vec<(Arc<str>, i32, i64)>, shards: usize, done: Arc<AtomicU64>) -> Arc<FlushMark> {
        Arc::new(FlushMark { seq, positions, remaining: AtomicUsize::new(shards), done })
    }

    /// One shard applied everything sent before this mark. Shards apply
    /// their batches in order, so when the last shard acknowledges `seq`,
    /// every earlier flush is applied too.
    pub fn applied_by_one_shard(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.fetch_max(self.seq, Ordering::AcqRel);
        }
    }
}

/// A position a reader requires: `offset` of `topic`/`partition` applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl MinPosition {
    /// `TOPIC/PARTITION/OFFSET`; the topic may itself contain `/`.
    pub fn parse(text: &str) -> Result<MinPosition, String> {
        let bad = || format!("`{text}` is not TOPIC/PARTITION/OFFSET (e.g. customers/0/42)");
        let (rest, offset) = text.trim().rsplit_once('/').ok_or_else(bad)?;
        let (topic, partition) = rest.rsplit_once('/').ok_or_else(bad)?;
        let partition: i32 = partition.parse().map_err(|_| bad())?;
        let offset: i64 = offset.parse().map_err(|_| bad())?;
        if topic.is_empty() || partition < 0 || offset < 0 {
            return Err(bad());
        }
        Ok(MinPosition { topic: topic.to_string(), partition, offset })
    }

    /// Every position named by `min_offset=` query values (already
    /// percent-decoded) and a `Kafka-Min-Position` header (comma-separated).
    pub fn parse_all<'a>(
        query_values: impl Iterator<Item = &'a str>,
        header: Option<&'a str>,
    ) -> Result<Vec<MinPosition>, String> {
        let from_header = header.into_iter().flat_map(|h| h.split(',')).filter(|p| !p.trim().is_empty());
        query_values.chain(from_header).map(MinPosition::parse).collect()
    }
}

/// Where a partition stood when a position-bound read gave up waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    pub wanted: MinPosition,
    /// Next offset applied on the partition; `None` if nothing was applied.
    pub applied: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_positions_parse_from_query_and_header() {
        let q = ["customers/0/42", "a/b/3/7"];
        let all = MinPosition::parse_all(q.iter().copied(), Some(" t/1/5 , u/2/0")).unwrap();
        assert_eq!(all[0], MinPosition { topic: "customers".into(), partition: 0, offset: 42 });
        assert_eq!(all[1], MinPosition { topic: "a/b".into(), partition: 3, offset: 7 });
        assert_eq!(all[2].topic, "t");
        assert_eq!(all[3], MinPosition { topic: "u".into(), partition: 2, offset: 0 });
        for bad in ["", "t/0", "t/x/1", "t/0/-1", "/0/1", "t/0/1x", "t/-1/0"] {
            assert!(MinPosition::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn watchers_hear_of_advances_only_coalesced_and_never_block_the_feed() {
        let f = FeedPositions::new("redis:r");
        let watcher = f.watch();
        f.applied("t", 0, 5);
        f.applied("t", 0, 7);
        assert_eq!(watcher.try_iter().count(), 1, "two advances, one pending wake-up");
        f.applied("t", 0, 7);
        f.high("t", 0, 9);
        assert!(watcher.try_recv().is_err(), "nothing advanced");
        drop(watcher);
        f.applied("t", 0, 8);
        assert!(f.watchers.lock().unwrap().is_empty(), "a watcher that went away is forgotten");
    }

    #[test]
    fn a_mark_is_done_when_every_shard_applied_it() {
        let done = Arc::new(AtomicU64::new(0));
        let mark = FlushMark::new(3, Vec::new(), 2, done.clone());
        mark.applied_by_one_shard();
        assert_eq!(done.load(Ordering::Acquire), 0);
        mark.applied_by_one_shard();
        assert_eq!(done.load(Ordering::Acquire), 3);
    }

    #[test]
    fn positions_only_move_forward_and_assigned_partitions_show_up() {
        let f = FeedPositions::new("memory");
        f.assigned("t", 1, 10);
        f.applied("t", 0, 5);
        f.applied("t", 0, 3);
        f.high("t", 0, 8);
        let snap = f.snapshot();
        assert_eq!(snap[0], (("t".to_string(), 0), PartitionPosition { applied: 5, high: 8 }));
        assert_eq!(snap[1], (("t".to_string(), 1), PartitionPosition { applied: 0, high: 10 }));
    }
}
