//! The Kafka consumer: one thread outside the shards that assigns itself
//! every partition of the configured topics from the beginning, decodes each
//! record with its writer schema and hands it to `dispatch`, and reports
//! catch-up progress to readiness.
//!
//! Positions are *applied* positions: each flush to the shards carries a
//! mark with the partitions' next offsets it covers, every shard
//! acknowledges the mark after applying what came before it, and only then
//! do those offsets count for readiness, the `memory` feed's positions
//! (`GET /offsets`, lag metrics) and the committed offsets. What was merely
//! sent never counts.
//!
//! Partitions are assigned, not subscribed: the cache must read every
//! partition anyway, and group rebalancing only delays start-up. Offsets are
//! committed to `kafka.group_id` solely so lag tooling can watch the cache.

use super::catch_up::CatchUp;
use super::dispatch::{Dispatcher, KnownTypes, ShardsGone, Upsert};
use super::partitions::{self, Every, METADATA_TIMEOUT};
use super::record::{Decoded, NotDecoded, RecordDecoder};
use super::registry_client::{RegistryClient, RegistryError};
use super::schemas::{sleep_unless_stopped, SchemaCache};
use super::stats::{Counters, IngestStats};
use super::stuck::{self, Found, Skip, StuckFinder};
use crate::config::Config;
use crate::placement::ShardQueues;
use crate::positions::{FeedPositions, FlushMark};
use crate::readiness::Readiness;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Offset;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Readiness keys this module sets.
pub const READINESS_KEY: &str = "kafka";
const KAFKA: &str = READINESS_KEY;
const REGISTRY: &str = "schema_registry";
const STUCK: &str = "kafka_partition";
/// Most records taken per poll burst before batches are flushed.
const BURST: usize = 4096;
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
const WATERMARKS_EVERY: Duration = Duration::from_secs(5);
const METADATA_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("cannot create the Kafka consumer: {0} (check kafka.brokers and kafka.properties)")]
    Create(KafkaError),
    #[error("kafka.schema_registry_url: {0}")]
    Registry(RegistryError),
    #[error("cannot start the consumer thread: {0}")]
    Thread(std::io::Error),
}

