//! `runtime.index: replicated` with real processes (a tansu broker, the
//! bundled registry, the binary with two shards): every shard indexes every
//! key, so no GET or listing is forwarded; API writes and Kafka records on
//! the same keys, racing, leave every shard holding the same entries; and a
//! warm restart from a snapshot gives every shard every key again.
//!
//! Each test fails with `index: partitioned` (forwarded reads, or per-shard
//! entry counts that differ).

mod common;

use common::kafka::*;
use common::*;
use push_cache::registry::server as registry;
use std::path::Path;
use std::time::Duration;

const KEYS: u64 = 600;

struct Stack {
    broker: Broker,
    _registry: registry::RegistryHandle,
    registry_url: String,
    customer: Schema,
}

fn stack() -> Stack {
    let broker = Broker::start();
    broker.create_topic("customers", 3);
    let reg = registry::spawn("127.0.0.1:0", None, None).unwrap();
    let registry_url = format!("http://{}", reg.addr);
    let customer = register(&registry_url, "customers-value", CUSTOMER_V1);
    Stack { broker, _registry: reg, registry_url, customer }
}

impl Stack {
    fn serve(&self, snapshots: Option<&Path>) -> Server {
        let port = free_port();
        let stores = ["{name: customers, type: in_memory, schemas: [customer]}"];
        let routes = ["{path: /customers, store: customers}"];
        let mut yaml = kafka_config(port, &self.broker.bootstrap(), &self.registry_url, "customers", &stores, &routes);
        yaml.push_str("runtime: {shards: 2, index: replicated}\n");
        if let Some(dir) = snapshots {
            yaml.push_str(&format!("snapshot: {{dir: '{}', interval_seconds: 3600}}\n", dir.display()));
        }
        let server = Server::start_yaml(&yaml, port, &[]);
        wait_until("readiness", Duration::from_secs(60), || http_get(&server, "/health/ready").0 == 200);
        server
    }

    fn produce(&self, keys: std::ops::Range<u64>, version: u64) {
        let p = self.broker.producer();
        for i in keys {
            p.send_avro("customers", &format!("acct-{i:08}"), &self.customer, customer(i, version).0);
        }
        p.flush();
    }
}

/// The sum of a metric's series whose line starts with `prefix`.
fn metric_lines(server: &Server, prefix: &str) -> Vec<(String, u64)> {
    let text = http_get(server, "/metrics").1;
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| Some((l.rsplit_once(' ')?.0.to_string(), l.rsplit(' ').next()?.parse().ok()?)))
        .collect()
}

fn forwarded(server: &Server) -> u64 {
    metric_lines(server, "push_cache_requests_forwarded_total").iter().map(|(_, v)| v).sum()
}

/// Entries each shard holds for the customers store.
fn entries_per_shard(server: &Server) -> Vec<u64> {
    metric_lines(server, "push_cache_store_entries{").iter().map(|(_, v)| *v).collect()
}

/// Every key answered with its body at `version`, over new connections
/// (which the kernel spreads over both shards).
fn serves(server: &Server, keys: std::ops::Range<u64>, version: u64) {
    for i in keys {
        let want = customer(i, version).1;
        wait_until(&format!("acct-{i:08} v{version}"), Duration::from_secs(20), || {
            http_get(server, &format!("/api/customers/acct-{i:08}")) == (200, want.clone())
        });
    }
}

/// The same full listing from whichever shard answers, on many connections.
fn listings_agree(server: &Server) -> Vec<String> {
    let first = http_get(server, "/api/customers").1;
    for _ in 0..16 {
        assert_eq!(http_get(server, "/api/customers").1, first, "every shard lists the same keys");
    }
    serde_json::from_str(&first).unwrap()
}

#[test]
fn every_shard_serves_every_key_without_forwarding() {
    let s = stack();
    s.produce(0..KEYS, 1);
    let server = s.serve(None);
    serves(&server, 0..KEYS, 1);
    assert_eq!(entries_per_shard(&server), vec![KEYS, KEYS], "each shard indexes every key");
    let listed = listings_agree(&server);
    assert_eq!(listed.len() as u64, KEYS);
    let page = exchange(&server, &get("/api/customers?limit=10&after=acct-00000100"));
    assert_eq!(page.json(), serde_json::json!((101..111).map(|i| format!("acct-{i:08}")).collect::<Vec<_>>()));
    assert_eq!(forwarded(&server), 0, "nothing forwarded: every shard holds every key");
}

