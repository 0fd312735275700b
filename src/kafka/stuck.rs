//! Partitions stuck on a batch the client cannot read.
//!
//! When librdkafka cannot decompress or parse a record batch (a codec it was
//! built without, corrupt compressed data, a broken batch) it reports a
//! consume error and fetches the same batch again, every half second,
//! forever: the partition never moves and nothing else says so. The error
//! names neither the topic nor the partition (rdkafka drops them), and not
//! where the batch ends, so this module finds both with a separate probe
//! consumer that reads one partition at a time:
//!
//! - a partition is a suspect when it is behind its high watermark and its
//!   position did not move between two such errors;
//! - a fetch from the suspect's position that fails the same way proves it
//!   is stuck there;
//! - the first offset past the bad batch is the smallest offset from which a
//!   fetch does not fail: found by doubling the step, then bisecting, a few
//!   fetches for any batch size. Nothing valid after the batch is skipped.

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long one probing fetch may take before the probe gives up.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Errors closer together than this are one episode (librdkafka retries every 500 ms).
const SETTLE: Duration = Duration::from_millis(900);

/// True for consume errors that mean "this batch cannot be read", as
/// opposed to a broker or network problem.
pub fn is_undecodable(e: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        e.rdkafka_error_code(),
        Some(
            BadCompression | BadMessage | NotImplemented | InvalidMessage | InvalidRecord | UnsupportedCompressionType
        )
    )
}

/// A stuck partition and the offset just past its unreadable batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub topic: String,
    pub partition: i32,
    /// The position the partition was stuck at (the bad batch's first offset).
    pub first: i64,
    /// The first offset a fetch can read from again.
    pub next: i64,
}

/// Next offset per (topic, partition).
pub type Positions = BTreeMap<(String, i32), i64>;

/// What probing a suspect found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// It reads fine from its position: it was only slow.
    NotStuck,
    Skip(Skip),
    /// Stuck, or maybe, but the probe got no clear answer (broker trouble).
    Unknown,
}

/// The probe's callbacks: the errors it provokes are expected.
struct ProbeContext;

impl ClientContext for ProbeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(error = %error, reason, "probe consumer");
    }
}

impl ConsumerContext for ProbeContext {}

type ProbeConsumer = BaseConsumer<ProbeContext>;

/// What a fetch from one offset of one partition met first.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    Readable,
    Undecodable,
    /// No answer in time (broker trouble): nothing can be concluded.
    Unknown,
}

/// Watches undecodable-batch errors and, once they repeat over stalled
/// partitions, finds where to skip to.
pub struct StuckFinder {
    config: ClientConfig,
    /// Positions when the current episode's first error was seen.
    seen: Option<(Instant, Positions)>,
}

impl StuckFinder {
    /// `config` is the consumer's librdkafka configuration.
    pub fn new(mut config: ClientConfig) -> StuckFinder {
        config
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("client.id", "push-cache-probe");
        StuckFinder { config, seen: None }
    }

    /// Notes one undecodable-batch error. `positions` are the next offsets
    /// taken per partition, `highs` their latest high watermarks. Returns the
    /// suspects (behind, and not moved since the episode's first error) once
    /// the error has repeated.
    pub fn error(&mut self, positions: &Positions, highs: &Positions) -> Vec<(String, i32, i64)> {
        let Some((since, before)) = &self.seen else {
            self.seen = Some((Instant::now(), positions.clone()));
            return Vec::new();
        };
        if since.elapsed() < SETTLE {
            return Vec::new();
        }
        let suspects = positions
            .iter()
            .filter(|(key, pos)| before.get(*key) == Some(*pos) && highs.get(*key).is_some_and(|h| **pos < *h))
            .map(|((t, p), pos)| (t.clone(), *p, *pos))
            .collect();
        self.seen = None;
        suspects
    }

