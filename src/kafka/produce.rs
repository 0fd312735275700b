//! Writes that go through Kafka: a route with `writes: kafka` produces its
//! POST, PUT and DELETE to its topic instead of changing the cache, and the
//! cache then applies the record like any other.
//!
//! What this module owns:
//! - [`KafkaWriter`], the shards' handle: a request is handed over a channel
//!   to the `kafka-writer` thread and its answer awaited on a oneshot under
//!   `webservice.limits.write_timeout_ms`, so a shard never blocks on the
//!   registry or the broker.
//! - The writer thread: it looks up the latest schema of `{topic}-value`
//!   and of `{topic}-key` with their references (kept for a short while,
//!   fetched again when a body does not fit), encodes the JSON body as an
//!   Avro datum in Confluent framing (`kafka::encode`), and the key too when
//!   the producers key the topic with Avro, as Confluent's serializers do,
//!   so a write replaces the same compacted key they wrote. It hands both to
//!   an idempotent producer (`acks=all`). The broker's acknowledgement
//!   (partition, offset) comes back through librdkafka's delivery callback,
//!   on the producer's own polling thread.

use super::decode::avro::is_long;
use super::decode::{encode_frame, SchemaType};
use super::encode::encode_json;
use super::registry_client::{RegistryClient, RegistryError};
use super::schemas::SchemaCache;
use crate::config::Config;
use apache_avro::Schema;
use futures_channel::oneshot;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a fetched schema is used before the registry is asked again.
const SCHEMA_TTL: Duration = Duration::from_secs(30);
/// Writes waiting for the writer thread; beyond it a write is refused (503).
const QUEUE: usize = 16 * 1024;

/// Where the broker stored a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The body does not fit the topic's schema: the client's mistake (400).
    #[error("{0}")]
    Invalid(String),
    #[error("cannot get the schema of subject `{subject}`: {error}")]
    Schema { subject: String, error: RegistryError },
    #[error("the schema of subject `{subject}` cannot be used for writes through Kafka: {reason}; register an Avro schema for it")]
    BadSchema { subject: String, reason: String },
    #[error("Kafka did not take the write: {0}; nothing was written, retry")]
    Broker(String),
    #[error("Kafka did not acknowledge the write within {ms} ms; it may or may not be written, retry")]
    Timeout { ms: u64 },
    #[error("the Kafka writer is stopped (the server is shutting down); retry")]
    Stopped,
    #[error("cannot create the Kafka producer: {0} (check kafka.brokers and kafka.properties)")]
    Setup(String),
}

impl WriteError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            WriteError::Invalid(_) => 400,
            _ => 503,
        }
    }
}

type Reply = oneshot::Sender<Result<Position, WriteError>>;

struct Job {
    topic: String,
    key: String,
    /// `None`: a tombstone.
    body: Option<Value>,
    reply: Reply,
}

/// The shards' handle on the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct KafkaWriter {
    jobs: flume::Sender<Job>,
    timeout: Duration,
}

impl KafkaWriter {
    /// Starts the producer and the `kafka-writer` thread.
    pub fn start(config: &Config) -> Result<KafkaWriter, WriteError> {
        let timeout = config.webservice.limits.write_timeout();
        let settings = producer_config(config, timeout);
        let producer = create_producer(&settings)?;
        let registry =
            RegistryClient::new(&config.kafka.schema_registry_url).map_err(|e| WriteError::Setup(e.to_string()))?;
        let (jobs, rx) = flume::bounded(QUEUE);
        std::thread::Builder::new()
            .name("kafka-writer".into())
            .spawn(move || writer_thread(rx, settings, producer, registry))
            .map_err(|e| WriteError::Setup(e.to_string()))?;
        Ok(KafkaWriter { jobs, timeout })
    }

    /// Produces `body` (or a tombstone) under `key` to `topic` and waits,
    /// on a timer, for the broker's acknowledgement.
    pub async fn write(&self, topic: &str, key: &str, body: Option<Value>) -> Result<Position, WriteError> {
        let (reply, rx) = oneshot::channel();
        let job = Job { topic: topic.to_string(), key: key.to_string(), body, reply };
        let ms = self.timeout.as_millis() as u64;
        self.jobs.try_send(job).map_err(|e| match e {
            flume::TrySendError::Full(_) => WriteError::Timeout { ms },
            flume::TrySendError::Disconnected(_) => WriteError::Stopped,
        })?;
        match glommio::timer::timeout(self.timeout, async { Ok(rx.await) }).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(WriteError::Stopped),
            Err(_) => Err(WriteError::Timeout { ms }),
        }
    }
}

/// Idempotent, every in-sync replica acknowledges, sent at once.
fn producer_config(config: &Config, timeout: Duration) -> ClientConfig {
    let k = &config.kafka;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers).set("client.id", "push-cache-writer");
    if let Some(user) = &k.sasl_username {
        c.set("sasl.username", user);
    }
    if let Some(password) = &k.sasl_password {
        c.set("sasl.password", password);
    }
    for (name, value) in k.properties.iter().filter(|(name, _)| !is_consumer_only(name)) {
        c.set(name, value);
    }
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", timeout.as_millis().max(1).to_string());
    c
}