#[test]
fn api_writes_racing_records_leave_every_shard_the_same() {
    let s = stack();
    s.produce(0..KEYS, 1);
    let server = s.serve(None);
    serves(&server, 0..KEYS, 1);
    let writer = std::thread::spawn({
        let (broker, schema) = (s.broker.bootstrap(), s.customer.clone());
        move || {
            // Records for the same keys as the API writes below, meanwhile.
            let p = common::kafka::TestProducer::connect(&broker);
            for round in 2..6 {
                for i in 0..KEYS / 2 {
                    p.send_avro("customers", &format!("acct-{i:08}"), &schema, customer(i, round).0);
                }
                p.flush();
            }
        }
    });
    for i in 0..KEYS / 2 {
        let key = format!("acct-{i:08}");
        let r = match i % 3 {
            0 => exchange(&server, &put(&format!("/api/customers/{key}"), &customer_body_for(&key, 99))),
            1 => exchange(&server, &delete(&format!("/api/customers/{key}"))),
            _ => exchange(&server, &post("/api/customers", &customer_body_for(&format!("new-{i:08}"), 1))),
        };
        assert!(matches!(r.status, 200 | 201 | 404), "{key}: {} {}", r.status, r.text());
        // Read-your-write on another connection (possibly the other shard).
        if i % 3 == 2 {
            assert_eq!(http_get(&server, &format!("/api/customers/new-{i:08}")).0, 200, "new-{i:08}");
        }
    }
    writer.join().unwrap();
    // Once everything is applied, both shards hold the same entries.
    s.produce(KEYS..KEYS + 1, 1);
    serves(&server, KEYS..KEYS + 1, 1);
    wait_until("both shards to hold the same number of entries", Duration::from_secs(20), || {
        let e = entries_per_shard(&server);
        e.len() == 2 && e[0] == e[1]
    });
    let listed = listings_agree(&server);
    for key in listed.iter().filter(|k| k.starts_with("acct-")).take(200) {
        let first = http_get(&server, &format!("/api/customers/{key}"));
        for _ in 0..4 {
            assert_eq!(http_get(&server, &format!("/api/customers/{key}")), first, "{key} differs between shards");
        }
    }
    // A POST of a present key is 409 whichever shard takes it.
    for _ in 0..8 {
        assert_eq!(exchange(&server, &post("/api/customers", &customer_body_for("new-00000002", 7))).status, 409);
    }
}

#[test]
fn a_warm_restart_gives_every_shard_every_key() {
    let s = stack();
    let dir = temp_dir("replicated-snapshots");
    s.produce(0..KEYS, 1);
    let mut server = s.serve(Some(&dir));
    serves(&server, 0..KEYS, 1);
    let (code, _) = server.terminate();
    assert_eq!(code, Some(0), "{}", server.log());
    s.produce(0..10, 2);
    let server = s.serve(Some(&dir));
    assert_eq!(
        metric_lines(&server, "push_cache_start_mode{mode=\"snapshot\"}").first().map(|(_, v)| *v),
        Some(1),
        "started from the snapshot:\n{}",
        server.log()
    );
    serves(&server, 0..10, 2);
    serves(&server, 10..KEYS, 1);
    assert_eq!(entries_per_shard(&server), vec![KEYS, KEYS]);
    assert_eq!(listings_agree(&server).len() as u64, KEYS);
    assert_eq!(forwarded(&server), 0);
}

fn customer_body_for(key: &str, version: u64) -> String {
    format!(
        r#"{{"accountId":"{key}","name":"Put {version}","address":"1 Road","phone":"+1","createdAt":1,"updatedAt":{version}}}"#
    )
}

fn put(path: &str, body: &str) -> Vec<u8> {
    let head = format!("PUT {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n");
    format!("{head}Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

fn delete(path: &str) -> Vec<u8> {
    format!("DELETE {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}
