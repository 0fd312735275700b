//! push-cache-check: compares what a running push-cache serves with what its
//! Kafka topics say it should serve.
//!
//! Why: push-cache is the authoritative read endpoint, so a key it lost, a
//! key it kept after a tombstone, or a stale value is a wrong answer nobody
//! else will catch. This tool replays the configured topics end to end with
//! the service's own pieces (config loading, librdkafka settings, Confluent
//! framing, the Avro decoder, the schema-by-ID cache and the dispatcher that
//! decides which store takes which record type), so its idea of "the last
//! value of every key in every store" is the service's, not a re-implementation.
//! It then asks the service for every expected key, and lists every route's
//! keys to find ones the topics do not have.
//!
//!   push-cache-check --config FILE [--secrets DIR] --url http://127.0.0.1:8080 [--max-diffs N]
//!
//! Exit codes: 0 no differences, 1 differences found, 2 the check could not
//! run (bad arguments or configuration, or Kafka, the schema registry or the
//! service unreachable).
//!
//! Each partition is read until librdkafka reports its end. Records produced
//! while the check runs, and writes made through the API (POST and DELETE
//! change the cache only), show up as differences; run it against a quiet
//! topic, or run it twice and look at what both runs report. If two topics feed one store with the same key, the
//! winner depends on consumption order in the service too, and may differ.

use push_cache::config::{Config, ConfigError, StoreConfig};
use push_cache::http::encode_path_segment as encode_key;
use push_cache::kafka::consumer::client_config;
use push_cache::kafka::dispatch::{Dispatcher, Upsert};
use push_cache::kafka::record::{Decoded, NotDecoded, RecordDecoder};
use push_cache::kafka::registry_client::{RegistryClient, RegistryError};
use push_cache::kafka::schemas::SchemaCache;
use push_cache::kafka::stats::Counters;
use push_cache::placement::ShardQueues;
use push_cache::runtime::shard::Change;
use push_cache::runtime::IngestBatch;
use push_cache::store::entry::Entry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: push-cache-check --config FILE [--secrets DIR] --url BASE_URL [--max-diffs N]";
/// Differences printed unless `--max-diffs` says otherwise (all are counted).
const DEFAULT_MAX_DIFFS: usize = 50;
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Give up reading when no partition made progress for this long.
const STALL_LIMIT: Duration = Duration::from_secs(60);
/// How long an unreachable schema registry is retried before giving up.
const REGISTRY_LIMIT: Duration = Duration::from_secs(60);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Records between moves of the dispatcher's batches into the maps.
const DRAIN_EVERY: u64 = 4096;
/// Undecodable records named one by one on stderr (all are counted).
const NOTES: usize = 20;
const POLL: Duration = Duration::from_millis(100);
/// Characters of a value shown in a difference.
const SNIPPET: usize = 60;

/// Why the check could not run. Every variant exits with code 2.
#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error("{0}\n{USAGE}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("Kafka: {what}: {source}; check kafka.brokers, kafka.topic and kafka.properties")]
    Kafka { what: String, source: KafkaError },
    #[error("Kafka: no progress for {limit}s ({0}); is the broker up and the topic readable?", limit = STALL_LIMIT.as_secs())]
    Stalled(String),
    #[error("Kafka: topic `{0}` has no partitions; check that it exists and that kafka.topic names it")]
    NoTopic(String),
    #[error("schema registry: {0}")]
    Registry(String),
    #[error("service at {url}: {reason}; check --url and that push-cache is running")]
    Service { url: String, reason: String },
}

fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> CheckError {
    let what = what.into();
    move |source| CheckError::Kafka { what, source }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("push-cache-check: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs the whole check; returns the number of differences.
fn run(args: &[String]) -> Result<usize, CheckError> {
    let opts = Options::parse(args)?;
    let config = Config::load(&opts.config, Some(&opts.secrets))?;
    let service = Service::new(&opts.url)?;
    service.warn_unless_ready()?;
    let replay = replay_topics(&config)?;
    let mut report = Report::new(opts.max_diffs);
    for route in &config.cache.routes {
        let store = config
            .cache
            .stores
            .iter()
            .position(|s| s.name() == route.store)
            .expect("routes are validated against stores");
        let full_path = format!("{}{}", config.webservice.prefix, route.path);
        compare_route(&service, &full_path, &replay.stores[store], &mut report)?;
    }
    println!("{}", report.summary(&replay, config.cache.routes.len()));
    Ok(report.total())
}

/// Command-line options.
#[derive(Debug, PartialEq)]
struct Options {
    config: PathBuf,
    secrets: PathBuf,
    url: String,
    max_diffs: usize,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, CheckError> {
        let (mut config, mut secrets, mut url, mut max_diffs) =
            (None, PathBuf::from("secrets"), None, DEFAULT_MAX_DIFFS);
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n, v.to_string()),
                None => (
                    flag.as_str(),
                    it.next().cloned().ok_or_else(|| CheckError::Usage(format!("{flag} needs a value")))?,
                ),
            };
            match name {
                "--config" | "-c" => config = Some(PathBuf::from(value)),
                "--secrets" | "-s" => secrets = PathBuf::from(value),
                "--url" => url = Some(value.trim_end_matches('/').to_string()),
                "--max-diffs" => {
                    max_diffs = value
                        .parse()
                        .map_err(|_| CheckError::Usage(format!("--max-diffs expects a number, found `{value}`")))?
                }
                _ => return Err(CheckError::Usage(format!("unknown argument `{name}`"))),
            }
        }
        let config = config.ok_or_else(|| CheckError::Usage("--config FILE is required".into()))?;
        let url =
            url.ok_or_else(|| CheckError::Usage("--url BASE_URL is required (e.g. http://127.0.0.1:8080)".into()))?;
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(CheckError::Usage(format!("--url expects http://HOST:PORT, found `{url}`")));
        }
        Ok(Options { config, secrets, url, max_diffs })
    }
}

// ---------------------------------------------------------------------------
// Reading the topics

/// What the topics say each store should hold.
struct Replay {
    /// Indexed like `cache.stores`: key -> entry (body and ETag).
    stores: Vec<BTreeMap<String, Entry>>,
    records: u64,
    counters: Counters,
}

/// Reads every partition of the configured topics from the beginning to its
/// end, applying records as the service does. One topic at a time, each with
/// its own consumer, so librdkafka's end-of-partition event (which names only
/// the partition) is exact.
fn replay_topics(config: &Config) -> Result<Replay, CheckError> {
    let mut replayer = Replayer::new(config)?;
    for topic in config.kafka.topic.names() {
        replay_topic(config, &topic, &mut replayer)?;
    }
    Ok(replayer.finish())
}

/// Reads one topic until every partition reported its end.
///
/// The end is librdkafka's end-of-partition event rather than the high
/// watermark queried at start: that event also steps over compacted gaps and
/// transaction markers, and some brokers answer the watermark query wrongly
/// (tansu 0.6 reports the last batch's base offset + 1).
fn replay_topic(config: &Config, topic: &str, replayer: &mut Replayer) -> Result<(), CheckError> {
    let consumer = checker_consumer(config)?;
    let mut behind = assign_topic(&consumer, topic)?;
    let mut last_progress = Instant::now();
    while !behind.is_empty() {
        match consumer.poll(POLL) {
            Some(Ok(msg)) => {
                let (partition, offset) = (msg.partition(), msg.offset());
                // A partition already at its end: this record arrived after the start.
                let Some(next) = behind.get_mut(&partition) else { continue };
                *next = offset + 1;
                replayer.record(topic, partition, offset, msg.key(), msg.payload())?;
                last_progress = Instant::now();
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                behind.remove(&p);
                last_progress = Instant::now();
            }
            Some(Err(e)) => eprintln!("push-cache-check: Kafka consumer error on `{topic}` (librdkafka retries): {e}"),
            None => {}
        }
        if last_progress.elapsed() > STALL_LIMIT {
            return Err(CheckError::Stalled(describe_behind(topic, &behind)));
        }
    }
    Ok(())
}

/// librdkafka settings of the service, minus anything that would touch the
/// service's consumer group (the checker never commits offsets), plus the
/// end-of-partition events the checker stops on.
fn checker_consumer(config: &Config) -> Result<BaseConsumer, CheckError> {
    let mut c = client_config(config);
    c.set("client.id", "push-cache-check").set("enable.auto.commit", "false").set("enable.partition.eof", "true");
    c.create().map_err(kafka("cannot create the consumer"))
}

