//! Writes through Kafka (`writes: kafka` routes) with real processes: a
//! tansu broker, the bundled schema registry and two push-cache instances
//! on the same topic. A write is answered only once it is applied, so a GET
//! right after always sees it; the other instance sees it on its next poll.

mod common;

use common::kafka::*;
use common::*;
use push_cache::kafka::decode::encode_frame;
use push_cache::registry::server as registry;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const TOKEN: &str = "s3cret";

/// A server whose `/customers` route writes through the `customers` topic.
fn start_server(brokers: &str, registry_url: &str, write_timeout_ms: u64) -> Server {
    let port = free_port();
    let stores = ["{name: customers, type: in_memory, schemas: [customer]}"];
    let routes = ["{path: /customers, store: customers, writes: kafka, topic: customers}"];
    let yaml = kafka_config(port, brokers, registry_url, "customers", &stores, &routes);
    let extra = format!("webservice:\n  admin_token: {TOKEN}\n  limits: {{write_timeout_ms: {write_timeout_ms}}}\n");
    let server = Server::start_yaml(&yaml.replacen("webservice:\n", &extra, 1), port, &[]);
    wait_until("readiness", Duration::from_secs(60), || http_get(&server, "/health/ready").0 == 200);
    server
}

/// A request with the admin token and, when given, a JSON body.
fn request(method: &str, path: &str, body: Option<&Value>) -> Vec<u8> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n");
    format!("{head}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

/// One keep-alive client connection.
struct Client {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl Client {
    fn new(server: &Server) -> Client {
        Client { stream: server.connect(), pending: Vec::new() }
    }

    fn send(&mut self, wire: &[u8]) -> Response {
        self.stream.write_all(wire).unwrap();
        read_response(&mut self.stream, &mut self.pending, false)
    }
}

fn customer_json(i: usize, version: u64, email: Option<&str>) -> Value {
    json!({
        "accountId": format!("wt-{i:06}"),
        "name": format!("Customer {i} v{version}"),
        "address": format!("{i} Write Street"),
        "phone": "+44 20 7946 0000",
        "createdAt": 1_700_000_000_000u64,
        "updatedAt": 1_700_000_000_000u64 + version,
        "email": email,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn stack(broker: &Broker) -> (registry::RegistryHandle, String) {
    broker.create_topic("customers", 3);
    let reg = registry::spawn("127.0.0.1:0", None, None).unwrap();
    let url = format!("http://{}", reg.addr);
    register(&url, "customers-value", CUSTOMER_V1);
    register(&url, "customers-value", CUSTOMER_V2);
    (reg, url)
}

#[test]
fn writes_through_kafka_are_read_back_at_once_and_reach_another_instance() {
    const ROUNDS: usize = 1000;
    let broker = Broker::start();
    let (_reg, reg_url) = stack(&broker);
    let a = start_server(&broker.bootstrap(), &reg_url, 5000);
    let b = start_server(&broker.bootstrap(), &reg_url, 5000);
    let mut client = Client::new(&a);

    let mut latencies = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let body = customer_json(i, 1, (i % 2 == 0).then_some("x@example.com"));
        let started = Instant::now();
        let r = client.send(&request("POST", "/api/customers", Some(&body)));
        latencies.push(started.elapsed());
        assert_eq!(r.status, 201, "round {i}: {}", r.text());
        assert_eq!(r.json(), body, "round {i}: the 201 carries the stored body");
        let position = r.header("Kafka-Position").unwrap_or_else(|| panic!("round {i}: no Kafka-Position"));
        assert!(position.starts_with("customers/"), "{position}");
        let got = client.send(&get(&format!("/api/customers/wt-{i:06}")));
        assert_eq!(got.status, 200, "round {i}: a GET right after the 201 must see the write: {}", got.text());
        assert_eq!(got.json(), body, "round {i}");
    }
    latencies.sort();
    eprintln!(
        "POST-to-201 through Kafka over {ROUNDS} rounds: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    wait_until("the other instance to see every write", Duration::from_secs(60), || {
        (0..ROUNDS).step_by(97).chain([ROUNDS - 1]).all(|i| http_get(&b, &format!("/api/customers/wt-{i:06}")).0 == 200)
    });
    let last = customer_json(ROUNDS - 1, 1, None);
    assert_eq!(
        serde_json::from_str::<Value>(&http_get(&b, &format!("/api/customers/wt-{:06}", ROUNDS - 1)).1).unwrap(),
        last
    );

    // POST of a present key: 409, nothing produced.
    let again = client.send(&request("POST", "/api/customers", Some(&customer_json(0, 9, None))));
    assert_eq!(again.status, 409, "{}", again.text());
    assert_eq!(again.header("Kafka-Position"), None);

    // PUT replaces (200) or creates (201); a key field naming another key is 400.
    let v2 = customer_json(1, 2, Some("new@example.com"));
    let put = client.send(&request("PUT", "/api/customers/wt-000001", Some(&v2)));
    assert_eq!((put.status, put.json()), (200, v2.clone()), "{}", put.text());
    assert_eq!(client.send(&get("/api/customers/wt-000001")).json(), v2);
    let mut fresh = customer_json(ROUNDS, 1, None);
    fresh.as_object_mut().unwrap().remove("accountId");
    let created = client.send(&request("PUT", &format!("/api/customers/wt-{ROUNDS:06}"), Some(&fresh)));
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["accountId"], format!("wt-{ROUNDS:06}"), "the path's key fills the key field");
    let mismatch = client.send(&request("PUT", "/api/customers/wt-000002", Some(&customer_json(3, 2, None))));
    assert_eq!(mismatch.status, 400, "{}", mismatch.text());
    wait_until("the PUT on the other instance", Duration::from_secs(30), || {
        http_get(&b, "/api/customers/wt-000001").1.contains("new@example.com")
    });

    // DELETE through Kafka: 200 with the removed body, gone here at once and
    // on the other instance on its next poll; an absent key is 404.
    let del = client.send(&request("DELETE", "/api/customers/wt-000004", None));
    assert_eq!((del.status, del.json()), (200, customer_json(4, 1, Some("x@example.com"))), "{}", del.text());
    assert!(del.header("Kafka-Position").is_some());
    assert_eq!(client.send(&get("/api/customers/wt-000004")).status, 404);
    wait_until("the tombstone on the other instance", Duration::from_secs(30), || {
        http_get(&b, "/api/customers/wt-000004").0 == 404
    });
    let absent = client.send(&request("DELETE", "/api/customers/wt-000004", None));
    assert_eq!(absent.status, 404, "{}", absent.text());

    // Writes need the token.
    let no_token = exchange(&a, &post("/api/customers", &customer_json(5000, 1, None).to_string()));
    assert_eq!(no_token.status, 401);

    // Against the bare produce acknowledgement and produce-to-visible.
    bare_produce_figures(&broker, &reg_url, &a);
}

/// p50/p99 of a bare produce acknowledgement (idempotent, acks=all, as the
/// writer's) and of produce-to-visible (acknowledged, then GET until it is
/// served), for comparison with POST-to-201.
fn bare_produce_figures(broker: &Broker, reg_url: &str, server: &Server) {
    const N: usize = 200;
    let schema = register(reg_url, "customers-value", CUSTOMER_V1);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let mut client = Client::new(server);
    let (mut acks, mut visible) = (Vec::new(), Vec::new());
    for i in 0..N {
        let (value, json) = customer(900_000 + i as u64, 1);
        let key = format!("acct-{:08}", 900_000 + i);
        let started = Instant::now();
        let payload = encode_frame(schema.id, &encode_datum(&schema, value));
        let record = FutureRecord::<str, [u8]>::to("customers").key(&key).payload(&payload);
        let delivery = producer.send_result(record).map_err(|(e, _)| e).unwrap();
        futures_lite::future::block_on(delivery).unwrap().map_err(|(e, _)| e).unwrap();
        acks.push(started.elapsed());
        loop {
            let r = client.send(&get(&format!("/api/customers/{key}")));
            if r.status == 200 && r.text() == json {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "{key} never became visible");
            std::thread::sleep(Duration::from_micros(200));
        }
        visible.push(started.elapsed());
    }
    acks.sort();
    visible.sort();
    eprintln!(
        "bare produce ack over {N}: p50 {:.2} ms, p99 {:.2} ms; produce-to-visible: p50 {:.2} ms, p99 {:.2} ms",
        percentile(&acks, 0.5),
        percentile(&acks, 0.99),
        percentile(&visible, 0.5),
        percentile(&visible, 0.99)
    );
}

#[test]
fn bodies_that_do_not_fit_the_schema_are_400_naming_the_field() {
    let broker = Broker::start();
    let (_reg, reg_url) = stack(&broker);
    let server = start_server(&broker.bootstrap(), &reg_url, 5000);
    let mut client = Client::new(&server);
    let cases = [
        ("name", json!(5), "field `name`: expected string, got number"),
        ("updatedAt", json!("soon"), "field `updatedAt`: expected a 64-bit integer, got string"),
        ("email", json!(7), "field `email`: expected null or string, got number"),
        ("nickname", json!("x"), "field `nickname`: not in the schema of `Customer`"),
    ];
    for (i, (field, value, message)) in cases.into_iter().enumerate() {
        let mut body = customer_json(i, 1, None);
        body[field] = value;
        let r = client.send(&request("POST", "/api/customers", Some(&body)));
        assert_eq!(r.status, 400, "{field}: {}", r.text());
        assert_eq!(r.json(), json!({ "error": message }));
        assert_eq!(client.send(&get(&format!("/api/customers/wt-{i:06}"))).status, 404, "nothing was written");
    }
    let mut missing = customer_json(9, 1, None);
    missing.as_object_mut().unwrap().remove("phone");
    let r = client.send(&request("PUT", "/api/customers/wt-000009", Some(&missing)));
    assert_eq!((r.status, r.json()), (400, json!({ "error": "field `phone`: missing" })));
    let r = client.send(&request("POST", "/api/customers", Some(&json!({ "name": "no key" }))));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("accountId"), "{}", r.text());
    // Still serving writes afterwards.
    let ok = client.send(&request("POST", "/api/customers", Some(&customer_json(10, 1, None))));
    assert_eq!(ok.status, 201, "{}", ok.text());
}

#[test]
fn a_broker_that_is_down_gives_503_within_the_write_timeout() {
    const TIMEOUT_MS: u64 = 1500;
    let broker = Broker::start_proxied();
    let (_reg, reg_url) = stack(&broker);
    let server = start_server(&broker.bootstrap(), &reg_url, TIMEOUT_MS);
    let mut client = Client::new(&server);
    let first = client.send(&request("POST", "/api/customers", Some(&customer_json(1, 1, None))));
    assert_eq!(first.status, 201, "{}", first.text());

    broker.outage();
    let started = Instant::now();
    let r = client.send(&request("POST", "/api/customers", Some(&customer_json(2, 1, None))));
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(took >= Duration::from_millis(TIMEOUT_MS - 100), "answered before the timeout: {took:?}");
    assert!(took < Duration::from_millis(TIMEOUT_MS + 1500), "503 took {took:?}");
    assert!(r.json()["error"].as_str().unwrap().contains("Kafka"), "{}", r.text());
    assert_eq!(r.header("Kafka-Position"), None, "nothing is claimed written");
    let del = client.send(&request("DELETE", "/api/customers/wt-000001", None));
    assert_eq!(del.status, 503, "{}", del.text());
    assert_eq!(client.send(&get("/api/customers/wt-000001")).status, 200, "the failed DELETE removed nothing");

    broker.recover();
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    wait_until("writes after the broker is back", Duration::from_secs(60), || {
        let r = client.send(&request("POST", "/api/customers", Some(&customer_json(3, 1, None))));
        last = format!("{} {}", r.status, r.text());
        assert!(Instant::now() < deadline, "no write after the broker is back; last answer: {last}");
        // 409: an earlier attempt that timed out here was written after all.
        matches!(r.status, 201 | 409)
    });
    assert_eq!(client.send(&get("/api/customers/wt-000003")).status, 200);
}