/// The running consumer thread.
pub struct ConsumerHandle {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl ConsumerHandle {
    /// Asks the consumer to stop and waits for it (it commits its offsets).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// Where a warm restart resumes: the next offset per partition (others
/// start from the beginning) and the record types each topic carried.
#[derive(Debug, Default, Clone)]
pub struct Resume {
    pub offsets: BTreeMap<(String, i32), i64>,
    pub known_types: KnownTypes,
}

/// Starts the consumer thread feeding `shards` (the in-memory stores; each
/// Redis store has its own feed, `redis_feed`).
pub fn start(
    config: &Config,
    shards: ShardQueues,
    readiness: Arc<Readiness>,
    stats: Arc<IngestStats>,
) -> Result<ConsumerHandle, ConsumerError> {
    start_from(config, shards, readiness, stats, Resume::default())
}

/// `start`, resuming each partition of `resume.offsets` at its offset.
pub fn start_from(
    config: &Config,
    shards: ShardQueues,
    readiness: Arc<Readiness>,
    stats: Arc<IngestStats>,
    resume: Resume,
) -> Result<ConsumerHandle, ConsumerError> {
    let consumer: BaseConsumer<Quiet> =
        client_config(config).create_with_context(Quiet).map_err(ConsumerError::Create)?;
    let registry = RegistryClient::new(&config.kafka.schema_registry_url).map_err(ConsumerError::Registry)?;
    readiness.wait_for(KAFKA, "connecting to the Kafka broker");
    let stop = Arc::new(AtomicBool::new(false));
    let feed = stats.positions();
    let mut worker = Worker {
        consumer,
        topics: config.kafka.topic.names(),
        brokers: config.kafka.brokers.clone(),
        decoder: RecordDecoder::new(SchemaCache::new(registry)).with_key_format(config.kafka.key_format),
        dispatcher: Dispatcher::new(config.cache.stores.clone(), shards),
        start_offsets: resume.offsets,
        readiness,
        stats,
        stop: stop.clone(),
        counters: Counters::default(),
        catch_up: None,
        assigned: BTreeSet::new(),
        positions: BTreeMap::new(),
        highs: BTreeMap::new(),
        flights: Flights::default(),
        applied: BTreeMap::new(),
        feed,
        stuck: StuckFinder::new(client_config(config)),
    };
    worker.dispatcher.share_known_types(resume.known_types);
    let thread = std::thread::Builder::new()
        .name("kafka-consumer".into())
        .spawn(move || worker.run())
        .map_err(ConsumerError::Thread)?;
    Ok(ConsumerHandle { stop, thread })
}

pub use super::partitions::partitions_of;

/// librdkafka settings: ours first, then `kafka.properties` may override.
pub fn client_config(config: &Config) -> ClientConfig {
    let k = &config.kafka;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers)
        .set("group.id", &k.group_id)
        .set("client.id", "push-cache")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "5000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        // Records should be visible within milliseconds: don't let an idle
        // fetch sit at the broker for librdkafka's default 500 ms.
        .set("fetch.wait.max.ms", "20");
    if let Some(user) = &k.sasl_username {
        c.set("sasl.username", user);
    }
    if let Some(password) = &k.sasl_password {
        c.set("sasl.password", password);
    }
    for (name, value) in &k.properties {
        c.set(name, value);
    }
    c
}

/// librdkafka's client callbacks: end-of-partition is an expected event
/// here (it drives catch-up), not the error rdkafka logs it as by default.
/// Shared by the in-memory stores' consumer and each Redis store's feed.
pub(super) struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka reports end-of-partition as a global error too; an
        // unreadable batch is skipped and logged by the consumer.
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::PartitionEOF) => tracing::trace!(reason, "end of partition"),
            _ if stuck::is_undecodable(&error) => tracing::debug!(error = %error, reason, "librdkafka"),
            _ => tracing::warn!(error = %error, reason, "librdkafka"),
        }
    }
}

impl ConsumerContext for Quiet {}

struct Worker {
    consumer: BaseConsumer<Quiet>,
    topics: Vec<String>,
    brokers: String,
    decoder: RecordDecoder,
    dispatcher: Dispatcher,
    /// Next offset per partition to resume at (a snapshot's); others start at the beginning.
    start_offsets: BTreeMap<(String, i32), i64>,
    readiness: Arc<Readiness>,
    stats: Arc<IngestStats>,
    stop: Arc<AtomicBool>,
    counters: Counters,
    /// `None` until the partitions are assigned; then until caught up.
    catch_up: Option<CatchUp>,
    assigned: BTreeSet<(String, i32)>,
    /// Next offset taken from Kafka (sent or skipped), per partition.
    positions: BTreeMap<(String, i32), i64>,
    highs: BTreeMap<(String, i32), i64>,
    /// Flushes sent and not yet applied by every shard.
    flights: Flights,
    /// Next offset applied by every shard, per partition.
    applied: BTreeMap<(String, i32), i64>,
    /// The in-memory stores' feed positions (applied offsets, watermarks).
    feed: Arc<FeedPositions>,
    stuck: StuckFinder,
}

/// The flushes in flight: their marks' positions and their records'
/// timestamps, until every shard has applied them.
#[derive(Default)]
struct Flights {
    seq: u64,
    /// Highest mark every shard has applied (written by the shards).
    done: Arc<AtomicU64>,
    sent: VecDeque<Flight>,
    /// Positions put in a mark so far.
    marked: BTreeMap<(String, i32), i64>,
    /// (topic, partition, Kafka timestamp in ms) of the records taken since the last flush.
    stamps: Vec<(Arc<str>, i32, i64)>,
    /// Topic names, shared rather than copied per record.
    topics: Vec<Arc<str>>,
}