/// Assigns every partition of `topic` from the beginning. Returns the
/// partitions with records to read, each with the next offset (for messages).
fn assign_topic(consumer: &BaseConsumer, topic: &str) -> Result<BTreeMap<i32, i64>, CheckError> {
    let md = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(kafka(format!("cannot read metadata of `{topic}`")))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(CheckError::NoTopic(topic.to_string()));
    }
    let mut behind = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, METADATA_TIMEOUT)
            .map_err(kafka(format!("cannot read watermarks of {topic}/{p}")))?;
        if high > low {
            behind.insert(p, low);
        }
        tpl.add_partition_offset(topic, p, Offset::Beginning).map_err(kafka("cannot build the assignment"))?;
    }
    consumer.assign(&tpl).map_err(kafka(format!("cannot assign the partitions of `{topic}`")))?;
    Ok(behind)
}

fn describe_behind(topic: &str, behind: &BTreeMap<i32, i64>) -> String {
    let parts: Vec<String> = behind.iter().take(5).map(|(p, next)| format!("{topic}/{p} at offset {next}")).collect();
    let more = if behind.len() > 5 { format!(" and {} more", behind.len() - 5) } else { String::new() };
    format!("{} partitions not at their end: {}{more}", behind.len(), parts.join(", "))
}

/// What became of one record.
enum Outcome {
    Applied,
    /// Not usable; the service skips it for the same reason (a metrics label).
    Skipped(&'static str),
}

/// Applies records the way the service's consumer does (see
/// `kafka::consumer::handle_record`), into plain maps instead of shards.
struct Replayer {
    decoder: RecordDecoder,
    dispatcher: Dispatcher,
    /// The dispatcher's one "shard": batches of changes, in order.
    changes: flume::Receiver<IngestBatch>,
    stores: Vec<BTreeMap<String, Entry>>,
    counters: Counters,
    records: u64,
}

impl Replayer {
    fn new(config: &Config) -> Result<Replayer, CheckError> {
        let client =
            RegistryClient::new(&config.kafka.schema_registry_url).map_err(|e| CheckError::Registry(e.to_string()))?;
        let (tx, changes) = flume::unbounded();
        let stores = as_memory_stores(&config.cache.stores);
        let maps = stores.iter().map(|_| BTreeMap::new()).collect();
        let decoder = RecordDecoder::new(SchemaCache::new(client)).with_key_format(config.kafka.key_format);
        let dispatcher = Dispatcher::new(stores, ShardQueues::Partitioned(vec![tx]));
        Ok(Replayer { decoder, dispatcher, changes, stores: maps, counters: Counters::default(), records: 0 })
    }

    fn record(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) -> Result<(), CheckError> {
        self.records += 1;
        if let Outcome::Skipped(reason) = self.apply(topic, key, payload)? {
            self.skip(topic, partition, offset, reason);
        }
        if self.records.is_multiple_of(DRAIN_EVERY) {
            self.drain();
        }
        Ok(())
    }

    /// One record through the service's own decoder and the dispatcher.
    fn apply(&mut self, topic: &str, key: Option<&[u8]>, payload: Option<&[u8]>) -> Result<Outcome, CheckError> {
        let give_up = Instant::now() + REGISTRY_LIMIT;
        let mut last: Option<String> = None;
        let mut waiting = |e: Option<&RegistryError>, _: &mut _| last = e.map(ToString::to_string);
        let decoded =
            self.decoder.decode_parts(key, payload, &mut self.counters, &|| Instant::now() > give_up, &mut waiting);
        match decoded {
            Ok(Decoded::Tombstone { key }) => {
                self.dispatcher.tombstone(topic, &key).expect("the checker's channel is unbounded and open");
                self.counters.tombstones += 1;
            }
            Ok(Decoded::Upsert { key, record_type, value }) => {
                match self.dispatcher.upsert(topic, &record_type, &key, &value) {
                    Ok(_) => self.counters.applied(&record_type),
                    Err(Upsert::TooLong(_)) => return Ok(Outcome::Skipped("key_too_long")),
                    Err(Upsert::Gone(_)) => unreachable!("the checker's channel is unbounded and open"),
                }
            }
            Err(NotDecoded::Skip(reason)) => return Ok(Outcome::Skipped(reason)),
            Err(NotDecoded::Stopped) => {
                return Err(CheckError::Registry(format!(
                    "gave up after {}s: {}",
                    REGISTRY_LIMIT.as_secs(),
                    last.unwrap_or_else(|| "no answer".into())
                )))
            }
        }
        Ok(Outcome::Applied)
    }

