//! Finding a consumer's partitions, assigning them, and watching them: the
//! same for the in-memory stores' consumer (`consumer`) and each Redis
//! store's feed (`redis_feed`), which differ only in where a partition
//! starts and what they note about it. Also [`Every`], the timer their poll
//! loops run their periodic chores on.

use super::catch_up::CatchUp;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How long a metadata or watermark request may take.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a periodic watermark refresh waits for each partition.
const REFRESH_TIMEOUT: Duration = Duration::from_millis(500);

/// A (topic, partition) set.
pub type Partitions = BTreeSet<(String, i32)>;

/// A partition about to be assigned, with its watermarks as just fetched.
pub struct Found<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

/// Every (topic, partition) the broker knows for `topics`; an error names a
/// topic that is missing or has no partitions.
pub fn partitions_of<C: ConsumerContext>(consumer: &BaseConsumer<C>, topics: &[String]) -> Result<Partitions, String> {
    let mut all = BTreeSet::new();
    for topic in topics {
        let md = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT).map_err(|e| e.to_string())?;
        for t in md.topics() {
            if let Some(err) = t.error() {
                return Err(format!("topic `{}`: {:?}", t.name(), err));
            }
            if t.partitions().is_empty() {
                return Err(format!("topic `{}` has no partitions (does it exist?)", t.name()));
            }
            all.extend(t.partitions().iter().map(|p| (t.name().to_string(), p.id())));
        }
    }
    Ok(all)
}

/// Assigns every partition of `topics`, each from where `start` says (the
/// offset the caller counts from, and the one to ask librdkafka for);
/// `start` also notes the partition in the caller's books. Returns what to
/// catch up to and the partitions assigned.
pub fn assign_all<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: &[String],
    mut start: impl FnMut(&Found) -> (i64, Offset),
) -> Result<(CatchUp, Partitions), String> {
    let partitions = partitions_of(consumer, topics)?;
    let mut catch_up = CatchUp::default();
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *partition, METADATA_TIMEOUT).map_err(|e| e.to_string())?;
        let (from, offset) = start(&Found { topic, partition: *partition, low, high });
        catch_up.add(topic, *partition, from, high);
        tpl.add_partition_offset(topic, *partition, offset).map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    Ok((catch_up, partitions))
}

/// Assigns the partitions of `topics` that are not in `assigned` (added to
/// a topic since), each from the offset `start` gives it. Returns every
/// partition now assigned when some were added; `None` when there were none,
/// or the broker could not be asked (the caller tries again later).
pub fn assign_new<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: &[String],
    assigned: &Partitions,
    mut start: impl FnMut(&Found) -> Offset,
) -> Option<Partitions> {
    let now = partitions_of(consumer, topics).ok()?;
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in now.difference(assigned) {
        let (low, high) = consumer.fetch_watermarks(topic, *partition, METADATA_TIMEOUT).unwrap_or((0, 0));
        let offset = start(&Found { topic, partition: *partition, low, high });
        let _ = tpl.add_partition_offset(topic, *partition, offset);
    }
    if tpl.count() == 0 {
        return None;
    }
    match consumer.incremental_assign(&tpl) {
        Ok(()) => {
            tracing::info!(added = tpl.count(), "assigned new partitions");
            Some(now)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot assign new partitions; will retry");
            None
        }
    }
}

/// Calls `seen` with the high watermark of each partition of `assigned`
/// that the broker answers for in time.
pub fn refresh_highs<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    assigned: &Partitions,
    mut seen: impl FnMut(&str, i32, i64),
) {
    for (topic, partition) in assigned {
        if let Ok((_, high)) = consumer.fetch_watermarks(topic, *partition, REFRESH_TIMEOUT) {
            seen(topic, *partition, high);
        }
    }
}

/// A chore's timer in a poll loop: due once per `period`.
pub struct Every {
    period: Duration,
    last: Instant,
}

impl Every {
    pub fn new(period: Duration) -> Every {
        Every { period, last: Instant::now() }
    }

    /// True (and restarted) when a period has passed since it was last due.
    pub fn due(&mut self) -> bool {
        let due = self.last.elapsed() >= self.period;
        if due {
            self.last = Instant::now();
        }
        due
    }
}
