//! Real Kafka parts for tests: a tansu broker process (memory storage), the
//! bundled schema registry, topic creation and a producer of Confluent-framed
//! Avro records.
#![allow(dead_code)]

use super::free_port;
use super::proxy::Proxy;
use apache_avro::types::Value;
use push_cache::kafka::decode::encode_frame;
use push_cache::kafka::registry_client::RegistryClient;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn tansu_bin() -> String {
    let out = Command::new("bash").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/tansu-path.sh")).output().unwrap();
    assert!(
        out.status.success(),
        "no tansu broker: run scripts/install-deps.sh ({})",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A tansu broker on a free loopback port, optionally behind a proxy that
/// can take it away and bring it back (see `proxy.rs`).
pub struct Broker {
    pub child: Child,
    pub port: u16,
    pub proxy: Option<Proxy>,
}

impl Broker {
    pub fn start() -> Broker {
        let port = free_port();
        let child = spawn_tansu(port, port);
        wait_port(port);
        Broker { child, port, proxy: None }
    }

    /// A broker that clients reach only through a proxy: it advertises the
    /// proxy's address, so `outage()` cuts every client off, reconnects
    /// included, while the broker keeps its log.
    pub fn start_proxied() -> Broker {
        let (port, proxy_port) = (free_port(), free_port());
        let child = spawn_tansu(port, proxy_port);
        wait_port(port);
        let proxy = Proxy::start(proxy_port, ([127, 0, 0, 1], port).into());
        Broker { child, port, proxy: Some(proxy) }
    }

    /// Where clients connect: the proxy when there is one.
    pub fn bootstrap(&self) -> String {
        let port = self.proxy.as_ref().map_or(self.port, |p| p.port);
        format!("127.0.0.1:{port}")
    }

    /// As a broker crash looks to clients: connections reset, new ones refused.
    pub fn outage(&self) {
        self.proxy.as_ref().expect("a proxied broker").cut();
    }

    /// The broker is back, with every topic and offset it had.
    pub fn recover(&self) {
        self.proxy.as_ref().expect("a proxied broker").restore();
    }

    /// Freezes the broker (SIGSTOP): connections stay open but nothing answers.
    pub fn pause(&self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGSTOP) };
    }

    pub fn resume(&self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", self.bootstrap()).create().unwrap();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
        let result = futures_lite::future::block_on(
            admin.create_topics(&[topic], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))),
        );
        for r in result.expect("create topic") {
            r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
        }
    }

    pub fn producer(&self) -> TestProducer {
        TestProducer::connect(&self.bootstrap())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tansu with memory storage, listening on `port`, advertising `advertised`.
fn spawn_tansu(port: u16, advertised: u16) -> Child {
    Command::new(tansu_bin())
        .args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{port}")])
        .args(["--advertised-listener-url", &format!("tcp://127.0.0.1:{advertised}")])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu")
}

pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Produces raw or Avro records.
pub struct TestProducer {
    producer: BaseProducer,
}

impl TestProducer {
    /// A producer to `bootstrap`, usable from any thread.
    pub fn connect(bootstrap: &str) -> TestProducer {
        TestProducer::with_linger(bootstrap, 0)
    }

    /// A producer that gathers records for `linger_ms` into large batches.
    /// For tests that produce many records: tansu's memory storage scans a
    /// partition's batches on every fetch, so a topic of one-record batches
    /// (what a producer without linger writes when it keeps up) replays
    /// orders of magnitude slower than one of large batches, as no real
    /// broker would.
    pub fn with_linger(bootstrap: &str, linger_ms: u32) -> TestProducer {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", linger_ms.to_string())
            .set("batch.num.messages", "10000")
            .set("batch.size", "1000000")
            .set("enable.idempotence", "false")
            .create()
            .unwrap();
        TestProducer { producer }
    }

    pub fn send_raw(&self, topic: &str, key: &[u8], payload: Option<&[u8]>) {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).key(key);
        if let Some(p) = payload {
            record = record.payload(p);
        }
        let mut record = record;
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((e, r)) => {
                    assert!(
                        matches!(
                            e,
                            rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "{e}"
                    );
                    self.producer.poll(Duration::from_millis(10));
                    record = r;
                }
            }
        }
        self.producer.poll(Duration::ZERO);
    }

    /// Sends one Avro record to an explicit partition.
    pub fn send_avro_to(&self, topic: &str, partition: i32, key: &str, schema: &Schema, value: Value) {
        let payload = encode_frame(schema.id, &encode_datum(schema, value));
        let mut record = BaseRecord::<str, [u8]>::to(topic).partition(partition).key(key).payload(&payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((e, r)) => {
                    use rdkafka::{error::KafkaError, types::RDKafkaErrorCode};
                    assert!(matches!(e, KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)), "{e}");
                    self.producer.poll(Duration::from_millis(10));
                    record = r;
                }
            }
        }
        self.producer.poll(Duration::ZERO);
    }

    pub fn send_avro(&self, topic: &str, key: &str, schema: &Schema, value: Value) {
        let datum = encode_datum(schema, value);
        self.send_raw(topic, key.as_bytes(), Some(&encode_frame(schema.id, &datum)));
    }

    pub fn tombstone(&self, topic: &str, key: &str) {
        self.send_raw(topic, key.as_bytes(), None);
    }

    pub fn flush(&self) {
        self.producer.flush(Duration::from_secs(30)).expect("flush producer");
    }
}