    fn skip(&mut self, topic: &str, partition: i32, offset: i64, reason: &'static str) {
        self.counters.skipped(reason);
        let skipped: u64 = self.counters.skipped.values().sum();
        if skipped <= NOTES as u64 {
            eprintln!("push-cache-check: note: undecodable record {topic}/{partition}@{offset}: {reason} (the service skips it too)");
        }
    }

    /// Flushes the dispatcher and applies its batches to the maps.
    fn drain(&mut self) {
        self.dispatcher.flush().expect("the checker's channel is unbounded and open");
        for (store, change) in self.changes.try_iter().flatten() {
            match change {
                Change::Upsert(entry) => {
                    self.stores[store].insert(entry.key_str().to_string(), entry);
                }
                Change::InsertNew(entry) => {
                    self.stores[store].entry(entry.key_str().to_string()).or_insert(entry);
                }
                Change::Delete(key) => {
                    self.stores[store].remove(std::str::from_utf8(&key).unwrap_or(""));
                }
            }
        }
    }

    fn finish(mut self) -> Replay {
        self.drain();
        Replay { stores: self.stores, records: self.records, counters: self.counters }
    }
}

/// The dispatcher routes only to in-memory stores; seen as
/// in-memory stores with the same names and `schemas`, every store takes
/// exactly the record types it takes in the service.
fn as_memory_stores(stores: &[StoreConfig]) -> Vec<StoreConfig> {
    stores
        .iter()
        .map(|s| StoreConfig::InMemory {
            name: s.name().to_string(),
            schemas: s.schemas().to_vec(),
            fields: s.fields().to_vec(),
            compression: None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Asking the service

/// A keep-alive HTTP/1.1 client for one push-cache instance.
struct Service {
    http: reqwest::blocking::Client,
    base: String,
}

/// One answer: status, ETag and body.
struct Answer {
    status: u16,
    etag: Option<String>,
    body: Vec<u8>,
}

impl Service {
    fn new(base: &str) -> Result<Service, CheckError> {
        let http = reqwest::blocking::Client::builder().timeout(HTTP_TIMEOUT).build().map_err(|e| {
            CheckError::Service { url: base.to_string(), reason: format!("cannot set up the HTTP client: {e}") }
        })?;
        Ok(Service { http, base: base.to_string() })
    }

    fn get(&self, path: &str) -> Result<Answer, CheckError> {
        let url = format!("{}{path}", self.base);
        let failed = |e: reqwest::Error| CheckError::Service { url: url.clone(), reason: e.to_string() };
        let resp = self.http.get(&url).send().map_err(failed)?;
        let status = resp.status().as_u16();
        let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = resp.bytes().map_err(failed)?.to_vec();
        Ok(Answer { status, etag, body })
    }

    /// A service still catching up differs from the topics; say so up front.
    fn warn_unless_ready(&self) -> Result<(), CheckError> {
        let ready = self.get("/health/ready")?;
        if ready.status != 200 {
            eprintln!(
                "push-cache-check: warning: the service is not ready ({}): differences may only mean it is still catching up",
                String::from_utf8_lossy(&ready.body)
            );
        }
        Ok(())
    }

    /// Every key a route serves (`GET {route}` lists them all).
    fn keys(&self, full_path: &str) -> Result<BTreeSet<String>, CheckError> {
        let answer = self.get(full_path)?;
        let bad = |reason: String| CheckError::Service { url: format!("{}{full_path}", self.base), reason };
        if answer.status != 200 {
            return Err(bad(format!(
                "listing keys answered HTTP {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )));
        }
        serde_json::from_slice(&answer.body)
            .map_err(|e| bad(format!("the key listing is not a JSON array of strings: {e}")))
    }
}

// ---------------------------------------------------------------------------
// Comparing

/// One way the service disagrees with the topics.
#[derive(Debug, PartialEq)]
enum Diff {
    /// The topics have the key; the service answers 404.
    Missing { path: String },
    /// The service lists the key; the topics do not have it.
    Extra { path: String },
    /// Both have it, with different content (or the GET failed).
    Different { path: String, detail: String },
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diff::Missing { path } => write!(f, "missing   {path}  (in the topic; the service answers 404)"),
            Diff::Extra { path } => write!(f, "extra     {path}  (served; not in the topic)"),
            Diff::Different { path, detail } => write!(f, "different {path}  {detail}"),
        }
    }
}

/// Compares one route: GETs every expected key, lists the served ones.
fn compare_route(
    service: &Service,
    full_path: &str,
    expected: &BTreeMap<String, Entry>,
    report: &mut Report,
) -> Result<(), CheckError> {
    let served = service.keys(full_path)?;
    for (key, entry) in expected {
        let path = format!("{full_path}/{}", encode_key(key));
        let answer = service.get(&path)?;
        if let Some(diff) = compare_answer(path, entry, &answer) {
            report.add(diff);
        }
    }
    for key in served.iter().filter(|k| !expected.contains_key(*k)) {
        report.add(Diff::Extra { path: format!("{full_path}/{}", encode_key(key)) });
    }
    Ok(())
}

fn compare_answer(path: String, entry: &Entry, answer: &Answer) -> Option<Diff> {
    match answer.status {
        200 if answer.body != entry.body() => {
            Some(Diff::Different { path, detail: body_difference(entry.body(), &answer.body) })
        }
        200 if answer.etag.as_deref().map(str::as_bytes) != Some(&*entry.etag()) => Some(Diff::Different {
            path,
            detail: format!(
                "ETag: expected {}, got {}",
                String::from_utf8_lossy(&entry.etag()),
                answer.etag.as_deref().unwrap_or("none")
            ),
        }),
        200 => None,
        404 => Some(Diff::Missing { path }),
        status => Some(Diff::Different {
            path,
            detail: format!("HTTP {status}: {}", snippet(&String::from_utf8_lossy(&answer.body))),
        }),
    }
}

/// A short description of how two JSON bodies differ: the first few
/// differing fields of an object, else the first differing bytes.
fn body_difference(expected: &[u8], got: &[u8]) -> String {
    let parsed =
        (serde_json::from_slice::<serde_json::Value>(expected), serde_json::from_slice::<serde_json::Value>(got));
    if let (Ok(serde_json::Value::Object(want)), Ok(serde_json::Value::Object(have))) = parsed {
        let fields = field_differences(&want, &have);
        if !fields.is_empty() {
            return fields;
        }
    }
    byte_difference(expected, got)
}

fn field_differences(
    want: &serde_json::Map<String, serde_json::Value>,
    have: &serde_json::Map<String, serde_json::Value>,
) -> String {
    let show = |v: Option<&serde_json::Value>| v.map_or("(absent)".to_string(), |v| snippet(&v.to_string()));
    let names: BTreeSet<&String> = want.keys().chain(have.keys()).collect();
    let differing: Vec<String> = names
        .into_iter()
        .filter(|n| want.get(*n) != have.get(*n))
        .map(|n| format!("{n}: expected {}, got {}", show(want.get(n)), show(have.get(n))))
        .collect();
    match differing.len() {
        0..=3 => differing.join("; "),
        n => format!("{}; and {} more fields", differing[..3].join("; "), n - 3),
    }
}

fn byte_difference(expected: &[u8], got: &[u8]) -> String {
    let at = expected.iter().zip(got).position(|(a, b)| a != b).unwrap_or(expected.len().min(got.len()));
    let around = |b: &[u8]| snippet(&String::from_utf8_lossy(&b[at.saturating_sub(20).min(b.len())..]));
    format!("bodies differ at byte {at}: expected …{}, got …{}", around(expected), around(got))
}

fn snippet(text: &str) -> String {
    match text.char_indices().nth(SNIPPET) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Differences found so far: all counted, the first `max` printed as found.
struct Report {
    max: usize,
    missing: usize,
    extra: usize,
    different: usize,
}

impl Report {
    fn new(max: usize) -> Report {
        Report { max, missing: 0, extra: 0, different: 0 }
    }

    fn add(&mut self, diff: Diff) {
        if self.total() < self.max {
            println!("{diff}");
        }
        match diff {
            Diff::Missing { .. } => self.missing += 1,
            Diff::Extra { .. } => self.extra += 1,
            Diff::Different { .. } => self.different += 1,
        }
    }

    fn total(&self) -> usize {
        self.missing + self.extra + self.different
    }

    fn summary(&self, replay: &Replay, routes: usize) -> String {
        let expected: usize = replay.stores.iter().map(BTreeMap::len).sum();
        let skipped: u64 = replay.counters.skipped.values().sum();
        let reasons: Vec<String> = replay.counters.skipped.iter().map(|(r, n)| format!("{n} {r}")).collect();
        let hidden = self.total().saturating_sub(self.max);
        let more = if hidden > 0 { format!(" ({hidden} not shown; raise --max-diffs)") } else { String::new() };
        format!(
            "{} differences: {} missing, {} extra, {} different{more}; {routes} routes, {expected} keys expected from {} records ({} tombstones, {skipped} undecodable{})",
            self.total(),
            self.missing,
            self.extra,
            self.different,
            replay.records,
            replay.counters.tombstones,
            if reasons.is_empty() { String::new() } else { format!(": {}", reasons.join(", ")) },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn options_parse_and_require_config_and_url() {
        let o = Options::parse(&args("--config c.yaml --url http://h:1/ --max-diffs=3")).unwrap();
        assert_eq!(
            o,
            Options { config: "c.yaml".into(), secrets: "secrets".into(), url: "http://h:1".into(), max_diffs: 3 }
        );
        assert!(matches!(Options::parse(&args("--url http://h")), Err(CheckError::Usage(m)) if m.contains("--config")));
        assert!(matches!(Options::parse(&args("--config c")), Err(CheckError::Usage(m)) if m.contains("--url")));
        assert!(matches!(Options::parse(&args("--config c --url h:1")), Err(CheckError::Usage(_))));
        assert!(
            matches!(Options::parse(&args("--config c --url http://h --bogus 1")), Err(CheckError::Usage(m)) if m.contains("--bogus"))
        );
        assert!(matches!(Options::parse(&args("--config")), Err(CheckError::Usage(_))));
    }

    #[test]
    fn differences_name_fields_or_bytes() {
        let d = body_difference(br#"{"a":1,"b":"x","c":true}"#, br#"{"a":1,"b":"y","d":null}"#);
        assert_eq!(d, r#"b: expected "x", got "y"; c: expected true, got (absent); d: expected (absent), got null"#);
        let d = body_difference(br#"{"a":1,"b":2}"#, br#"{"b":2,"a":1}"#);
        assert!(d.starts_with("bodies differ at byte 2"), "{d}");
        assert_eq!(body_difference(b"abc", b"abd"), "bodies differ at byte 2: expected …abc, got …abd");
        assert_eq!(body_difference(b"ab", b"abc"), "bodies differ at byte 2: expected …ab, got …abc");
    }

    #[test]
    fn answers_compare_status_body_and_etag() {
        let entry = Entry::from_parts(b"k", b"\"7\"", b"{}").unwrap();
        let answer = |status, etag: &str, body: &[u8]| Answer { status, etag: Some(etag.into()), body: body.to_vec() };
        assert_eq!(compare_answer("/p".into(), &entry, &answer(200, "\"7\"", b"{}")), None);
        assert_eq!(
            compare_answer("/p".into(), &entry, &answer(404, "", b"")),
            Some(Diff::Missing { path: "/p".into() })
        );
        assert!(
            matches!(compare_answer("/p".into(), &entry, &answer(200, "\"8\"", b"{}")), Some(Diff::Different { detail, .. }) if detail.contains("ETag"))
        );
        assert!(
            matches!(compare_answer("/p".into(), &entry, &answer(503, "", b"down")), Some(Diff::Different { detail, .. }) if detail.contains("503"))
        );
    }

    #[test]
    fn keys_are_percent_encoded() {
        assert_eq!(encode_key("acct-1_a.b~"), "acct-1_a.b~");
        assert_eq!(encode_key("a b/é"), "a%20b%2F%C3%A9");
    }

    #[test]
    fn stores_keep_their_accepted_types_as_memory_stores() {
        let redis = StoreConfig::Redis {
            name: "t".into(),
            url: Some("redis://x".into()),
            cluster_nodes: vec![],
            prefix: None,
            schemas: vec!["ticket".into()],
            fields: Vec::new(),
            timeout_ms: 1,
        };
        let stores = as_memory_stores(&[redis]);
        assert!(matches!(&stores[0], StoreConfig::InMemory { name, .. } if name == "t"));
        assert!(stores[0].accepts("ticket") && !stores[0].accepts("customer"));
    }
}
