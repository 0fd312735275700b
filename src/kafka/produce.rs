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
//!   (kept for a short while, fetched again when a body does not fit it),
//!   encodes the JSON body as an Avro datum in Confluent framing and hands it
//!   to an idempotent producer (`acks=all`). The broker's acknowledgement
//!   (partition, offset) comes back through librdkafka's delivery callback,
//!   on the producer's own polling thread.
//! - [`encode_json`]: JSON to Avro by the schema, the inverse of what the
//!   cache serves: unions take the first branch the value fits, decimals
//!   come from strings of digits, bytes and fixed from base64, uuids from
//!   text, dates and timestamps from numbers. A value that does not fit names
//!   its field.

use super::decode::encode_frame;
use super::registry_client::{RegistryClient, RegistryError};
use crate::config::Config;
use crate::kafka::decode::avro::is_long;
use apache_avro::schema::{InnerDecimalSchema, Name, RecordSchema, UuidSchema};
use apache_avro::Schema;
use base64::Engine as _;
use futures_channel::oneshot;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
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
    #[error("the schema of subject `{subject}` cannot be used: {reason}; register an Avro record schema for it")]
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

/// A subject's latest schema, as fetched at `fetched`.
struct Latest {
    id: u32,
    schema: Schema,
    fetched: Instant,
}

fn writer_thread(
    jobs: flume::Receiver<Job>,
    settings: ClientConfig,
    mut producer: ThreadedProducer<Acks>,
    registry: RegistryClient,
) {
    let mut schemas: HashMap<String, Latest> = HashMap::new();
    while let Ok(job) = jobs.recv() {
        producer = usable(producer, &settings);
        let payload = match &job.body {
            None => None,
            Some(body) => match encode_body(&registry, &mut schemas, &job.topic, body) {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                    continue;
                }
            },
        };
        let mut record = BaseRecord::with_opaque_to(&job.topic, Box::new(job.reply)).key(job.key.as_bytes());
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
/// does not fit a cached schema is tried once more with a fresh one.
fn encode_body(
    registry: &RegistryClient,
    schemas: &mut HashMap<String, Latest>,
    topic: &str,
    body: &Value,
) -> Result<Vec<u8>, WriteError> {
    let subject = format!("{topic}-value");
    let fresh = |s: &Latest| s.fetched.elapsed() < SCHEMA_TTL;
    if let Some(latest) = schemas.get(&subject).filter(|s| fresh(s)) {
        if let Ok(datum) = encode_json(&latest.schema, body) {
            return Ok(encode_frame(latest.id, &datum));
        }
    }
    let latest = fetch_latest(registry, &subject)?;
    let result = encode_json(&latest.schema, body).map(|datum| encode_frame(latest.id, &datum));
    schemas.insert(subject, latest);
    result.map_err(WriteError::Invalid)
}

fn fetch_latest(registry: &RegistryClient, subject: &str) -> Result<Latest, WriteError> {
    let (id, text) =
        registry.latest(subject).map_err(|error| WriteError::Schema { subject: subject.to_string(), error })?;
    let schema = Schema::parse_str(&text)
        .map_err(|e| WriteError::BadSchema { subject: subject.to_string(), reason: e.to_string() })?;
    if !matches!(schema, Schema::Record(_)) {
        let reason = "it is not a record".to_string();
        return Err(WriteError::BadSchema { subject: subject.to_string(), reason });
    }
    Ok(Latest { id, schema, fetched: Instant::now() })
}

/// The Avro binary datum of `json` written with `schema` (a record). The
/// error names the field that does not fit: ``field `name`: expected string, got number``.
pub fn encode_json(schema: &Schema, json: &Value) -> Result<Vec<u8>, String> {
    let mut names = HashMap::new();
    collect_names(schema, &mut names);
    let mut out = Vec::with_capacity(256);
    Encoder { names: &names, depth: 0 }.value(schema, json, &mut Path::default(), &mut out)?;
    Ok(out)
}

fn collect_names<'s>(s: &'s Schema, names: &mut HashMap<Name, &'s Schema>) {
    match s {
        Schema::Record(r) if names.insert(r.name.clone(), s).is_none() => {
            r.fields.iter().for_each(|f| collect_names(&f.schema, names));
        }
        Schema::Enum(e) => drop(names.insert(e.name.clone(), s)),
        Schema::Fixed(f) => drop(names.insert(f.name.clone(), s)),
        Schema::Array(a) => collect_names(&a.items, names),
        Schema::Map(m) => collect_names(&m.types, names),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect_names(v, names)),
        _ => {}
    }
}