struct Flight {
    seq: u64,
    positions: Vec<(Arc<str>, i32, i64)>,
    stamps: Vec<(Arc<str>, i32, i64)>,
}

impl Flights {
    fn topic(&mut self, name: &str) -> Arc<str> {
        if let Some(t) = self.topics.iter().find(|t| &***t == name) {
            return t.clone();
        }
        self.topics.push(Arc::from(name));
        self.topics[self.topics.len() - 1].clone()
    }

    /// A mark for the positions that moved since the last one, if any did.
    fn mark(&mut self, positions: &BTreeMap<(String, i32), i64>, shards: usize) -> Option<Arc<FlushMark>> {
        let mut moved = Vec::new();
        for (key, next) in positions {
            if self.marked.get(key) != Some(next) {
                self.marked.insert(key.clone(), *next);
                moved.push((key.0.as_str(), key.1, *next));
            }
        }
        if moved.is_empty() {
            return None;
        }
        let moved: Vec<(Arc<str>, i32, i64)> = moved.into_iter().map(|(t, p, n)| (self.topic(t), p, n)).collect();
        self.seq += 1;
        let stamps = std::mem::take(&mut self.stamps);
        self.sent.push_back(Flight { seq: self.seq, positions: moved.clone(), stamps });
        Some(FlushMark::new(self.seq, moved, shards, self.done.clone()))
    }

    /// The flights every shard has applied, oldest first.
    fn landed(&mut self) -> Vec<Flight> {
        let done = self.done.load(Ordering::Acquire);
        let mut out = Vec::new();
        while self.sent.front().is_some_and(|f| f.seq <= done) {
            out.extend(self.sent.pop_front());
        }
        out
    }
}

/// Why the poll loop ended.
enum End {
    Stopped,
    ShardsGone,
}

