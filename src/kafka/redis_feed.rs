//! Each Redis store's own feed: a consumer thread per store, with its own
//! rdkafka consumer, its own record decoder (and schema cache) and its own
//! position, kept in Redis with the data (see `store::redis`).
//!
//! At start the feed reads its stored position and assigns every partition
//! from there (a partition without one from the beginning), so a restart
//! resumes the writes where they stopped instead of replaying the topic.
//! It polls a burst, decodes, keeps what its store accepts, and writes the
//! batch and the offsets it reaches in one go. While Redis is down, slow or
//! refusing writes, the feed retries that batch with backoff and stops
//! polling; librdkafka stops fetching once its bounded queue is full. Nothing
//! else waits on it: the in-memory stores have their own consumer, and a
//! stop only asks the feed to end (see `RedisFeeds::stop`).
//!
//! The consumer uses group `{kafka.group_id}.redis.{store}` (librdkafka needs a
//! group to assign partitions) but never commits: its position is the one in
//! Redis. Its progress is published as the feed `redis:{store}` (applied
//! offset and high watermark per partition) and as readiness: the store is
//! ready once its feed has written everything up to the high watermarks seen
//! at its start.

use super::catch_up::CatchUp;
use super::consumer::{client_config, Quiet};
use super::partitions::{self, Every, METADATA_TIMEOUT};
use super::record::{Decoded, NotDecoded, RecordDecoder};
use super::registry_client::{RegistryClient, RegistryError};
use super::schemas::{sleep_unless_stopped, SchemaCache};
use super::stats::Counters;
use super::stuck::{self, Found, StuckFinder};
use crate::config::Config;
use crate::positions::FeedPositions;
use crate::store::projection::project;
use crate::store::redis::{
    encode_value, FeedBatch, FeedWriter, RedisError, RedisSetup, StoreHealth, StoredPosition, WRITE_BATCH,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::Offset;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const WATERMARKS_EVERY: Duration = Duration::from_secs(5);
const METADATA_EVERY: Duration = Duration::from_secs(10);
/// librdkafka's prefetch queue per feed, unless `kafka.properties` sets it:
/// what a stalled feed holds at most before fetching stops.
const QUEUE_KBYTES: &str = "16384";

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cannot create the Kafka consumer of Redis store `{0}`: {1} (check kafka.brokers and kafka.properties)")]
    Create(String, KafkaError),
    #[error("kafka.schema_registry_url: {0}")]
    Registry(RegistryError),
    #[error("cannot start the writer of Redis store `{0}`: {1}")]
    Writer(String, crate::store::redis::RedisError),
    #[error("cannot start the feed thread of Redis store `{0}`: {1}")]
    Thread(String, std::io::Error),
}

/// The running feeds, one per Redis store.
pub struct RedisFeeds {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl RedisFeeds {
    /// Tells every feed to stop, without waiting.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Tells every feed to stop and waits at most `within` for them: a feed
    /// blocked on a stalled Redis is left behind (its batch is not lost, it
    /// was never recorded as written) rather than holding up the exit.
    pub fn stop(self, within: Duration) {
        self.request_stop();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline && !self.threads.iter().all(JoinHandle::is_finished) {
            std::thread::sleep(Duration::from_millis(10));
        }
        for t in self.threads {
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!(
                    thread = t.thread().name().unwrap_or("?"),
                    "a Redis feed did not stop in time; leaving it"
                );
            }
        }
    }
}

/// Starts one feed thread per Redis store of `setup`.
pub fn start(config: &Config, setup: &RedisSetup) -> Result<RedisFeeds, FeedError> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for ((spec, health), positions) in setup.specs.iter().zip(&setup.health).zip(&setup.positions) {
        let consumer: BaseConsumer<Quiet> = feed_client_config(config, &spec.name)
            .create_with_context(Quiet)
            .map_err(|e| FeedError::Create(spec.name.clone(), e))?;
        let registry = RegistryClient::new(&config.kafka.schema_registry_url).map_err(FeedError::Registry)?;
        let feed = Feed {
            consumer,
            topics: config.kafka.topic.names(),
            decoder: RecordDecoder::new(SchemaCache::new(registry)).with_key_format(config.kafka.key_format),
            writer: FeedWriter::new(spec.clone(), setup.stats.clone())
                .map_err(|e| FeedError::Writer(spec.name.clone(), e))?,
            health: health.clone(),
            positions: positions.clone(),
            stop: stop.clone(),
            counters: Counters::default(),
            fed: BTreeSet::new(),
            assigned: BTreeSet::new(),
            next: BTreeMap::new(),
            written: BTreeMap::new(),
            recheck: false,
            catch_up: None,
            batch: FeedBatch::default(),
            highs: BTreeMap::new(),
            stuck: StuckFinder::new(feed_client_config(config, &spec.name)),
        };
        let name = format!("redis-feed-{}", spec.name);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || feed.run())
            .map_err(|e| FeedError::Thread(spec.name.clone(), e))?;
        threads.push(thread);
    }
    Ok(RedisFeeds { stop, threads })
}