/// Where in the body a value sits, for error messages (`payments[1].amount`).
#[derive(Default)]
struct Path(String);

impl Path {
    fn fail<T>(&self, reason: String) -> Result<T, String> {
        match self.0.is_empty() {
            true => Err(format!("body: {reason}")),
            false => Err(format!("field `{}`: {reason}", self.0)),
        }
    }

    fn with<T>(&mut self, part: &str, f: impl FnOnce(&mut Path) -> T) -> T {
        let len = self.0.len();
        if !self.0.is_empty() && !part.starts_with('[') {
            self.0.push('.');
        }
        self.0.push_str(part);
        let result = f(self);
        self.0.truncate(len);
        result
    }
}

/// Deepest nesting accepted (recursive schemas meet hostile bodies).
const MAX_DEPTH: usize = 64;

struct Encoder<'s> {
    names: &'s HashMap<Name, &'s Schema>,
    depth: usize,
}

impl Encoder<'_> {
    fn value(&mut self, s: &Schema, v: &Value, path: &mut Path, out: &mut Vec<u8>) -> Result<(), String> {
        if self.depth > MAX_DEPTH {
            return path.fail(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        self.depth += 1;
        let result = self.value_at_depth(s, v, path, out);
        self.depth -= 1;
        result
    }

    fn value_at_depth(&mut self, s: &Schema, v: &Value, path: &mut Path, out: &mut Vec<u8>) -> Result<(), String> {
        let wrong = |expected: &str| path.fail(format!("expected {expected}, got {}", kind(v)));
        match (s, v) {
            (Schema::Null, Value::Null) => Ok(()),
            (Schema::Boolean, Value::Bool(b)) => {
                out.push(*b as u8);
                Ok(())
            }
            (Schema::Int | Schema::Date | Schema::TimeMillis, Value::Number(n)) => {
                match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
                    Some(i) => {
                        write_long(i64::from(i), out);
                        Ok(())
                    }
                    None => wrong("a 32-bit integer"),
                }
            }
            (s, Value::Number(n)) if is_long(s) => match n.as_i64() {
                Some(i) => {
                    write_long(i, out);
                    Ok(())
                }
                None => wrong("a 64-bit integer"),
            },
            (Schema::Float, Value::Number(n)) => {
                out.extend((n.as_f64().unwrap_or(0.0) as f32).to_le_bytes());
                Ok(())
            }
            (Schema::Double, Value::Number(n)) => {
                out.extend(n.as_f64().unwrap_or(0.0).to_le_bytes());
                Ok(())
            }
            (Schema::String, Value::String(t)) => {
                write_bytes(t.as_bytes(), out);
                Ok(())
            }
            (Schema::Uuid(kind), Value::String(t)) => match (parse_uuid(t), kind) {
                (None, _) => wrong("a uuid like 123e4567-e89b-12d3-a456-426614174000"),
                (Some(_), UuidSchema::String) => {
                    write_bytes(t.as_bytes(), out);
                    Ok(())
                }
                (Some(b), UuidSchema::Bytes) => {
                    write_bytes(&b, out);
                    Ok(())
                }
                (Some(b), UuidSchema::Fixed(_)) => {
                    out.extend(b);
                    Ok(())
                }
            },
            (Schema::Bytes, Value::String(t)) => match base64_decode(t) {
                Some(b) => {
                    write_bytes(&b, out);
                    Ok(())
                }
                None => wrong("base64 bytes"),
            },
            (Schema::Fixed(f), Value::String(t)) => match base64_decode(t).filter(|b| b.len() == f.size) {
                Some(b) => {
                    out.extend(b);
                    Ok(())
                }
                None => wrong(&format!("base64 of exactly {} bytes", f.size)),
            },
            (Schema::Decimal(d), Value::String(t)) => {
                let size = match &d.inner {
                    InnerDecimalSchema::Bytes => None,
                    InnerDecimalSchema::Fixed(f) => Some(f.size),
                };
                match decimal_bytes(t, d.scale, size) {
                    Ok(b) if size.is_some() => {
                        out.extend(b);
                        Ok(())
                    }
                    Ok(b) => {
                        write_bytes(&b, out);
                        Ok(())
                    }
                    Err(reason) => path.fail(reason),
                }
            }
            (Schema::Enum(e), Value::String(t)) => match e.symbols.iter().position(|s| s == t) {
                Some(i) => {
                    write_long(i as i64, out);
                    Ok(())
                }
                None => wrong(&format!("one of {}", e.symbols.join(", "))),
            },
            (Schema::Array(a), Value::Array(items)) => {
                if !items.is_empty() {
                    write_long(items.len() as i64, out);
                    for (i, item) in items.iter().enumerate() {
                        path.with(&format!("[{i}]"), |p| self.value(&a.items, item, p, out))?;
                    }
                }
                out.push(0);
                Ok(())
            }
            (Schema::Map(m), Value::Object(entries)) => {
                if !entries.is_empty() {
                    write_long(entries.len() as i64, out);
                    for (k, item) in entries {
                        write_bytes(k.as_bytes(), out);
                        path.with(k, |p| self.value(&m.types, item, p, out))?;
                    }
                }
                out.push(0);
                Ok(())
            }
            (Schema::Record(r), Value::Object(_)) => self.record(r, v, path, out),
            (Schema::Union(u), _) => self.union(u.variants(), v, path, out),
            (Schema::Ref { name }, _) => match self.names.get(name) {
                Some(named) => self.value(named, v, path, out),
                None => path.fail(format!("the schema names an unknown type {name:?}")),
            },
            (Schema::BigDecimal | Schema::Duration(_), _) => path.fail("this Avro type cannot be written yet".into()),
            _ => wrong(expected_kind(s)),
        }
    }

    /// The first branch the value fits, as its index and its encoding.
    fn union(&mut self, variants: &[Schema], v: &Value, path: &mut Path, out: &mut Vec<u8>) -> Result<(), String> {
        // The error of the first branch of the value's JSON kind says what
        // inside it does not fit; without one, the kinds are listed.
        let mut same_kind_error = None;
        for (i, branch) in variants.iter().enumerate() {
            let mut datum = Vec::new();
            match self.value(branch, v, path, &mut datum) {
                Ok(()) => {
                    write_long(i as i64, out);
                    out.extend(datum);
                    return Ok(());
                }
                Err(e) if same_kind_error.is_none() && self.same_kind(branch, v) => same_kind_error = Some(e),
                Err(_) => {}
            }
        }
        if let Some(e) = same_kind_error {
            return Err(e);
        }
        let expected: Vec<&str> = variants.iter().map(expected_kind).collect();
        path.fail(format!("expected {}, got {}", expected.join(" or "), kind(v)))
    }

    /// Fields in schema order; an absent field takes its default, or null
    /// when it may be null; a field the schema does not have is an error.
    fn record(&mut self, r: &RecordSchema, v: &Value, path: &mut Path, out: &mut Vec<u8>) -> Result<(), String> {
        let Value::Object(map) = v else {
            return path.fail(format!("expected an object, got {}", kind(v)));
        };
        if let Some(extra) = map.keys().find(|k| !r.fields.iter().any(|f| &f.name == *k)) {
            return path.with(extra, |p| p.fail(format!("not in the schema of `{}`", r.name.name())));
        }
        for f in &r.fields {
            let value = match map.get(&f.name).or(f.default.as_ref()) {
                Some(value) => value,
                None if self.nullable(&f.schema) => &Value::Null,
                None => return path.with(&f.name, |p| p.fail("missing".into())),
            };
            path.with(&f.name, |p| self.value(&f.schema, value, p, out))?;
        }
        Ok(())
    }

    /// Whether `v` has the JSON kind `s` is written from (its content may still misfit).
    fn same_kind(&self, s: &Schema, v: &Value) -> bool {
        match (s, v) {
            (Schema::Ref { name }, _) => self.names.get(name).is_some_and(|named| self.same_kind(named, v)),
            (Schema::Record(_) | Schema::Map(_), Value::Object(_)) | (Schema::Array(_), Value::Array(_)) => true,
            (Schema::Null, Value::Null) | (Schema::Boolean, Value::Bool(_)) => true,
            (Schema::Int | Schema::Date | Schema::TimeMillis | Schema::Float | Schema::Double, Value::Number(_)) => {
                true
            }
            (s, Value::Number(_)) => is_long(s),
            (s, Value::String(_)) => matches!(expected_kind(s), "string" | "base64 string" | "decimal string"),
            _ => false,
        }
    }

    fn nullable(&self, s: &Schema) -> bool {
        match s {
            Schema::Null => true,
            Schema::Union(u) => u.variants().iter().any(|v| matches!(v, Schema::Null)),
            _ => false,
        }
    }
}

