//! End-to-end ingestion with real processes: a tansu
//! broker, the bundled schema registry and the push-cache binary.

mod common;

use common::kafka::*;
use common::*;
use push_cache::registry::server as registry;
use std::time::Duration;

const TOPICS: [&str; 4] = ["customers", "bills", "usage", "tickets"];

fn config(port: u16, brokers: &str, registry_url: &str) -> String {
    let stores = [
        "{name: customers, type: in_memory, schemas: [customer]}",
        "{name: bills, type: in_memory, schemas: [bill]}",
        "{name: usage, type: in_memory, schemas: [usage]}",
        "{name: tickets, type: in_memory, schemas: [ticket]}",
    ];
    let routes = [
        "{path: /customers, store: customers}",
        "{path: /bills, store: bills}",
        "{path: /usage, store: usage}",
        "{path: /tickets, store: tickets, key_field: ticketId}",
    ];
    kafka_config(port, brokers, registry_url, "[customers, bills, usage, tickets]", &stores, &routes)
}

struct Schemas {
    customer: Schema,
    customer_v2: Schema,
    bill: Schema,
    usage: Schema,
    ticket: Schema,
}

fn register_all(url: &str) -> Schemas {
    Schemas {
        customer: register(url, "customers-value", CUSTOMER_V1),
        customer_v2: register(url, "customers-value", CUSTOMER_V2),
        bill: register(url, "bills-value", BILL),
        usage: register(url, "usage-value", USAGE),
        ticket: register(url, "tickets-value", TICKET),
    }
}

fn wait_ready(server: &Server) {
    wait_until("readiness", Duration::from_secs(60), || http_get(server, "/health/ready").0 == 200);
}