/// The main consumer's settings, with a group of its own and no commits.
fn feed_client_config(config: &Config, store: &str) -> rdkafka::ClientConfig {
    let mut c = client_config(config);
    c.set("group.id", format!("{}.redis.{store}", config.kafka.group_id))
        .set("client.id", format!("push-cache-redis-{store}"))
        .set("enable.auto.commit", "false");
    if !config.kafka.properties.contains_key("queued.max.messages.kbytes") {
        c.set("queued.max.messages.kbytes", QUEUE_KBYTES);
    }
    c
}

struct Stopped;

#[derive(PartialEq, Eq)]
enum Written {
    Done,
    /// Redis had lost earlier writes: the feed went back to its stored position.
    Rewound,
}

struct Feed {
    consumer: BaseConsumer<Quiet>,
    topics: Vec<String>,
    decoder: RecordDecoder,
    writer: FeedWriter,
    health: Arc<StoreHealth>,
    positions: Arc<FeedPositions>,
    stop: Arc<AtomicBool>,
    counters: Counters,
    /// Topics whose tombstones delete from this store.
    fed: BTreeSet<String>,
    assigned: BTreeSet<(String, i32)>,
    /// Next offset per partition, as far as polled (written or in `batch`).
    next: BTreeMap<(String, i32), i64>,
    /// Next offset per partition as stored in Redis.
    written: BTreeMap<(String, i32), i64>,
    /// Set by a failed write: Redis may have lost data (see `write`).
    recheck: bool,
    /// `Some` until every partition reached its high watermark of the start.
    catch_up: Option<CatchUp>,
    batch: FeedBatch,
    /// High watermarks per partition, for telling a stuck partition.
    highs: BTreeMap<(String, i32), i64>,
    stuck: StuckFinder,
}

