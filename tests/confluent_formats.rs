//! Every value format and key format Confluent's serializers write, under
//! every compression codec, end to end: `tests/confluent_formats.py`
//! produces with confluent-kafka's own `AvroSerializer`, `ProtobufSerializer`
//! and `JSONSerializer` (schema references, keys written with a schema,
//! gzip, snappy, lz4 and zstd batches) into a tansu broker through the
//! bundled registry; the real push-cache binary must then serve every body
//! byte for byte as the script computed it, for both schema versions.
//! Writes through Kafka on the same topic then encode their keys and bodies
//! as those producers do: an Avro key, a value schema with references.

mod common;

use common::kafka::*;
use common::*;
use push_cache::registry::server as registry;
use std::process::Command;
use std::time::Duration;

fn config(port: u16, brokers: &str, registry_url: &str) -> String {
    let stores = [
        "{name: customers, type: in_memory, schemas: [customer]}",
        "{name: bills, type: in_memory, schemas: [bill]}",
        "{name: tickets, type: in_memory, schemas: [ticket]}",
    ];
    let routes = [
        "{path: /customers, store: customers}",
        "{path: /bills, store: bills}",
        "{path: /tickets, store: tickets, key_field: ticketId}",
        "{path: /written/customers, store: customers, writes: kafka, topic: fmt-avro}",
    ];
    kafka_config(port, brokers, registry_url, "[fmt-avro, fmt-protobuf, fmt-json]", &stores, &routes)
}

/// Runs the producer script for `phase`; returns its [path, body] list.
fn produce(bootstrap: &str, registry_url: &str, dir: &std::path::Path, phase: &str) -> Vec<(String, Option<String>)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/confluent_formats.py");
    let out = Command::new("python3").arg(script).args([bootstrap, registry_url]).arg(dir).arg(phase).output().unwrap();
    assert!(
        out.status.success(),
        "confluent_formats.py {phase} failed (scripts/install-deps.sh installs its Python packages):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
    let text = std::fs::read_to_string(dir.join(format!("expected-{phase}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn metric(server: &Server, line_prefix: &str) -> u64 {
    let text = http_get(server, "/metrics").1;
    text.lines().filter(|l| l.starts_with(line_prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
}

/// Waits until every path serves its body (404 for None); on timeout,
/// names the first path that does not.
fn wait_serves(server: &Server, expected: &[(String, Option<String>)]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let wrong = expected.iter().find_map(|(path, body)| {
            let (status, text) = http_get(server, path);
            let right = match body {
                Some(b) => status == 200 && text == *b,
                None => status == 404,
            };
            (!right).then(|| format!("{path}: got {status} {text}\nwant {body:?}"))
        });
        let Some(wrong) = wrong else { return };
        assert!(std::time::Instant::now() < deadline, "not served as expected: {wrong}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn confluent_serializers_every_format_and_codec_served_exactly() {
    let broker = Broker::start();
    for topic in ["fmt-avro", "fmt-protobuf", "fmt-json"] {
        broker.create_topic(topic, 2);
    }
    let reg = registry::spawn("127.0.0.1:0", None, None).unwrap();
    let reg_url = format!("http://{}", reg.addr);
    let dir = temp_dir("formats");

    let mut expected = produce(&broker.bootstrap(), &reg_url, &dir, "v1");
    assert_eq!(expected.len(), 3 * 4 * 8);
    let port = free_port();
    let server = Server::start_yaml(&config(port, &broker.bootstrap(), &reg_url), port, &[]);
    wait_until("readiness", Duration::from_secs(90), || http_get(&server, "/health/ready").0 == 200);
    wait_serves(&server, &expected);

    // The next versions, followed live: new fields, a new referenced version, a tombstone.
    for (path, body) in produce(&broker.bootstrap(), &reg_url, &dir, "v2") {
        match expected.iter_mut().find(|(p, _)| *p == path) {
            Some(entry) => entry.1 = body,
            None => expected.push((path, body)),
        }
    }
    wait_serves(&server, &expected);

    let etag = |path: &str| exchange(&server, &get(path)).header("ETag").map(str::to_string);
    assert_eq!(etag("/api/customers/acct-zstd-001").as_deref(), Some("\"1700000001500\""), "Avro updatedAt");
    assert_eq!(etag("/api/bills/acct-lz4-002").as_deref(), Some("\"1700000000009\""), "Protobuf int64 updatedAt");
    let ticket_key = "%7B%22region%22%3A%22gzip%22%2C%22id%22%3A3%7D";
    assert_eq!(etag(&format!("/api/tickets/{ticket_key}")).as_deref(), Some("\"1700000000003\""), "JSON updatedAt");
    assert_eq!(metric(&server, "push_cache_kafka_records_skipped_total"), 0, "nothing skipped:\n{}", server.log());
    writes_use_the_producers_key_and_value_schemas(&server, &broker, &expected);
}

/// A PUT and a DELETE through Kafka on the Avro topic: the body is encoded
/// with the latest value schema (whose `Address` comes from a reference) and
/// the key with `fmt-avro-key`, so both land on the compacted keys the
/// Python producer wrote: the topic holds no key of its own making.
fn writes_use_the_producers_key_and_value_schemas(
    server: &Server,
    broker: &Broker,
    expected: &[(String, Option<String>)],
) {
    let distinct = |keys: Vec<Vec<u8>>| keys.into_iter().collect::<std::collections::BTreeSet<_>>();
    let before = distinct(record_keys(&broker.bootstrap(), "fmt-avro", 2));
    let (path, body) = expected.iter().find(|(p, b)| p.starts_with("/api/customers/") && b.is_some()).unwrap();
    let key = path.trim_start_matches("/api/customers/");
    let mut changed: serde_json::Value = serde_json::from_str(body.as_ref().unwrap()).unwrap();
    changed["name"] = "Written Through".into();
    let put = exchange(server, &request("PUT", &format!("/api/written/customers/{key}"), Some(&changed.to_string())));
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(serde_json::from_str::<serde_json::Value>(&http_get(server, path).1).unwrap(), changed);
    let (gone, _) = expected.iter().rev().find(|(p, b)| p.starts_with("/api/customers/") && b.is_some()).unwrap();
    let del = exchange(server, &request("DELETE", &gone.replace("/api/customers/", "/api/written/customers/"), None));
    assert_eq!(del.status, 200, "{}", del.text());
    assert_eq!(http_get(server, gone).0, 404);
    let after = record_keys(&broker.bootstrap(), "fmt-avro", 2);
    assert!(after.iter().all(|k| k.first() == Some(&0)), "every key in Confluent framing");
    assert_eq!(distinct(after), before, "the PUT and the DELETE reused the producers' keys");
}

fn request(method: &str, path: &str, body: Option<&str>) -> Vec<u8> {
    let body = body.unwrap_or_default();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n");
    format!("{head}Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}
