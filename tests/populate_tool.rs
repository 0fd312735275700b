//! The `populate_kafka` example against a real broker and registry: every
//! key it generates (records, updates, tombstones) is served exactly.
//! Needs the example built: `cargo test --examples --tests` (as `make test`).

mod common;

use common::kafka::Broker;
use common::*;
use push_cache::registry::server as registry;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(path.exists(), "{} is not built: run `cargo build --examples` (make test does)", path.display());
    path
}

#[test]
fn populate_kafka_records_are_all_served() {
    let broker = Broker::start();
    for t in ["customers", "bills", "usage", "tickets"] {
        broker.create_topic(t, 2);
    }
    let reg = registry::spawn("127.0.0.1:0", None, None).unwrap();
    let port = free_port();
    let yaml = config_yaml(
        port,
        "",
        &format!(
            "kafka: {{brokers: '{}', group_id: populate-test, topic: [customers, bills, usage, tickets], schema_registry_url: 'http://{}'}}
cache:
  stores:
    - {{name: customers, type: in_memory, schemas: [customer]}}
    - {{name: bills, type: in_memory, schemas: [bill]}}
    - {{name: usage, type: in_memory, schemas: [usage]}}
    - {{name: tickets, type: in_memory, schemas: [ticket]}}
  routes:
    - {{path: /customers, store: customers}}
    - {{path: /bills, store: bills}}
    - {{path: /usage, store: usage}}
    - {{path: /tickets, store: tickets, key_field: ticketId}}
runtime: {{shards: 2}}
",
            broker.bootstrap(),
            reg.addr
        ),
    );
    let server = Server::start_yaml(&yaml, port, &[]);
    let config = server.dir.join("config.yaml");
    for (kind, route) in [("customer", "customers"), ("bill", "bills"), ("usage", "usage"), ("ticket", "tickets")] {
        let expect = server.dir.join(format!("{kind}.jsonl"));
        let out = Command::new(example("populate_kafka"))
            .args([
                "-c",
                config.to_str().unwrap(),
                "-m",
                kind,
                "-n",
                "300",
                "--updates",
                "40",
                "--tombstones",
                "15",
                "--seed",
                "42",
                "--expect",
            ])
            .arg(&expect)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            report.contains("messages: 355") && report.contains("rate:") && report.contains("message size: min"),
            "{report}"
        );
        let expected: Vec<serde_json::Value> =
            std::fs::read_to_string(&expect).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(expected.len(), 300);
        assert_eq!(expected.iter().filter(|e| e["body"].is_null()).count(), 15);
        let deadline = Instant::now() + Duration::from_secs(60);
        for e in &expected {
            let path = format!("/api/{route}/{}", e["key"].as_str().unwrap());
            let want = e["body"].to_string();
            loop {
                let r = exchange(&server, &get(&path));
                let ok = match e["body"].is_null() {
                    true => r.status == 404,
                    false => r.status == 200 && r.text() == want,
                };
                if ok {
                    break;
                }
                assert!(Instant::now() < deadline, "{path}: got {} {}, want {}", r.status, r.text(), e["body"]);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