impl Feed {
    fn name(&self) -> &str {
        &self.writer.spec().name
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn run(mut self) {
        let _ = self.start().and_then(|()| self.poll_loop());
        tracing::info!(store = self.name(), "Redis feed stopped");
    }

    /// Reads the stored position, then assigns every partition from it.
    fn start(&mut self) -> Result<(), Stopped> {
        let stored = self.retry("read its stored position", |f| f.writer.load())?;
        self.fed = stored.fed_topics.clone();
        self.written = stored.offsets.clone();
        let mut backoff = BACKOFF_START;
        loop {
            match self.assign(&stored) {
                Ok(catch_up) => {
                    self.catch_up = Some(catch_up);
                    self.report_catch_up();
                    return Ok(());
                }
                Err(e) => {
                    let why = format!("cannot assign partitions of {:?}: {e}; retrying", self.topics);
                    tracing::warn!(store = self.name(), "{why}");
                    self.health.catching_up(Some(why));
                    self.sleep(&mut backoff)?;
                }
            }
        }
    }

    fn assign(&mut self, stored: &StoredPosition) -> Result<CatchUp, String> {
        let store = self.writer.spec().name.clone();
        let (written, positions, next, highs) = (&mut self.written, &self.positions, &mut self.next, &mut self.highs);
        let (catch_up, assigned) = partitions::assign_all(&self.consumer, &self.topics, |p| {
            let at = (p.topic.to_string(), p.partition);
            highs.insert(at.clone(), p.high);
            let from = match stored.offsets.get(&at) {
                Some(next) if *next > p.high => {
                    let (topic, partition, high) = (p.topic, p.partition, p.high);
                    tracing::warn!(
                        store,
                        topic,
                        partition,
                        next,
                        high,
                        "stored position is past the topic's end (topic re-created?); replaying it"
                    );
                    written.remove(&at);
                    p.low
                }
                Some(next) => (*next).max(p.low),
                None => p.low,
            };
            positions.assigned(p.topic, p.partition, p.high);
            positions.applied(p.topic, p.partition, from);
            next.insert(at, from);
            (from, Offset::Offset(from))
        })?;
        tracing::info!(
            store,
            partitions = assigned.len(),
            "Redis feed assigned every partition from its stored position"
        );
        self.assigned = assigned;
        Ok(catch_up)
    }

    fn poll_loop(&mut self) -> Result<(), Stopped> {
        let (mut watermarks, mut metadata) = (Every::new(WATERMARKS_EVERY), Every::new(METADATA_EVERY));
        while !self.stopped() {
            self.poll_burst()?;
            self.flush()?;
            if watermarks.due() {
                self.refresh_watermarks();
            }
            if metadata.due() {
                let written = &self.written;
                let added = partitions::assign_new(&self.consumer, &self.topics, &self.assigned, |p| {
                    let at = (p.topic.to_string(), p.partition);
                    written.get(&at).map_or(Offset::Beginning, |n| Offset::Offset(*n))
                });
                if let Some(now) = added {
                    self.assigned = now;
                }
            }
        }
        Err(Stopped)
    }

    /// Takes records until none is waiting or the batch is full.
    fn poll_burst(&mut self) -> Result<(), Stopped> {
        let mut timeout = Duration::from_millis(100);
        while self.batch.changes.len() < WRITE_BATCH {
            let Some(result) = self.consumer.poll(timeout) else {
                return Ok(());
            };
            timeout = Duration::ZERO;
            match result {
                Ok(msg) => {
                    // Owned, so the batch can be filled while the consumer is borrowed no more.
                    let msg = msg.detach();
                    self.take(&msg)?;
                    self.next.insert((msg.topic().to_string(), msg.partition()), msg.offset() + 1);
                }
                // Positions, not end-of-partition events, judge catch-up (`note_positions`).
                Err(KafkaError::PartitionEOF(_)) => {}
                Err(e) if stuck::is_undecodable(&e) => self.undecodable(&e),
                Err(e) => {
                    let store = self.name();
                    tracing::warn!(store, error = %e, "Kafka consumer error; librdkafka reconnects by itself")
                }
            }
        }
        Ok(())
    }

    /// Decodes one record into the batch when the store takes it.
    fn take(&mut self, msg: &OwnedMessage) -> Result<(), Stopped> {
        let stop = self.stop.clone();
        let mut waiting = |e: Option<&RegistryError>, _: &mut Counters| {
            if let Some(e) = e {
                tracing::warn!(error = %e, "schema registry unreachable; the Redis feed waits");
            }
        };
        let decoded =
            match self.decoder.decode(msg, &mut self.counters, &move || stop.load(Ordering::Relaxed), &mut waiting) {
                Ok(d) => d,
                Err(NotDecoded::Stopped) => return Err(Stopped),
                // The in-memory consumer counts and logs skips; counting here too would count them twice.
                Err(NotDecoded::Skip(reason)) => {
                    tracing::debug!(
                        topic = msg.topic(),
                        partition = msg.partition(),
                        offset = msg.offset(),
                        reason,
                        "Redis feed skipped a record"
                    );
                    return Ok(());
                }
            };
        match decoded {
            Decoded::Upsert { key, record_type, value } if self.writer.spec().accepts(&record_type) => {
                if self.fed.insert(msg.topic().to_string()) {
                    self.batch.fed_topics.push(msg.topic().to_string());
                }
                // A store with a projection keeps its own cut of the record.
                let value = match self.writer.spec().fields.as_slice() {
                    [] => value,
                    fields => project(&value, fields),
                };
                self.batch.changes.push((key.into_bytes(), Some(encode_value(&value.etag, &value.body))));
            }
            Decoded::Tombstone { key } if self.fed.contains(msg.topic()) => {
                self.batch.changes.push((key.into_bytes(), None))
            }
            _ => {}
        }
        Ok(())
    }

    /// Writes the batch and the offsets it reaches; retried until Redis takes it.
    fn flush(&mut self) -> Result<(), Stopped> {
        self.note_positions();
        for (tp, next) in &self.next {
            if self.written.get(tp) != Some(next) {
                self.batch.offsets.push((tp.0.clone(), tp.1, *next));
            }
        }
        if self.batch.is_empty() {
            return self.applied();
        }
        if self.retry("write", Feed::write)? == Written::Rewound {
            return Ok(());
        }
        for (topic, partition, next) in self.batch.offsets.drain(..) {
            self.positions.applied(&topic, partition, next);
            self.written.insert((topic, partition), next);
        }
        self.batch.clear();
        self.applied()
    }

    /// Writes the batch; after a failure, first checks that Redis still
    /// holds what was written before it (a Redis restarted without its data,
    /// or a failover to a replica that was behind, loses writes): if not, the
    /// feed starts again from the position Redis holds, and Redis converges.
    fn write(&mut self) -> Result<Written, RedisError> {
        if self.recheck {
            let stored = self.writer.load()?;
            let kept = |(tp, next): (&(String, i32), &i64)| stored.offsets.get(tp).is_some_and(|s| s >= next);
            if !self.written.iter().all(kept) {
                self.rewind(stored)?;
                self.recheck = false;
                return Ok(Written::Rewound);
            }
            self.recheck = false;
        }
        let result = self.writer.write(&self.batch);
        self.recheck = result.is_err();
        result.map(|()| Written::Done)
    }

    fn rewind(&mut self, stored: StoredPosition) -> Result<(), RedisError> {
        let store = self.name().to_string();
        tracing::warn!(store, "Redis lost writes it had acknowledged; the feed replays from the position Redis holds");
        self.batch.clear();
        self.next.clear();
        self.fed = stored.fed_topics.clone();
        self.written = stored.offsets.clone();
        let catch_up = self.assign(&stored).map_err(|e| RedisError::Unavailable { store, reason: e })?;
        self.catch_up = Some(catch_up);
        self.report_catch_up();
        Ok(())
    }

    /// The consumer's positions: past transaction markers and compacted gaps.
    fn note_positions(&mut self) {
        let Ok(tpl) = self.consumer.position() else { return };
        for e in tpl.elements() {
            if let Offset::Offset(n) = e.offset() {
                let slot = self.next.entry((e.topic().to_string(), e.partition())).or_insert(n);
                *slot = (*slot).max(n);
            }
        }
    }

    /// Everything polled so far is in Redis: advance catch-up.
    fn applied(&mut self) -> Result<(), Stopped> {
        let Some(catch_up) = self.catch_up.as_mut() else { return Ok(()) };
        for ((topic, partition), next) in &self.written {
            catch_up.position(topic, *partition, *next);
        }
        self.report_catch_up();
        Ok(())
    }

    fn report_catch_up(&mut self) {
        let Some(catch_up) = &self.catch_up else { return };
        if catch_up.is_done() {
            tracing::info!(store = self.name(), "Redis feed caught up");
            self.catch_up = None;
            self.health.catching_up(None);
        } else {
            self.health.catching_up(Some(catch_up.describe(&self.written)));
        }
    }

    /// Runs `f` until it succeeds, with backoff, reporting each failure to
    /// readiness; the watermarks stay current meanwhile, so the lag shows.
    fn retry<T>(&mut self, what: &str, mut f: impl FnMut(&mut Feed) -> Result<T, RedisError>) -> Result<T, Stopped> {
        let mut backoff = BACKOFF_START;
        let mut watermarks_at: Option<Instant> = None;
        loop {
            match f(self) {
                Ok(v) => {
                    self.health.write(Ok(()));
                    return Ok(v);
                }
                Err(e) => {
                    let store = self.name();
                    tracing::warn!(store, error = %e, "Redis feed cannot {what}; retrying in {backoff:?}");
                    self.health.write(Err(e.to_string()));
                    if watermarks_at.is_none_or(|t| t.elapsed() >= WATERMARKS_EVERY) {
                        self.refresh_watermarks();
                        watermarks_at = Some(Instant::now());
                    }
                    self.sleep(&mut backoff)?;
                }
            }
        }
    }

    fn sleep(&self, backoff: &mut Duration) -> Result<(), Stopped> {
        let stop = self.stop.clone();
        if sleep_unless_stopped(*backoff, &move || stop.load(Ordering::Relaxed)) {
            return Err(Stopped);
        }
        *backoff = (*backoff * 2).min(BACKOFF_MAX);
        Ok(())
    }

    fn refresh_watermarks(&mut self) {
        let (positions, highs) = (&self.positions, &mut self.highs);
        partitions::refresh_highs(&self.consumer, &self.assigned, |t, p, high| {
            positions.high(t, p, high);
            highs.insert((t.to_string(), p), high);
        });
    }

    /// A batch the client cannot read: the partition stuck on it is found
    /// and moved past it, as the in-memory consumer does (which counts the
    /// skip; this feed logs it), so the store is never stuck silently.
    fn undecodable(&mut self, e: &KafkaError) {
        let store = self.writer.spec().name.clone();
        tracing::debug!(store, error = %e, "Redis feed: a batch the client cannot read");
        for (topic, partition, at) in self.stuck.error(&self.next, &self.highs) {
            let high = self.highs.get(&(topic.clone(), partition)).copied().unwrap_or(at);
            match self.stuck.find(&topic, partition, at, high) {
                Found::NotStuck => {}
                Found::Unknown => {
                    let why = format!("{topic}/{partition} is stuck at offset {at} on a batch the client cannot read");
                    tracing::warn!(store, "{why}; still probing for its end");
                }
                Found::Skip(s) => {
                    if let Err(e) = self.consumer.seek(&s.topic, s.partition, Offset::Offset(s.next), METADATA_TIMEOUT)
                    {
                        tracing::warn!(store, error = %e, "cannot seek past an undecodable batch; retrying");
                        continue;
                    }
                    let (first, last) = (s.first, s.next - 1);
                    tracing::warn!(
                        store,
                        topic = s.topic,
                        partition = s.partition,
                        first,
                        last,
                        "Redis feed skipped an undecodable batch"
                    );
                    let next = self.next.entry((s.topic, s.partition)).or_insert(s.next);
                    *next = (*next).max(s.next);
                }
            }
        }
    }
}