fn create_producer(settings: &ClientConfig) -> Result<ThreadedProducer<Acks>, WriteError> {
    settings.create_with_context(Acks::default()).map_err(|e| WriteError::Setup(e.to_string()))
}

/// An idempotent producer that hit a fatal error (fenced after a broker
/// outage, say) refuses every later write: it is replaced by a new one.
fn usable(producer: ThreadedProducer<Acks>, settings: &ClientConfig) -> ThreadedProducer<Acks> {
    let fenced = producer.context().fenced.load(Ordering::Relaxed);
    let fatal = producer.client().fatal_error();
    if !fenced && fatal.is_none() {
        return producer;
    }
    tracing::error!(?fatal, fenced, "kafka-writer: the producer can no longer write; starting a new one");
    drop(producer);
    loop {
        match create_producer(settings) {
            Ok(p) => return p,
            Err(e) => {
                tracing::error!(%e, "kafka-writer: cannot create a new producer; retrying in 1 s");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Consumer settings in `kafka.properties` that a producer would warn about.
fn is_consumer_only(name: &str) -> bool {
    let consumer = ["isolation.level", "auto.offset.reset", "enable.auto.commit", "fetch.", "group.", "session."];
    consumer.iter().any(|p| name.starts_with(p))
}

/// Sends each acknowledgement (or failure) to the request that waits for it.
#[derive(Default)]
struct Acks {
    /// Set when the broker refused the producer's identity (fenced, epoch or
    /// sequence lost): every later write would fail the same way.
    fenced: AtomicBool,
}

fn is_fencing(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::ProducerFenced
            | C::InvalidProducerEpoch
            | C::OutOfOrderSequenceNumber
            | C::UnknownProducerId
            | C::InvalidProducerIdMapping
            | C::Fatal
    )
}

impl ClientContext for Acks {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => tracing::error!("kafka-writer: {fac}: {log_message}"),
            L::Warning => tracing::warn!("kafka-writer: {fac}: {log_message}"),
            _ => tracing::info!("kafka-writer: {fac}: {log_message}"),
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka-writer: producer error; librdkafka retries by itself");
    }
}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<Reply>;

    fn delivery(&self, result: &DeliveryResult<'_>, reply: Box<Reply>) {
        let answer = match result {
            Ok(m) => Ok(Position { topic: m.topic().to_string(), partition: m.partition(), offset: m.offset() }),
            Err((e, _)) => {
                if e.rdkafka_error_code().is_some_and(is_fencing) {
                    self.fenced.store(true, Ordering::Relaxed);
                }
                Err(WriteError::Broker(e.to_string()))
            }
        };
        let _ = reply.send(answer);
    }
}

/// A subject's latest Avro schema, with the named types its references
/// define, as fetched at `fetched`.
struct Latest {
    id: u32,
    schema: Schema,
    named: Vec<Schema>,
}

/// The latest schemas the writer encodes with, by subject, each kept for
/// `SCHEMA_TTL`. A subject the registry does not have is remembered as
/// `None` for as long: a topic whose keys are plain text has no key subject.
struct LatestSchemas {
    registry: SchemaCache,
    subjects: HashMap<String, (Instant, Option<Arc<Latest>>)>,
}

impl LatestSchemas {
    /// The latest schema of `subject`, asked again when `fresh` or when the
    /// kept one is older than `SCHEMA_TTL`.
    fn get(&mut self, subject: &str, fresh: bool) -> Result<Option<Arc<Latest>>, WriteError> {
        if let Some((at, latest)) = self.subjects.get(subject) {
            if !fresh && at.elapsed() < SCHEMA_TTL {
                return Ok(latest.clone());
            }
        }
        let latest = self.fetch(subject)?.map(Arc::new);
        self.subjects.insert(subject.to_string(), (Instant::now(), latest.clone()));
        Ok(latest)
    }

    fn fetch(&mut self, subject: &str) -> Result<Option<Latest>, WriteError> {
        let failed = |error| WriteError::Schema { subject: subject.to_string(), error };
        let Some((id, registered)) = self.registry.client().latest(subject).map_err(failed)? else {
            return Ok(None);
        };
        let bad = |reason: String| WriteError::BadSchema { subject: subject.to_string(), reason };
        if SchemaType::from_registry(registered.schema_type.as_deref()) != Some(SchemaType::Avro) {
            let kind = registered.schema_type.as_deref().unwrap_or("AVRO");
            return Err(bad(format!("it is a {kind} schema; writes through Kafka encode with Avro")));
        }
        let references = self.registry.references_of(&registered).map_err(failed)?;
        let texts: Vec<&str> = references.iter().map(|(_, text)| text.as_str()).collect();
        let (schema, named) = if texts.is_empty() {
            (Schema::parse_str(&registered.schema).map_err(|e| bad(e.to_string()))?, Vec::new())
        } else {
            Schema::parse_str_with_list(&registered.schema, &texts).map_err(|e| bad(e.to_string()))?
        };
        Ok(Some(Latest { id, schema, named }))
    }
}

fn writer_thread(
    jobs: flume::Receiver<Job>,
    settings: ClientConfig,
    mut producer: ThreadedProducer<Acks>,
    registry: RegistryClient,
) {
    let mut schemas = LatestSchemas { registry: SchemaCache::new(registry), subjects: HashMap::new() };
    while let Ok(job) = jobs.recv() {
        producer = usable(producer, &settings);
        let encoded = encode_key(&mut schemas, &job.topic, &job.key).and_then(|key| {
            let payload = job.body.as_ref().map(|body| encode_value(&mut schemas, &job.topic, body)).transpose()?;
            Ok((key, payload))
        });
        let (key, payload) = match encoded {
            Ok(encoded) => encoded,
            Err(e) => {
                let _ = job.reply.send(Err(e));
                continue;
            }
        };
        let mut record = BaseRecord::with_opaque_to(&job.topic, Box::new(job.reply)).key(&key);
        if let Some(p) = &payload {
            record = record.payload(p);
        }
        if let Err((e, record)) = producer.send(record) {
            let _ = record.delivery_opaque.send(Err(WriteError::Broker(e.to_string())));
        }
    }
    let _ = producer.flush(Duration::from_secs(5));
}

/// Encodes `body` with the latest schema of `{topic}-value`; a body that
/// does not fit a kept schema is tried once more with a fresh one.
fn encode_value(schemas: &mut LatestSchemas, topic: &str, body: &Value) -> Result<Vec<u8>, WriteError> {
    let subject = format!("{topic}-value");
    let missing = || WriteError::BadSchema { subject: subject.clone(), reason: "no schema is registered".into() };
    let latest = schemas.get(&subject, false)?.ok_or_else(missing)?;
    if let Ok(datum) = encode_record(&latest, body) {
        return Ok(encode_frame(latest.id, &datum));
    }
    let latest = schemas.get(&subject, true)?.ok_or_else(missing)?;
    encode_record(&latest, body).map(|datum| encode_frame(latest.id, &datum))
}

fn encode_record(latest: &Latest, body: &Value) -> Result<Vec<u8>, WriteError> {
    if !matches!(latest.schema, Schema::Record(_)) {
        return Err(WriteError::Invalid("the topic's value schema is not a record".into()));
    }
    encode_json(&latest.schema, &latest.named, body).map_err(WriteError::Invalid)
}

/// The key as the topic's producers write it: Avro in Confluent framing when
/// `{topic}-key` has a schema, else the key's UTF-8 bytes.
fn encode_key(schemas: &mut LatestSchemas, topic: &str, key: &str) -> Result<Vec<u8>, WriteError> {
    let Some(latest) = schemas.get(&format!("{topic}-key"), false)? else {
        return Ok(key.as_bytes().to_vec());
    };
    let json = key_json(&latest.schema, key).map_err(WriteError::Invalid)?;
    let datum =
        encode_json(&latest.schema, &latest.named, &json).map_err(|e| WriteError::Invalid(format!("key: {e}")))?;
    Ok(encode_frame(latest.id, &datum))
}

/// What a key's text stands for under its schema: the inverse of how the
/// cache shows keys (`decode::key`). A record of one field holds the text in
/// that field; a record of several is the key's compact JSON text; a number,
/// boolean or null is the value the text spells; anything else is the text.
fn key_json(schema: &Schema, key: &str) -> Result<Value, String> {
    match schema {
        Schema::Record(r) if r.fields.len() == 1 => {
            let field = &r.fields[0];
            Ok(Value::Object([(field.name.clone(), scalar_json(&field.schema, key)?)].into_iter().collect()))
        }
        Schema::Record(_) => {
            serde_json::from_str(key).map_err(|_| format!("key `{key}` is not the JSON object its schema needs"))
        }
        other => scalar_json(other, key),
    }
}

fn scalar_json(schema: &Schema, key: &str) -> Result<Value, String> {
    let spelled = matches!(
        schema,
        Schema::Int
            | Schema::Date
            | Schema::TimeMillis
            | Schema::Float
            | Schema::Double
            | Schema::Boolean
            | Schema::Null
    ) || is_long(schema);
    match schema {
        _ if spelled => {
            serde_json::from_str(key).map_err(|_| format!("key `{key}` is not a value of its schema's type"))
        }
        Schema::Union(_) => Ok(serde_json::from_str(key).unwrap_or_else(|_| Value::String(key.to_string()))),
        _ => Ok(Value::String(key.to_string())),
    }
}