/// How the JSON of an Avro type looks, for error messages.
fn expected_kind(s: &Schema) -> &'static str {
    match s {
        Schema::Null => "null",
        Schema::Boolean => "boolean",
        Schema::Int | Schema::Date | Schema::TimeMillis => "a 32-bit integer",
        Schema::Float | Schema::Double => "number",
        Schema::String | Schema::Enum(_) | Schema::Uuid(_) => "string",
        Schema::Bytes | Schema::Fixed(_) => "base64 string",
        Schema::Decimal(_) | Schema::BigDecimal => "decimal string",
        Schema::Array(_) => "array",
        Schema::Map(_) | Schema::Record(_) => "object",
        Schema::Union(_) | Schema::Ref { .. } => "value",
        s if is_long(s) => "a 64-bit integer",
        _ => "value",
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Avro's zig-zag variable-length long.
fn write_long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_bytes(b: &[u8], out: &mut Vec<u8>) {
    write_long(b.len() as i64, out);
    out.extend_from_slice(b);
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// The 16 bytes of `8-4-4-4-12` hex text.
fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let groups: Vec<&str> = text.split('-').collect();
    if groups.iter().map(|g| g.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
        return None;
    }
    let hex: String = groups.concat();
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(bytes)
}

/// `"-1234.56"` at `scale` as the big-endian two's complement of its
/// unscaled value: minimal for `bytes`, sign-extended to `size` for `fixed`.
fn decimal_bytes(text: &str, scale: usize, size: Option<usize>) -> Result<Vec<u8>, String> {
    let bad = || format!("expected a decimal string like \"1234.56\" with at most {scale} decimals, got \"{text}\"");
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !all_digits(whole)
        || !all_digits(frac)
        || frac.len() > scale
        || (digits.contains('.') && frac.is_empty())
    {
        return Err(bad());
    }
    let padded = format!("{whole}{frac}{}", "0".repeat(scale - frac.len()));
    let unscaled: i128 = padded.parse().map_err(|_| format!("decimal \"{text}\" has too many digits"))?;
    let unscaled = if negative { -unscaled } else { unscaled };
    let full = unscaled.to_be_bytes();
    let fill = if unscaled < 0 { 0xff } else { 0 };
    // Drop leading bytes that only repeat the sign.
    let mut start = 0;
    while start < 15 && full[start] == fill && (full[start + 1] & 0x80 == fill & 0x80) {
        start += 1;
    }
    let minimal = &full[start..];
    match size {
        None => Ok(minimal.to_vec()),
        Some(n) if minimal.len() <= n => {
            let mut fixed = vec![fill; n - minimal.len()];
            fixed.extend_from_slice(minimal);
            Ok(fixed)
        }
        Some(n) => Err(format!("decimal \"{text}\" does not fit in {n} bytes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::decode::{decode_datum, WriterSchema};
    use serde_json::json;

    const SCHEMA: &str = r#"{"type":"record","name":"Thing","namespace":"t","fields":[
        {"name":"id","type":"string"},
        {"name":"n","type":"int"},
        {"name":"when","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"note","type":["null","string"],"default":null},
        {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
        {"name":"ref","type":{"type":"string","logicalType":"uuid"}},
        {"name":"raw","type":"bytes"},
        {"name":"color","type":{"type":"enum","name":"Color","symbols":["RED","GREEN"]}},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"attrs","type":{"type":"map","values":"double"}},
        {"name":"inner","type":["null",{"type":"record","name":"Inner","fields":[{"name":"x","type":"long"}]}]},
        {"name":"again","type":["null","Inner"],"default":null}
    ]}"#;

    fn body() -> Value {
        json!({"id":"a1","n":7,"when":1700000000000i64,"note":"hi","price":"-1234.56",
               "ref":"123e4567-e89b-12d3-a456-426614174000","raw":"AAEC","color":"GREEN",
               "tags":["x","y"],"attrs":{"k":1.5},"inner":{"x":3},"again":null})
    }

    #[test]
    fn encoded_bodies_decode_to_the_same_json() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let datum = encode_json(&schema, &body()).unwrap();
        let decoded = decode_datum(&WriterSchema::parse(SCHEMA).unwrap(), &datum).unwrap();
        let back: Value = serde_json::from_slice(&decoded.body).unwrap();
        assert_eq!(back, body());
    }

    #[test]
    fn absent_nullable_fields_are_null_and_absent_required_ones_are_named() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let mut b = body();
        b.as_object_mut().unwrap().remove("note");
        assert!(encode_json(&schema, &b).is_ok());
        b.as_object_mut().unwrap().remove("n");
        assert_eq!(encode_json(&schema, &b).unwrap_err(), "field `n`: missing");
    }

    #[test]
    fn misfits_name_their_field() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let cases = [
            ("id", json!(5), "field `id`: expected string, got number"),
            ("n", json!(1u64 << 40), "field `n`: expected a 32-bit integer, got number"),
            ("note", json!(5), "field `note`: expected null or string, got number"),
            ("color", json!("BLUE"), "field `color`: expected one of RED, GREEN, got string"),
            ("tags", json!(["x", 1]), "field `tags[1]`: expected string, got number"),
            ("inner", json!({"x": "no"}), "field `inner.x`: expected a 64-bit integer, got string"),
            ("extra", json!(1), "field `extra`: not in the schema of `Thing`"),
        ];
        for (field, value, message) in cases {
            let mut b = body();
            b[field] = value;
            assert_eq!(encode_json(&schema, &b).unwrap_err(), message);
        }
        let mut b = body();
        b["price"] = json!("12.345");
        assert!(encode_json(&schema, &b).unwrap_err().starts_with("field `price`: expected a decimal"));
    }

    #[test]
    fn decimals_are_minimal_twos_complement() {
        assert_eq!(decimal_bytes("1.00", 2, None).unwrap(), vec![100]);
        assert_eq!(decimal_bytes("1.28", 2, None).unwrap(), vec![0, 128]);
        assert_eq!(decimal_bytes("-1.28", 2, None).unwrap(), vec![0x80]);
        assert_eq!(decimal_bytes("-1.29", 2, None).unwrap(), vec![0xff, 0x7f]);
        assert_eq!(decimal_bytes("-0.01", 2, Some(4)).unwrap(), vec![0xff; 4]);
        assert_eq!(decimal_bytes("0", 2, None).unwrap(), vec![0]);
        assert!(decimal_bytes("1.", 2, None).is_err());
        assert!(decimal_bytes("abc", 2, None).is_err());
    }
}