fn metric(server: &Server, line_prefix: &str) -> u64 {
    let text = http_get(server, "/metrics").1;
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Everything a topic should hold, produced by `produce_dataset`: path -> body (None: deleted).
type Expected = Vec<(String, Option<String>)>;

fn produce_dataset(p: &TestProducer, s: &Schemas) -> Expected {
    let mut expected = Vec::new();
    for i in 0..60 {
        let (v, json) = customer(i, 1);
        p.send_avro("customers", &format!("acct-{i:08}"), &s.customer, v);
        expected.push((format!("/api/customers/acct-{i:08}"), Some(json)));
    }
    for i in 0..10 {
        let (v, json) = customer(i, 2);
        p.send_avro("customers", &format!("acct-{i:08}"), &s.customer, v);
        expected[i as usize].1 = Some(json);
    }
    for i in 40..45 {
        p.tombstone("customers", &format!("acct-{i:08}"));
        expected[i as usize].1 = None;
    }
    for i in 50..55 {
        let email = (i % 2 == 0).then_some("a@example.com");
        let (v, json) = customer_v2(i, email);
        p.send_avro("customers", &format!("acct-{i:08}"), &s.customer_v2, v);
        expected[i as usize].1 = Some(json);
    }
    for i in 0..20 {
        let (v, json) = bill(i);
        p.send_avro("bills", &format!("acct-{i:08}"), &s.bill, v);
        expected.push((format!("/api/bills/acct-{i:08}"), Some(json)));
        let (v, json) = usage(i);
        p.send_avro("usage", &format!("acct-{i:08}"), &s.usage, v);
        expected.push((format!("/api/usage/acct-{i:08}"), Some(json)));
        let (v, json) = ticket(i);
        p.send_avro("tickets", &format!("tkt-{i:06}"), &s.ticket, v);
        expected.push((format!("/api/tickets/tkt-{i:06}"), Some(json)));
    }
    // A tombstone on bills must not touch the customer with the same key.
    p.tombstone("bills", "acct-00000001");
    expected.iter_mut().find(|(path, _)| path == "/api/bills/acct-00000001").unwrap().1 = None;
    p.flush();
    expected
}

fn produce_bad_records(p: &TestProducer, s: &Schemas) {
    let (v, _) = customer(900, 1);
    let datum = encode_datum(&s.customer, v);
    let mut bad_magic = push_cache::kafka::decode::encode_frame(s.customer.id, &datum);
    bad_magic[0] = 7;
    p.send_raw("customers", b"bad-magic", Some(&bad_magic));
    p.send_raw("customers", b"unknown-schema", Some(&push_cache::kafka::decode::encode_frame(99_999, &datum)));
    let truncated = push_cache::kafka::decode::encode_frame(s.customer.id, &datum[..datum.len() / 2]);
    p.send_raw("customers", b"truncated", Some(&truncated));
    p.send_raw("customers", &[0xff, 0xfe, 0x01], Some(&push_cache::kafka::decode::encode_frame(s.customer.id, &datum)));
    p.send_raw("customers", b"short", Some(&[0, 0]));
    p.flush();
}

/// Waits until every path serves its expected body (or 404). Even right
/// after readiness it may have to wait a moment: tansu 0.6 reports a
/// partition's high watermark as its last batch's base offset + 1, so against
/// it readiness can come up to one batch early. (Readiness against exact
/// watermarks is proven with the mock cluster in consumer_mock.rs.)
fn wait_serves(server: &Server, expected: &Expected) {
    wait_until("the cache to converge", Duration::from_secs(60), || {
        expected.iter().all(|(path, body)| {
            let (status, text) = http_get(server, path);
            match body {
                Some(b) => status == 200 && &text == b,
                None => status == 404,
            }
        })
    });
}

fn start_stack() -> (Broker, registry::RegistryHandle) {
    stack_with(Broker::start())
}

fn stack_with(broker: Broker) -> (Broker, registry::RegistryHandle) {
    broker.create_topic("customers", 3);
    for t in &TOPICS[1..] {
        broker.create_topic(t, 1);
    }
    let reg = registry::spawn("127.0.0.1:0", None, None).unwrap();
    (broker, reg)
}

#[test]
fn replays_topics_then_follows_updates_tombstones_and_skips_bad_records() {
    let (broker, reg) = start_stack();
    let reg_url = format!("http://{}", reg.addr);
    let schemas = register_all(&reg_url);
    let producer = broker.producer();
    let expected = produce_dataset(&producer, &schemas);
    produce_bad_records(&producer, &schemas);

    let port = free_port();
    let server = Server::start_yaml(&config(port, &broker.bootstrap(), &reg_url), port, &[]);
    let (status, body) = http_get(&server, "/health/ready");
    assert_eq!(status, 503, "not ready before catch-up: {body}");
    assert!(body.contains("kafka"), "{body}");
    wait_ready(&server);
    wait_serves(&server, &expected);

    let etag = exchange(&server, &get("/api/customers/acct-00000003")).header("ETag").map(str::to_string);
    assert_eq!(etag.as_deref(), Some("\"1700000500032\""));
    assert_eq!(http_get(&server, "/api/customers/acct-00000001").0, 200, "bill tombstone left the customer alone");

    for reason in ["bad_magic", "unknown_schema", "malformed", "key_not_utf8", "truncated"] {
        let n = metric(&server, &format!("push_cache_kafka_records_skipped_total{{reason=\"{reason}\"}}"));
        assert_eq!(n, 1, "skips for {reason}");
    }
    assert_eq!(metric(&server, "push_cache_kafka_records_applied_total{type=\"customer\"}"), 75);
    assert_eq!(metric(&server, "push_cache_kafka_tombstones_applied_total"), 6);
    assert_eq!(metric(&server, "push_cache_kafka_lag{topic=\"bills\",partition=\"0\"}"), 0);

    // Following the topic after catch-up: an update and a tombstone.
    let (v, json) = customer(7, 3);
    producer.send_avro("customers", "acct-00000007", &schemas.customer, v);
    producer.tombstone("customers", "acct-00000008");
    producer.flush();
    wait_until("the update", Duration::from_secs(20), || http_get(&server, "/api/customers/acct-00000007").1 == json);
    wait_until("the tombstone", Duration::from_secs(20), || http_get(&server, "/api/customers/acct-00000008").0 == 404);
}

#[test]
fn registry_down_at_start_is_waited_out() {
    let broker = Broker::start();
    for t in TOPICS {
        broker.create_topic(t, 1);
    }
    let dir = temp_dir("registry");
    let data = dir.join("registry.json");
    let reg = registry::spawn("127.0.0.1:0", Some(data.clone()), None).unwrap();
    let reg_addr = reg.addr;
    let reg_url = format!("http://{reg_addr}");
    let schemas = register_all(&reg_url);
    let expected = produce_dataset(&broker.producer(), &schemas);
    reg.stop();

    let port = free_port();
    let server = Server::start_yaml(&config(port, &broker.bootstrap(), &reg_url), port, &[]);
    wait_until("readiness to name the registry", Duration::from_secs(30), || {
        let (status, body) = http_get(&server, "/health/ready");
        status == 503 && body.contains("schema_registry")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(http_get(&server, "/health/ready").0, 503);

    let _reg = registry::spawn(&reg_addr.to_string(), Some(data), None).unwrap();
    wait_ready(&server);
    wait_serves(&server, &expected);
    assert_eq!(metric(&server, "push_cache_kafka_records_skipped_total"), 0, "nothing skipped for an outage");
}

#[test]
fn broker_killed_and_restarted_mid_stream_converges() {
    let (broker, reg) = stack_with(Broker::start_proxied());
    let reg_url = format!("http://{}", reg.addr);
    let schemas = register_all(&reg_url);
    let mut expected = produce_dataset(&broker.producer(), &schemas);
    let port = free_port();
    let server = Server::start_yaml(&config(port, &broker.bootstrap(), &reg_url), port, &[("CAPTURE_LOG", "info")]);
    wait_ready(&server);
    let (st, body) = http_get(&server, "/api/customers/acct-00000020");
    assert_eq!(st, 200, "{body}\n{}\n{}", http_get(&server, "/metrics").1, server.log());

    // Freeze the broker: serving goes on from memory.
    broker.pause();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(http_get(&server, "/api/customers/acct-00000020").0, 200);
    broker.resume();

    // Take it away as a crash does (connections reset, reconnects refused)
    // long enough for every client timeout, and bring it back with its log.
    // (tansu's memory storage cannot survive a real restart: see proxy.rs.)
    let producer = broker.producer();
    producer.send_avro("customers", "acct-00000001", &schemas.customer, customer(1, 7).0);
    producer.flush();
    broker.outage();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(http_get(&server, "/api/customers/acct-00000020").0, 200, "serving survives the broker");
    // Updates and tombstones queued by the producer meanwhile land on recovery.
    for i in 0..60u64 {
        if (40..45).contains(&i) {
            continue;
        }
        let (v, json) = customer(i, 5);
        producer.send_avro("customers", &format!("acct-{i:08}"), &schemas.customer, v);
        expected[i as usize].1 = Some(json);
    }
    for i in 40..45u64 {
        producer.tombstone("customers", &format!("acct-{i:08}"));
        expected[i as usize].1 = None;
    }
    broker.recover();
    producer.flush();
    wait_serves(&server, &expected);
    assert_eq!(metric(&server, "push_cache_kafka_records_skipped_total"), 0, "nothing skipped for an outage");
}
