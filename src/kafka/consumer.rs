//! The Kafka consumer: one thread outside the shards that assigns itself
//! every partition of the configured topics from the beginning, decodes each
//! record with its writer schema and hands it to `dispatch`, and reports
//! catch-up progress to readiness.
//!
//! Partitions are assigned, not subscribed: the cache must read every
//! partition anyway, and group rebalancing only delays start-up. Offsets are
//! committed to `kafka.group_id` solely so lag tooling can watch the cache.

use super::catch_up::CatchUp;
use super::decode::{decode_datum, parse_frame};
use super::dispatch::{Dispatcher, ShardsGone, Upsert};
use super::registry_client::{RegistryClient, RegistryError};
use super::schemas::{sleep_unless_stopped, SchemaCache, SchemaError};
use super::stats::{Counters, IngestStats, PartitionProgress};
use crate::config::Config;
use crate::readiness::Readiness;
use crate::runtime::IngestBatch;
use crate::store::redis::WriteBatch;
use rdkafka::config::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Readiness keys this module sets.
pub const READINESS_KEY: &str = "kafka";
const KAFKA: &str = READINESS_KEY;
const REGISTRY: &str = "schema_registry";
/// Most records taken per poll burst before batches are flushed.
const BURST: usize = 4096;
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
const WATERMARKS_EVERY: Duration = Duration::from_secs(5);
const METADATA_EVERY: Duration = Duration::from_secs(10);
/// Short, so a stop is never held up long by an unreachable broker.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

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

/// Starts the consumer thread feeding `shards` and the Redis stores' writers
/// (indexed like `cache.stores`; empty without Redis stores).
pub fn start(
    config: &Config,
    shards: Vec<flume::Sender<IngestBatch>>,
    redis_writers: Vec<Option<flume::Sender<WriteBatch>>>,
    readiness: Arc<Readiness>,
    stats: Arc<IngestStats>,
) -> Result<ConsumerHandle, ConsumerError> {
    let consumer: BaseConsumer<Quiet> = client_config(config).create_with_context(Quiet).map_err(ConsumerError::Create)?;
    let registry = RegistryClient::new(&config.kafka.schema_registry_url).map_err(ConsumerError::Registry)?;
    readiness.wait_for(KAFKA, "connecting to the Kafka broker");
    let stop = Arc::new(AtomicBool::new(false));
    let worker = Worker {
        consumer,
        topics: config.kafka.topic.names(),
        brokers: config.kafka.brokers.clone(),
        schemas: SchemaCache::new(registry),
        dispatcher: Dispatcher::new(config.cache.stores.clone(), shards, redis_writers),
        readiness,
        stats,
        stop: stop.clone(),
        counters: Counters::default(),
        catch_up: None,
        assigned: BTreeSet::new(),
        positions: BTreeMap::new(),
        highs: BTreeMap::new(),
    };
    let thread = std::thread::Builder::new().name("kafka-consumer".into()).spawn(move || worker.run()).map_err(ConsumerError::Thread)?;
    Ok(ConsumerHandle { stop, thread })
}

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
struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::PartitionEOF(_) => tracing::trace!(reason, "end of partition"),
            e => tracing::warn!(error = %e, reason, "librdkafka"),
        }
    }
}

impl ConsumerContext for Quiet {}