impl Worker {
    fn run(mut self) {
        let end = self.assign_with_retry().and_then(|()| self.poll_loop());
        if matches!(end, Err(End::ShardsGone)) {
            tracing::info!("shards stopped; consumer exits");
        }
        let _ = self.flush();
        self.land();
        self.store_offsets();
        let _ = self.consumer.commit_consumer_state(CommitMode::Sync);
        self.stats.merge(&mut self.counters);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Assigns every partition from the beginning, noting high watermarks.
    fn assign_with_retry(&mut self) -> Result<(), End> {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.initial_assignment() {
                Ok(catch_up) => {
                    self.catch_up = Some(catch_up);
                    return Ok(());
                }
                Err(e) => {
                    let why = format!("cannot read metadata of {:?} from {}: {e}; retrying", self.topics, self.brokers);
                    tracing::warn!("{why}");
                    self.readiness.wait_for(KAFKA, why);
                    let stop = self.stop.clone();
                    if sleep_unless_stopped(backoff, &move || stop.load(Ordering::Relaxed)) {
                        return Err(End::Stopped);
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn initial_assignment(&mut self) -> Result<CatchUp, String> {
        let (highs, feed, positions, starts) = (&mut self.highs, &self.feed, &mut self.positions, &self.start_offsets);
        let (catch_up, assigned) = partitions::assign_all(&self.consumer, &self.topics, |p| {
            let start = starts.get(&(p.topic.to_string(), p.partition)).copied();
            // A warm restart resumes where its snapshot's stores stand.
            let from = start.map_or(p.low, |s| s.max(p.low));
            note_partition(highs, feed, positions, p.topic, p.partition, from, p.high);
            (from, start.map_or(Offset::Beginning, Offset::Offset))
        })?;
        self.assigned = assigned;
        let (partitions, resumed) = (self.assigned.len(), self.start_offsets.len());
        tracing::info!(partitions, resumed, "assigned every partition");
        Ok(catch_up)
    }

    fn poll_loop(&mut self) -> Result<(), End> {
        let (mut progress, mut watermarks, mut metadata) =
            (Every::new(PROGRESS_EVERY), Every::new(WATERMARKS_EVERY), Every::new(METADATA_EVERY));
        while !self.stopped() {
            self.poll_burst()?;
            self.flush().map_err(|ShardsGone| End::ShardsGone)?;
            self.land();
            self.store_offsets();
            if progress.due() {
                self.report_progress();
            }
            if watermarks.due() {
                let (highs, feed) = (&mut self.highs, &self.feed);
                partitions::refresh_highs(&self.consumer, &self.assigned, |topic, partition, high| {
                    highs.insert((topic.to_string(), partition), high);
                    feed.high(topic, partition, high);
                });
            }
            if metadata.due() {
                self.pick_up_new_partitions();
            }
        }
        Err(End::Stopped)
    }

    /// Takes records until none is waiting or the burst is full.
    fn poll_burst(&mut self) -> Result<(), End> {
        // While flushes are in flight, come back soon to take in their acknowledgements.
        let mut timeout = Duration::from_millis(if self.flights.sent.is_empty() { 100 } else { 5 });
        for _ in 0..BURST {
            let Some(result) = self.consumer.poll(timeout) else { return Ok(()) };
            timeout = Duration::ZERO;
            match result {
                Ok(msg) => {
                    let (topic, partition, offset) = (msg.topic().to_string(), msg.partition(), msg.offset());
                    let (stats, readiness, catching_up) = (&self.stats, &self.readiness, self.catch_up.is_some());
                    let mut waiting = |e: Option<&RegistryError>, counters: &mut Counters| {
                        stats.merge(counters);
                        match (e, catching_up) {
                            (Some(e), true) => {
                                readiness.wait_for(REGISTRY, format!("schema registry unreachable, retrying: {e}"))
                            }
                            (None, true) => readiness.done(REGISTRY),
                            _ => {}
                        }
                    };
                    handle_record(
                        &mut self.decoder,
                        &mut self.dispatcher,
                        &mut self.counters,
                        &self.stop,
                        &mut waiting,
                        &msg,
                    )?;
                    if let Some(ms) = msg.timestamp().to_millis() {
                        let topic = self.flights.topic(&topic);
                        self.flights.stamps.push((topic, partition, ms));
                    }
                    self.positions.insert((topic, partition), offset + 1);
                }
                Err(KafkaError::PartitionEOF(p)) => self.end_of_partition(p),
                Err(e) if stuck::is_undecodable(&e) => self.undecodable(&e),
                Err(e) => self.broker_trouble(e),
            }
        }
        Ok(())
    }

    /// librdkafka's EOF names only the partition; with one topic it is
    /// exact: everything up to the watermark seen at start has been taken.
    /// With several topics the consumer's position (`report_progress`)
    /// says the same for every topic.
    fn end_of_partition(&mut self, partition: i32) {
        if let [topic] = self.topics.as_slice() {
            let key = (topic.clone(), partition);
            if let (Some(c), Some(next)) = (self.catch_up.as_ref(), self.positions.get_mut(&key)) {
                if let Some(high) = c.target(topic, partition) {
                    *next = (*next).max(high);
                }
            }
        }
    }

    /// Sends what is pending, with a mark when positions moved.
    fn flush(&mut self) -> Result<(), ShardsGone> {
        let mark = self.flights.mark(&self.positions, self.dispatcher.shards());
        self.dispatcher.flush_marked(mark)
    }

    /// Takes in the flushes every shard has applied: their positions are
    /// now applied, their records visible.
    fn land(&mut self) {
        let landed = self.flights.landed();
        if landed.is_empty() {
            return;
        }
        let now_ms = now_ms();
        for flight in landed {
            for (topic, partition, next) in &flight.positions {
                self.applied.insert((topic.to_string(), *partition), *next);
                self.feed.applied(topic, *partition, *next);
            }
            for (topic, partition, ts) in &flight.stamps {
                self.counters.visible(topic, *partition, *ts, now_ms);
            }
        }
    }

    /// librdkafka cannot read a batch and will fetch it again forever: once
    /// the error repeats, find the stalled partition and seek past the batch.
    fn undecodable(&mut self, e: &KafkaError) {
        tracing::debug!(error = %e, "a batch the client cannot read");
        for (topic, partition, at) in self.stuck.error(&self.positions, &self.highs) {
            let high = self.highs.get(&(topic.clone(), partition)).copied().unwrap_or(at);
            match self.stuck.find(&topic, partition, at, high) {
                Found::NotStuck => {}
                Found::Skip(skip) => self.skip(skip),
                Found::Unknown => {
                    let why = format!(
                        "{topic}/{partition} is stuck at offset {at} on a batch the client cannot read; \
                         still probing for its end"
                    );
                    tracing::warn!("{why}");
                    self.readiness.wait_for(STUCK, why);
                }
            }
        }
    }

    fn skip(&mut self, s: Skip) {
        if let Err(e) = self.consumer.seek(&s.topic, s.partition, Offset::Offset(s.next), METADATA_TIMEOUT) {
            let (t, p, at) = (&s.topic, s.partition, s.first);
            let why = format!("{t}/{p} is stuck at offset {at} and cannot seek past it: {e}; retrying");
            tracing::warn!("{why}");
            self.readiness.wait_for(STUCK, why);
            return;
        }
        self.counters.skipped("undecodable_batch");
        tracing::warn!(
            "skipped an undecodable batch: {}/{} offsets {} to {} (first_offset={} next_offset={}); the client cannot \
             decompress or parse it (check the producer's codec and the broker's log)",
            s.topic,
            s.partition,
            s.first,
            s.next - 1,
            s.first,
            s.next
        );
        let slot = self.positions.entry((s.topic.clone(), s.partition)).or_insert(s.next);
        *slot = (*slot).max(s.next);
        self.readiness.done(STUCK);
    }

    fn broker_trouble(&mut self, e: KafkaError) {
        tracing::warn!(error = %e, "Kafka consumer error; librdkafka reconnects by itself");
        if self.catch_up.is_some() {
            self.readiness.wait_for(KAFKA, format!("broker trouble during catch-up: {e}"));
        }
    }

    fn store_offsets(&mut self) {
        for ((topic, partition), next) in &self.applied {
            // Only for lag tooling: a failure here costs nothing but a stale commit.
            let _ = self.consumer.store_offset(topic, *partition, *next);
        }
    }

    /// Merges the counters, notes the consumer's position past offsets that
    /// delivered no record (compaction gaps, transaction markers), and
    /// judges catch-up by the applied positions.
    fn report_progress(&mut self) {
        self.stats.merge(&mut self.counters);
        if let Ok(tpl) = self.consumer.position() {
            for e in tpl.elements() {
                if let Offset::Offset(n) = e.offset() {
                    let slot = self.positions.entry((e.topic().to_string(), e.partition())).or_insert(n);
                    *slot = (*slot).max(n);
                }
            }
        }
        let Some(catch_up) = self.catch_up.as_mut() else { return };
        for ((topic, partition), pos) in &self.applied {
            catch_up.position(topic, *partition, *pos);
        }
        if catch_up.is_done() {
            tracing::info!("initial catch-up complete");
            self.catch_up = None;
            self.readiness.done(KAFKA);
            self.readiness.done(REGISTRY);
            release_replay_memory();
        } else {
            self.readiness.wait_for(KAFKA, catch_up.describe(&self.applied));
        }
    }

    /// Partitions added to a topic while running, from their beginning.
    fn pick_up_new_partitions(&mut self) {
        let (highs, feed, positions) = (&mut self.highs, &self.feed, &mut self.positions);
        let added = partitions::assign_new(&self.consumer, &self.topics, &self.assigned, |p| {
            note_partition(highs, feed, positions, p.topic, p.partition, p.low, p.high);
            Offset::Beginning
        });
        if let Some(now) = added {
            self.assigned = now;
        }
    }
}

/// A newly assigned partition: reported from now on, and nothing below
/// its low watermark exists to be applied.
fn note_partition(
    highs: &mut BTreeMap<(String, i32), i64>,
    feed: &FeedPositions,
    positions: &mut BTreeMap<(String, i32), i64>,
    topic: &str,
    partition: i32,
    low: i64,
    high: i64,
) {
    highs.insert((topic.to_string(), partition), high);
    feed.assigned(topic, partition, high);
    let next = positions.entry((topic.to_string(), partition)).or_insert(low);
    *next = (*next).max(low);
}

/// Decodes one record and queues it for its stores, or counts why not.
fn handle_record(
    decoder: &mut RecordDecoder,
    dispatcher: &mut Dispatcher,
    counters: &mut Counters,
    stop: &AtomicBool,
    waiting: &mut dyn FnMut(Option<&RegistryError>, &mut Counters),
    msg: &BorrowedMessage<'_>,
) -> Result<(), End> {
    let decoded = match decoder.decode(msg, counters, &|| stop.load(Ordering::Relaxed), waiting) {
        Ok(d) => d,
        Err(NotDecoded::Stopped) => return Err(End::Stopped),
        Err(NotDecoded::Skip(reason)) => {
            counters.skipped(reason);
            tracing::warn!(
                topic = msg.topic(),
                partition = msg.partition(),
                offset = msg.offset(),
                reason,
                "skipped a record"
            );
            return Ok(());
        }
    };
    match decoded {
        Decoded::Tombstone { key } => {
            dispatcher.tombstone(msg.topic(), &key).map_err(|ShardsGone| End::ShardsGone)?;
            counters.tombstones += 1;
        }
        Decoded::Upsert { key, record_type, value } => match dispatcher.upsert(msg.topic(), &record_type, &key, &value)
        {
            Ok(_) => counters.applied(&record_type),
            Err(Upsert::TooLong(_)) => {
                counters.skipped("key_too_long");
                tracing::warn!(
                    topic = msg.topic(),
                    partition = msg.partition(),
                    offset = msg.offset(),
                    "skipped a record: key too long"
                );
            }
            Err(Upsert::Gone(_)) => return Err(End::ShardsGone),
        },
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Hands the memory the replay used (librdkafka's fetch buffers, decode
/// scratch) back to the system: glibc keeps freed memory in its arenas, and a
/// cache that replayed a large topic would otherwise carry it for its whole
/// life (measured: 27 MB of 330 MB after replaying 1M customers).
fn release_replay_memory() {
    // SAFETY: malloc_trim only returns free memory to the system; it is
    // thread-safe and touches no live allocation.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> (String, i32) {
        ("t".to_string(), p)
    }

    #[test]
    fn marks_carry_moved_positions_and_land_once_every_shard_applied_them() {
        let mut f = Flights::default();
        let mut positions = BTreeMap::from([(key(0), 5), (key(1), 0)]);
        let t = f.topic("t");
        f.stamps.push((t, 0, 1_000));
        let first = f.mark(&positions, 2).expect("positions moved");
        assert_eq!(first.positions.len(), 2);
        assert!(f.mark(&positions, 2).is_none(), "nothing moved since");
        positions.insert(key(1), 3);
        let second = f.mark(&positions, 2).unwrap();
        assert_eq!(second.positions, vec![(Arc::from("t"), 1, 3)]);
        assert!(f.landed().is_empty(), "no shard applied anything yet");
        first.applied_by_one_shard();
        second.applied_by_one_shard();
        assert!(f.landed().is_empty(), "one shard of two");
        first.applied_by_one_shard();
        let landed = f.landed();
        assert_eq!(landed.len(), 1);
        assert_eq!(landed[0].stamps.len(), 1, "the records' timestamps travel with their flush");
        second.applied_by_one_shard();
        assert_eq!(f.landed()[0].seq, 2);
    }
}