/// The Avro binary datum of `value`.
#[allow(deprecated)]
pub fn encode_datum(schema: &Schema, value: Value) -> Vec<u8> {
    apache_avro::to_avro_datum(&schema.schema, value).expect("encode test record")
}

/// A registered writer schema.
#[derive(Clone)]
pub struct Schema {
    pub id: u32,
    pub schema: apache_avro::Schema,
}

pub fn register(registry_url: &str, subject: &str, schema_json: &str) -> Schema {
    let id = RegistryClient::new(registry_url).unwrap().register(subject, schema_json).expect("register schema");
    Schema { id, schema: apache_avro::Schema::parse_str(schema_json).unwrap() }
}

#[allow(unused_imports)] // not every test binary uses every record kind
pub use push_cache_sample::fixed::*;

/// CRC-32C (Castagnoli), as Kafka record batches carry it.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

/// A v2 record batch of `count` records whose attributes say `codec`
/// (1 gzip, 2 snappy, 3 lz4, 4 zstd) but whose payload is `payload` as is:
/// with garbage there, no consumer can decompress it.
pub fn raw_batch(codec: i16, count: i32, payload: &[u8]) -> Vec<u8> {
    let mut after_crc = Vec::new();
    after_crc.extend_from_slice(&codec.to_be_bytes()); // attributes
    after_crc.extend_from_slice(&(count - 1).to_be_bytes()); // lastOffsetDelta
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    after_crc.extend_from_slice(&now.to_be_bytes()); // baseTimestamp
    after_crc.extend_from_slice(&now.to_be_bytes()); // maxTimestamp
    after_crc.extend_from_slice(&(-1i64).to_be_bytes()); // producerId
    after_crc.extend_from_slice(&(-1i16).to_be_bytes()); // producerEpoch
    after_crc.extend_from_slice(&(-1i32).to_be_bytes()); // baseSequence
    after_crc.extend_from_slice(&count.to_be_bytes());
    after_crc.extend_from_slice(payload);
    let mut batch = Vec::new();
    batch.extend_from_slice(&0i64.to_be_bytes()); // baseOffset (the broker assigns it)
    let length = 4 + 1 + 4 + after_crc.len() as i32; // leader epoch, magic, crc, rest
    batch.extend_from_slice(&length.to_be_bytes());
    batch.extend_from_slice(&0i32.to_be_bytes()); // partitionLeaderEpoch
    batch.push(2); // magic
    batch.extend_from_slice(&crc32c(&after_crc).to_be_bytes());
    batch.extend_from_slice(&after_crc);
    batch
}

/// Sends `batch` to `topic`/`partition` with a raw Produce (v3) request, as
/// a client with its own encoder would; returns the partition's error code.
pub fn produce_raw_batch(bootstrap: &str, topic: &str, partition: i32, batch: &[u8]) -> i16 {
    use std::io::{Read, Write};
    let mut body = Vec::new();
    body.extend_from_slice(&0i16.to_be_bytes()); // api key: Produce
    body.extend_from_slice(&3i16.to_be_bytes()); // api version
    body.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    body.extend_from_slice(&4i16.to_be_bytes());
    body.extend_from_slice(b"test");
    body.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id: null
    body.extend_from_slice(&(-1i16).to_be_bytes()); // acks: all
    body.extend_from_slice(&10_000i32.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    body.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&1i32.to_be_bytes()); // one partition
    body.extend_from_slice(&partition.to_be_bytes());
    body.extend_from_slice(&(batch.len() as i32).to_be_bytes());
    body.extend_from_slice(batch);
    let mut stream = TcpStream::connect(bootstrap).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(&(body.len() as i32).to_be_bytes()).unwrap();
    stream.write_all(&body).unwrap();
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut reply = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut reply).unwrap();
    // correlation id, topics (1), name, partitions (1), index, then the error code.
    let at = 4 + 4 + 2 + topic.len() + 4 + 4;
    i16::from_be_bytes([reply[at], reply[at + 1]])
}

/// The key bytes of every record in `topic`'s `partitions`, read from the
/// beginning up to each partition's end as the broker reports it.
pub fn record_keys(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Vec<u8>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "record-keys")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut keys = Vec::new();
    let mut at_end = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while at_end < partitions {
        assert!(Instant::now() < deadline, "reading {topic} took too long");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => keys.push(m.key().unwrap_or_default().to_vec()),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => at_end += 1,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    keys
}