struct Worker {
    consumer: BaseConsumer<Quiet>,
    topics: Vec<String>,
    brokers: String,
    schemas: SchemaCache,
    dispatcher: Dispatcher,
    readiness: Arc<Readiness>,
    stats: Arc<IngestStats>,
    stop: Arc<AtomicBool>,
    counters: Counters,
    /// `None` until the partitions are assigned; then until caught up.
    catch_up: Option<CatchUp>,
    assigned: BTreeSet<(String, i32)>,
    /// Next offset to apply, per partition.
    positions: BTreeMap<(String, i32), i64>,
    highs: BTreeMap<(String, i32), i64>,
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
        let _ = self.dispatcher.flush();
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
        let partitions = self.partitions()?;
        let mut catch_up = CatchUp::default();
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in &partitions {
            let (low, high) = self.consumer.fetch_watermarks(topic, *partition, METADATA_TIMEOUT).map_err(|e| e.to_string())?;
            catch_up.add(topic, *partition, low, high);
            self.highs.insert((topic.clone(), *partition), high);
            tpl.add_partition_offset(topic, *partition, Offset::Beginning).map_err(|e| e.to_string())?;
        }
        self.consumer.assign(&tpl).map_err(|e| e.to_string())?;
        self.assigned = partitions;
        tracing::info!(partitions = self.assigned.len(), "assigned every partition from the beginning");
        Ok(catch_up)
    }

    /// Every (topic, partition) the broker knows for our topics.
    fn partitions(&self) -> Result<BTreeSet<(String, i32)>, String> {
        let mut all = BTreeSet::new();
        for topic in &self.topics {
            let md = self.consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT).map_err(|e| e.to_string())?;
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

    fn poll_loop(&mut self) -> Result<(), End> {
        let (mut progress_at, mut watermarks_at, mut metadata_at) = (Instant::now(), Instant::now(), Instant::now());
        while !self.stopped() {
            self.poll_burst()?;
            self.dispatcher.flush().map_err(|ShardsGone| End::ShardsGone)?;
            self.store_offsets();
            if progress_at.elapsed() >= PROGRESS_EVERY {
                self.report_progress();
                progress_at = Instant::now();
            }
            if watermarks_at.elapsed() >= WATERMARKS_EVERY {
                self.refresh_watermarks();
                watermarks_at = Instant::now();
            }
            if metadata_at.elapsed() >= METADATA_EVERY {
                self.pick_up_new_partitions();
                metadata_at = Instant::now();
            }
        }
        Err(End::Stopped)
    }

    /// Takes records until none is waiting or the burst is full.
    fn poll_burst(&mut self) -> Result<(), End> {
        let mut timeout = Duration::from_millis(100);
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
                            (Some(e), true) => readiness.wait_for(REGISTRY, format!("schema registry unreachable, retrying: {e}")),
                            (None, true) => readiness.done(REGISTRY),
                            _ => {}
                        }
                    };
                    handle_record(&mut self.schemas, &mut self.dispatcher, &mut self.counters, &self.stop, &mut waiting, &msg)?;
                    self.positions.insert((topic, partition), offset + 1);
                }
                Err(KafkaError::PartitionEOF(p)) => self.end_of_partition(p),
                Err(e) => self.broker_trouble(e),
            }
        }
        Ok(())
    }

    /// librdkafka's EOF names only the partition; with one topic it is exact.
    fn end_of_partition(&mut self, partition: i32) {
        if let (Some(c), [topic]) = (self.catch_up.as_mut(), self.topics.as_slice()) {
            c.end_of_partition(topic, partition);
        }
    }

    fn broker_trouble(&mut self, e: KafkaError) {
        tracing::warn!(error = %e, "Kafka consumer error; librdkafka reconnects by itself");
        if self.catch_up.is_some() {
            self.readiness.wait_for(KAFKA, format!("broker trouble during catch-up: {e}"));
        }
    }

    fn store_offsets(&mut self) {
        for ((topic, partition), next) in &self.positions {
            // Only for lag tooling: a failure here costs nothing but a stale commit.
            let _ = self.consumer.store_offset(topic, *partition, *next);
        }
    }

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
        for (key, pos) in &self.positions {
            let high = self.highs.get(key).copied().unwrap_or(*pos).max(*pos);
            self.stats.set_progress(&key.0, key.1, PartitionProgress { position: *pos, high });
        }
        let Some(catch_up) = self.catch_up.as_mut() else { return };
        for ((topic, partition), pos) in &self.positions {
            catch_up.position(topic, *partition, *pos);
        }
        if catch_up.is_done() {
            tracing::info!("initial catch-up complete");
            self.catch_up = None;
            self.readiness.done(KAFKA);
            self.readiness.done(REGISTRY);
            release_replay_memory();
        } else {
            self.readiness.wait_for(KAFKA, catch_up.describe(&self.positions));
        }
    }

    fn refresh_watermarks(&mut self) {
        for (topic, partition) in &self.assigned {
            if let Ok((_, high)) = self.consumer.fetch_watermarks(topic, *partition, Duration::from_millis(500)) {
                self.highs.insert((topic.clone(), *partition), high);
            }
        }
    }

    fn pick_up_new_partitions(&mut self) {
        let Ok(now) = self.partitions() else { return };
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in now.difference(&self.assigned) {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Beginning);
        }
        if tpl.count() == 0 {
            return;
        }
        match self.consumer.incremental_assign(&tpl) {
            Ok(()) => {
                tracing::info!(added = tpl.count(), "assigned new partitions from the beginning");
                self.assigned = now;
            }
            Err(e) => tracing::warn!(error = %e, "cannot assign new partitions; will retry"),
        }
    }
}

/// Decodes one record and queues it for its shards, or counts why not.
fn handle_record(
    schemas: &mut SchemaCache,
    dispatcher: &mut Dispatcher,
    counters: &mut Counters,
    stop: &AtomicBool,
    waiting: &mut dyn FnMut(Option<&RegistryError>, &mut Counters),
    msg: &BorrowedMessage<'_>,
) -> Result<(), End> {
    let skip = |counters: &mut Counters, reason: &'static str| -> Result<(), End> {
        counters.skipped(reason);
        tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), reason, "skipped a record");
        Ok(())
    };
    let key = match msg.key().map(std::str::from_utf8) {
        Some(Ok(k)) => k,
        Some(Err(_)) => return skip(counters, "key_not_utf8"),
        None => return skip(counters, "missing_key"),
    };
    let Some(payload) = msg.payload() else {
        dispatcher.tombstone(msg.topic(), key).map_err(|ShardsGone| End::ShardsGone)?;
        counters.tombstones += 1;
        return Ok(());
    };
    let (id, datum) = match parse_frame(payload) {
        Ok(f) => f,
        Err(e) => return skip(counters, e.reason()),
    };
    let schema = match schemas.get(id, counters, &|| stop.load(Ordering::Relaxed), waiting) {
        Ok(s) => s,
        Err(SchemaError::Unknown(_)) => return skip(counters, "unknown_schema"),
        Err(SchemaError::Unusable { .. }) => return skip(counters, "bad_schema"),
        Err(SchemaError::Stopped) => return Err(End::Stopped),
    };
    let value = match decode_datum(&schema, datum) {
        Ok(v) => v,
        Err(e) => return skip(counters, e.reason()),
    };
    match dispatcher.upsert(msg.topic(), &schema.record_type, key, &value) {
        Ok(_) => counters.applied(&schema.record_type),
        Err(Upsert::TooLong(_)) => return skip(counters, "key_too_long"),
        Err(Upsert::Gone(_)) => return Err(End::ShardsGone),
    }
    Ok(())
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