    /// Whether `topic`/`partition` is stuck at `at`, and if so where its
    /// unreadable batch ends. `high` is its high watermark.
    pub fn find(&self, topic: &str, partition: i32, at: i64, high: i64) -> Found {
        let Ok(probe) = self.config.create_with_context::<_, ProbeConsumer>(ProbeContext) else {
            return Found::Unknown;
        };
        match read_from(&probe, topic, partition, at) {
            Probe::Readable => return Found::NotStuck,
            Probe::Unknown => return Found::Unknown,
            Probe::Undecodable => {}
        }
        match batch_end(&probe, topic, partition, at, high) {
            Some(next) => Found::Skip(Skip { topic: topic.to_string(), partition, first: at, next }),
            None => Found::Unknown,
        }
    }
}

/// The first offset after `at` (where a fetch fails) from which a fetch reads.
fn batch_end(probe: &ProbeConsumer, topic: &str, partition: i32, at: i64, high: i64) -> Option<i64> {
    // Double the step until a fetch reads, then bisect back to the first such offset.
    let (mut bad, mut step) = (at, 1i64);
    let mut good = loop {
        let x = (at + step).min(high);
        if x <= bad {
            return None;
        }
        match read_from(probe, topic, partition, x) {
            Probe::Undecodable if x >= high => return None,
            Probe::Undecodable => bad = x,
            Probe::Readable => break x,
            Probe::Unknown => return None,
        }
        step = step.saturating_mul(2);
    };
    while good - bad > 1 {
        let mid = bad + (good - bad) / 2;
        match read_from(probe, topic, partition, mid) {
            Probe::Undecodable => bad = mid,
            Probe::Readable => good = mid,
            Probe::Unknown => return None,
        }
    }
    Some(good.max(at + 1))
}

/// Assigns the probe to one partition at `offset` and reports what the
/// first fetch met: a record or the partition's end (readable), or an
/// undecodable batch.
fn read_from(probe: &ProbeConsumer, topic: &str, partition: i32, offset: i64) -> Probe {
    let mut tpl = TopicPartitionList::new();
    if tpl.add_partition_offset(topic, partition, Offset::Offset(offset)).is_err() || probe.assign(&tpl).is_err() {
        return Probe::Unknown;
    }
    let deadline = Instant::now() + PROBE_TIMEOUT;
    while Instant::now() < deadline {
        match probe.poll(Duration::from_millis(100)) {
            Some(Ok(msg)) if msg.partition() == partition && msg.topic() == topic && msg.offset() >= offset => {
                return Probe::Readable
            }
            Some(Err(KafkaError::PartitionEOF(p))) if p == partition => return Probe::Readable,
            Some(Err(e)) if is_undecodable(&e) => return Probe::Undecodable,
            _ => {}
        }
    }
    Probe::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspects_are_behind_and_did_not_move_between_two_errors() {
        let mut f = StuckFinder::new(ClientConfig::new());
        let key = |p: i32| ("t".to_string(), p);
        let highs = BTreeMap::from([(key(0), 10), (key(1), 10), (key(2), 4)]);
        let mut positions = BTreeMap::from([(key(0), 3), (key(1), 5), (key(2), 4)]);
        assert!(f.error(&positions, &highs).is_empty(), "the first error only opens an episode");
        positions.insert(key(1), 7);
        assert!(f.error(&positions, &highs).is_empty(), "too soon to judge");
        f.seen.as_mut().unwrap().0 -= SETTLE;
        assert_eq!(f.error(&positions, &highs), vec![("t".to_string(), 0, 3)], "1 moved, 2 is at its end");
        assert!(f.seen.is_none());
    }

    #[test]
    fn codes_that_mean_an_unreadable_batch() {
        assert!(is_undecodable(&KafkaError::MessageConsumption(RDKafkaErrorCode::BadCompression)));
        assert!(is_undecodable(&KafkaError::Global(RDKafkaErrorCode::NotImplemented)));
        assert!(!is_undecodable(&KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure)));
    }
}
