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
    assert!(out.status.success(), "no tansu broker: run scripts/install-deps.sh ({})", String::from_utf8_lossy(&out.stderr));
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
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", self.bootstrap()).create().unwrap();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
        let result = futures_lite::future::block_on(admin.create_topics(&[topic], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))));
        for r in result.expect("create topic") {
            r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
        }
    }

    pub fn producer(&self) -> TestProducer {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("linger.ms", "0")
            .set("enable.idempotence", "false")
            .create()
            .unwrap();
        TestProducer { producer }
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
                    assert!(matches!(e, rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull)), "{e}");
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
pub struct Schema {
    pub id: u32,
    pub schema: apache_avro::Schema,
}

pub fn register(registry_url: &str, subject: &str, schema_json: &str) -> Schema {
    let id = RegistryClient::new(registry_url).unwrap().register(subject, schema_json).expect("register schema");
    Schema { id, schema: apache_avro::Schema::parse_str(schema_json).unwrap() }
}

pub const CUSTOMER_V1: &str = r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[
 {"name":"accountId","type":"string"},{"name":"name","type":"string"},{"name":"address","type":"string"},
 {"name":"phone","type":"string"},{"name":"createdAt","type":"long"},{"name":"updatedAt","type":"long"}]}"#;

pub const CUSTOMER_V2: &str = r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[
 {"name":"accountId","type":"string"},{"name":"name","type":"string"},{"name":"address","type":"string"},
 {"name":"phone","type":"string"},{"name":"createdAt","type":"long"},{"name":"updatedAt","type":"long"},
 {"name":"email","type":["null","string"],"default":null}]}"#;

pub const BILL: &str = r#"{"type":"record","name":"Bill","namespace":"com.acme","fields":[
 {"name":"accountId","type":"string"},{"name":"year","type":"int"},{"name":"totalAmount","type":"double"},
 {"name":"payments","type":{"type":"array","items":{"type":"record","name":"Payment","fields":[
   {"name":"date","type":"string"},{"name":"amount","type":"double"},{"name":"method","type":"string"}]}}}]}"#;

pub const USAGE: &str = r#"{"type":"record","name":"Usage","namespace":"com.acme","fields":[
 {"name":"accountId","type":"string"},{"name":"serviceType","type":"string"},{"name":"amount","type":"double"},
 {"name":"unit","type":"string"},{"name":"timestamp","type":"long"}]}"#;

pub const TICKET: &str = r#"{"type":"record","name":"Ticket","namespace":"com.acme","fields":[
 {"name":"ticketId","type":"string"},{"name":"accountId","type":"string"},{"name":"issue","type":"string"},
 {"name":"status","type":"string"},{"name":"timestamp","type":"long"}]}"#;

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

/// A customer record and the JSON body the cache must serve for it.
pub fn customer(i: u64, version: u64) -> (Value, String) {
    let (id, name, addr, created, updated) =
        (format!("acct-{i:08}"), format!("Customer {i} v{version}"), format!("{i} Long Street"), 1_700_000_000_000 + i, 1_700_000_500_000 + i * 10 + version);
    let value = Value::Record(vec![
        ("accountId".into(), s(&id)),
        ("name".into(), s(&name)),
        ("address".into(), s(&addr)),
        ("phone".into(), s("+44 20 7946 0000")),
        ("createdAt".into(), Value::Long(created as i64)),
        ("updatedAt".into(), Value::Long(updated as i64)),
    ]);
    let json = format!(
        r#"{{"accountId":"{id}","name":"{name}","address":"{addr}","phone":"+44 20 7946 0000","createdAt":{created},"updatedAt":{updated}}}"#
    );
    (value, json)
}

pub fn customer_v2(i: u64, email: Option<&str>) -> (Value, String) {
    let (Value::Record(mut fields), json) = customer(i, 2) else { unreachable!() };
    let (avro, text) = match email {
        Some(e) => (Value::Union(1, Box::new(s(e))), format!("\"{e}\"")),
        None => (Value::Union(0, Box::new(Value::Null)), "null".to_string()),
    };
    fields.push(("email".into(), avro));
    (Value::Record(fields), format!("{},\"email\":{text}}}", &json[..json.len() - 1]))
}

pub fn bill(i: u64) -> (Value, String) {
    let id = format!("acct-{i:08}");
    let payment = |d: &str, a: f64, m: &str| Value::Record(vec![("date".into(), s(d)), ("amount".into(), Value::Double(a)), ("method".into(), s(m))]);
    let value = Value::Record(vec![
        ("accountId".into(), s(&id)),
        ("year".into(), Value::Int(2024)),
        ("totalAmount".into(), Value::Double(120.5)),
        ("payments".into(), Value::Array(vec![payment("2024-01-31T10:00:00Z", 60.25, "card"), payment("2024-02-29T10:00:00Z", 60.25, "direct_debit")])),
    ]);
    let json = format!(
        r#"{{"accountId":"{id}","year":2024,"totalAmount":120.5,"payments":[{{"date":"2024-01-31T10:00:00Z","amount":60.25,"method":"card"}},{{"date":"2024-02-29T10:00:00Z","amount":60.25,"method":"direct_debit"}}]}}"#
    );
    (value, json)
}

pub fn usage(i: u64) -> (Value, String) {
    let id = format!("acct-{i:08}");
    let value = Value::Record(vec![
        ("accountId".into(), s(&id)),
        ("serviceType".into(), s("mobile_data")),
        ("amount".into(), Value::Double(1.5)),
        ("unit".into(), s("GB")),
        ("timestamp".into(), Value::Long(1_700_000_000_000)),
    ]);
    (value, format!(r#"{{"accountId":"{id}","serviceType":"mobile_data","amount":1.5,"unit":"GB","timestamp":1700000000000}}"#))
}

pub fn ticket(i: u64) -> (Value, String) {
    let (tid, id) = (format!("tkt-{i:06}"), format!("acct-{i:08}"));
    let value = Value::Record(vec![
        ("ticketId".into(), s(&tid)),
        ("accountId".into(), s(&id)),
        ("issue".into(), s("No \"signal\" at home")),
        ("status".into(), s("open")),
        ("timestamp".into(), Value::Long(1_700_000_000_000)),
    ]);
    (value, format!(r#"{{"ticketId":"{tid}","accountId":"{id}","issue":"No \"signal\" at home","status":"open","timestamp":1700000000000}}"#))
}
