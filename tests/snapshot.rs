//! Warm restarts from snapshots, with real processes: a tansu broker, the
//! bundled schema registry and the push-cache binary, stopped with SIGTERM
//! (which writes the final snapshot) or killed with SIGKILL.
//!
//! Each test checks what a client sees after the restart: every key of the
//! topic served with its latest body, deleted keys 404, no key more (the
//! listing), and how the process started (`push_cache_start_mode`).

mod common;

use common::kafka::*;
use common::*;
use push_cache::registry::server as registry;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Key -> latest body (None: deleted).
type Expected = Vec<(String, Option<String>)>;

struct Stack {
    broker: Broker,
    reg: registry::RegistryHandle,
    customer: Schema,
    bill: Schema,
    snapshots: PathBuf,
}

impl Stack {
    fn start() -> Stack {
        Stack::with_broker(Broker::start(), temp_dir("snapshots"))
    }

    fn with_broker(broker: Broker, snapshots: PathBuf) -> Stack {
        broker.create_topic("customers", 3);
        broker.create_topic("bills", 1);
        let reg = registry::spawn("127.0.0.1:0", None, None).unwrap();
        let url = format!("http://{}", reg.addr);
        let customer = register(&url, "customers-value", CUSTOMER_V1);
        let bill = register(&url, "bills-value", BILL);
        Stack { broker, reg, customer, bill, snapshots }
    }

    fn config(&self, port: u16, customer_schemas: &str, interval: u64) -> String {
        let stores = [
            &format!("{{name: customers, type: in_memory, schemas: {customer_schemas}}}") as &str,
            "{name: bills, type: in_memory, schemas: [bill]}",
        ];
        let routes = ["{path: /customers, store: customers}", "{path: /bills, store: bills}"];
        let reg_url = format!("http://{}", self.reg.addr);
        let yaml = kafka_config(port, &self.broker.bootstrap(), &reg_url, "[customers, bills]", &stores, &routes);
        format!("{yaml}snapshot: {{dir: '{}', interval_seconds: {interval}}}\n", self.snapshots.display())
    }

    fn serve(&self, customer_schemas: &str, interval: u64) -> Server {
        let port = free_port();
        Server::start_yaml(&self.config(port, customer_schemas, interval), port, &[("CAPTURE_LOG", "info")])
    }

    /// Customers `range` at `version` (their bodies in `expected`).
    fn customers(&self, expected: &mut Expected, range: std::ops::Range<u64>, version: u64) {
        let p = self.broker.producer();
        for i in range {
            let (v, json) = customer(i, version);
            p.send_avro("customers", &format!("acct-{i:08}"), &self.customer, v);
            set(expected, &format!("/api/customers/acct-{i:08}"), Some(json));
        }
        p.flush();
    }

    fn delete_customers(&self, expected: &mut Expected, range: std::ops::Range<u64>) {
        let p = self.broker.producer();
        for i in range {
            p.tombstone("customers", &format!("acct-{i:08}"));
            set(expected, &format!("/api/customers/acct-{i:08}"), None);
        }
        p.flush();
    }

    fn delete_bills(&self, expected: &mut Expected, range: std::ops::Range<u64>) {
        let p = self.broker.producer();
        for i in range {
            p.tombstone("bills", &format!("acct-{i:08}"));
            set(expected, &format!("/api/bills/acct-{i:08}"), None);
        }
        p.flush();
    }

    fn bills(&self, expected: &mut Expected, range: std::ops::Range<u64>) {
        let p = self.broker.producer();
        for i in range {
            let (v, json) = bill(i);
            p.send_avro("bills", &format!("acct-{i:08}"), &self.bill, v);
            set(expected, &format!("/api/bills/acct-{i:08}"), Some(json));
        }
        p.flush();
    }
}

fn set(expected: &mut Expected, path: &str, body: Option<String>) {
    match expected.iter_mut().find(|(p, _)| p == path) {
        Some(slot) => slot.1 = body,
        None => expected.push((path.to_string(), body)),
    }
}

fn metric(server: &Server, line_prefix: &str) -> Option<f64> {
    let text = http_get(server, "/metrics").1;
    text.lines().find(|l| l.starts_with(line_prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

fn start_mode(server: &Server) -> &'static str {
    match (
        metric(server, "push_cache_start_mode{mode=\"snapshot\"}"),
        metric(server, "push_cache_start_mode{mode=\"replay\"}"),
    ) {
        (Some(1.0), Some(0.0)) => "snapshot",
        (Some(0.0), Some(1.0)) => "replay",
        other => panic!("push_cache_start_mode is missing or inconsistent: {other:?}"),
    }
}

fn applied(server: &Server) -> f64 {
    metric(server, "push_cache_kafka_records_applied_total{type=\"customer\"}").unwrap_or(0.0)
}

/// Ready, then serving exactly `expected`: every body, every 404, and the
/// listings hold no other key.
fn serves_exactly(server: &Server, expected: &Expected) {
    wait_until("readiness", Duration::from_secs(120), || http_get(server, "/health/ready").0 == 200);
    let converged = |server: &Server| {
        expected.iter().all(|(path, body)| {
            let (status, text) = http_get(server, path);
            match body {
                Some(b) => status == 200 && &text == b,
                None => status == 404,
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !converged(server) {
        if Instant::now() >= deadline {
            let wrong: Vec<String> = expected
                .iter()
                .filter_map(|(path, body)| {
                    let (status, text) = http_get(server, path);
                    let right = match body {
                        Some(b) => status == 200 && &text == b,
                        None => status == 404,
                    };
                    (!right).then(|| format!("{path}: {status} {text}"))
                })
                .take(5)
                .collect();
            panic!("the cache did not converge: {wrong:?}; log:\n{}", server.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for route in ["customers", "bills"] {
        let (status, body) = http_get(server, &format!("/api/{route}"));
        assert_eq!(status, 200, "{body}");
        let mut listed: Vec<String> = serde_json::from_str(&body).unwrap();
        listed.sort();
        let prefix = format!("/api/{route}/");
        let mut present: Vec<String> = expected
            .iter()
            .filter(|(p, b)| p.starts_with(&prefix) && b.is_some())
            .map(|(p, _)| p[prefix.len()..].to_string())
            .collect();
        present.sort();
        assert_eq!(listed, present, "the {route} listing");
    }
}

fn stop(server: &mut Server) {
    let (code, took) = server.terminate();
    assert_eq!(code, Some(0), "exit after SIGTERM; log:\n{}", server.log());
    assert!(took < Duration::from_secs(6), "stop took {took:?}");
}

fn shard_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    files.sort();
    files
}

/// 300 customers on 3 partitions and 20 bills, served, then SIGTERM.
fn first_run(stack: &Stack) -> Expected {
    let mut expected = Vec::new();
    stack.customers(&mut expected, 0..300, 1);
    stack.bills(&mut expected, 0..20);
    let mut server = stack.serve("[customer]", 3600);
    serves_exactly(&server, &expected);
    assert_eq!(start_mode(&server), "replay", "nothing to load the first time");
    stop(&mut server);
    assert!(stack.snapshots.join("manifest.json").exists(), "SIGTERM wrote the manifest");
    assert_eq!(shard_files(&stack.snapshots).len(), 2, "one file per shard");
    expected
}

/// Changes made while the service is down. No bill record follows the bill
/// tombstones: only the snapshot can tell the restarted consumer which
/// stores the bills topic feeds.
fn while_down(stack: &Stack, expected: &mut Expected) {
    stack.delete_bills(expected, 0..3);
    stack.delete_customers(expected, 20..25);
    stack.customers(expected, 0..10, 2);
    stack.customers(expected, 300..320, 1);
}

#[test]
fn sigterm_writes_a_snapshot_and_the_restart_resumes_after_it() {
    let stack = Stack::start();
    let mut expected = first_run(&stack);
    while_down(&stack, &mut expected);
    let server = stack.serve("[customer]", 3600);
    assert_eq!(start_mode(&server), "snapshot", "log:\n{}", server.log());
    serves_exactly(&server, &expected);
    // Only the 30 customer records produced while down were applied: the
    // consumer resumed after the snapshot's offsets instead of replaying 330.
    assert_eq!(applied(&server), 30.0, "{}", server.log());
    assert_eq!(metric(&server, "push_cache_kafka_tombstones_applied_total"), Some(8.0));
    assert!(metric(&server, "push_cache_snapshot_bytes").unwrap() > 300.0 * 100.0);
    assert!(metric(&server, "push_cache_snapshot_age_seconds").unwrap() < 600.0);
}

/// A first run, `spoil`, then a restart that must replay everything.
fn falls_back_to_replay(spoil: impl FnOnce(&Stack), customer_schemas: &str) {
    let stack = Stack::start();
    let mut expected = first_run(&stack);
    while_down(&stack, &mut expected);
    spoil(&stack);
    let server = stack.serve(customer_schemas, 3600);
    assert_eq!(start_mode(&server), "replay", "log:\n{}", server.log());
    serves_exactly(&server, &expected);
    assert_eq!(applied(&server), 330.0, "replayed from the beginning");
    assert!(server.log().contains("snapshot not used"), "the reason is logged:\n{}", server.log());
}

#[test]
fn a_torn_shard_file_is_discarded() {
    falls_back_to_replay(
        |stack| {
            let file = &shard_files(&stack.snapshots)[1];
            let len = std::fs::metadata(file).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(file).unwrap().set_len(len / 2).unwrap();
        },
        "[customer]",
    );
}

#[test]
fn a_flipped_byte_is_discarded() {
    falls_back_to_replay(
        |stack| {
            let file = &shard_files(&stack.snapshots)[0];
            let mut bytes = std::fs::read(file).unwrap();
            let at = bytes.len() * 2 / 3;
            bytes[at] ^= 0x01;
            std::fs::write(file, bytes).unwrap();
        },
        "[customer]",
    );
}

#[test]
fn a_snapshot_of_another_configuration_is_discarded() {
    // Same stores and routes, but the customers store now also takes
    // tickets: what it may hold differs, so the fingerprint does (no ticket
    // is produced, so what it serves stays the same).
    falls_back_to_replay(|_| {}, "[customer, ticket]");
}

#[test]
fn a_topic_recreated_with_fewer_records_is_discarded() {
    let stack = Stack::start();
    first_run(&stack);
    // A new broker with the same topics but fewer records: the snapshot's
    // offsets lie beyond what the partitions now hold.
    let Stack { broker, reg, snapshots, .. } = stack;
    drop((broker, reg));
    let stack = Stack::with_broker(Broker::start(), snapshots);
    let mut expected = Vec::new();
    stack.customers(&mut expected, 1000..1030, 1);
    let server = stack.serve("[customer]", 3600);
    assert_eq!(start_mode(&server), "replay", "log:\n{}", server.log());
    serves_exactly(&server, &expected);
    assert!(server.log().contains("re-created or truncated"), "{}", server.log());
}

#[test]
fn kill_9_while_a_snapshot_is_written_leaves_the_previous_one_usable() {
    let stack = Stack::start();
    let mut expected = Vec::new();
    stack.customers(&mut expected, 0..20_000, 1);
    let mut server = stack.serve("[customer]", 1);
    serves_exactly(&server, &expected);
    let manifest = stack.snapshots.join("manifest.json");
    wait_until("a first snapshot", Duration::from_secs(60), || manifest.exists());
    stack.customers(&mut expected, 0..100, 2);
    // Kill it while a later snapshot's temporary file is being written.
    let deadline = Instant::now() + Duration::from_secs(60);
    let tmp = loop {
        let found = std::fs::read_dir(&stack.snapshots)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".snap.tmp"));
        if let Some(path) = found {
            break path;
        }
        assert!(Instant::now() < deadline, "no snapshot was caught being written");
        std::thread::sleep(Duration::from_micros(200));
    };
    unsafe { libc::kill(server.pid() as i32, libc::SIGKILL) };
    server.child.wait().unwrap();
    assert!(tmp.exists(), "killed while {} was being written", tmp.display());
    stack.customers(&mut expected, 100..200, 2);
    let server = stack.serve("[customer]", 3600);
    assert_eq!(start_mode(&server), "snapshot", "the previous snapshot was used; log:\n{}", server.log());
    serves_exactly(&server, &expected);
}

/// The sum over shards of a per-store metric of the customers store.
fn customers_metric(server: &Server, name: &str) -> f64 {
    let text = http_get(server, "/metrics").1;
    let prefix = format!("{name}{{shard=");
    text.lines()
        .filter(|l| l.starts_with(&prefix) && l.contains("store=\"customers\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A `compression: zstd` store's snapshot keeps its zstd frames and the
/// dictionaries they need: the files are smaller than the raw bodies, and
/// the warm start serves every body without recompressing or retraining.
#[test]
fn a_compressed_store_restarts_from_its_frames_and_dictionaries() {
    let stack = Stack::start();
    let mut expected = Vec::new();
    stack.customers(&mut expected, 0..3_000, 1);
    let zstd = "[customer], compression: zstd";
    let mut server = stack.serve(zstd, 3600);
    serves_exactly(&server, &expected);
    wait_until("the store to be compressed", Duration::from_secs(60), || {
        // Each write compresses a few of the bodies stored before the dictionary.
        stack.customers(&mut expected, 0..50, 1);
        customers_metric(&server, "push_cache_store_bytes")
            < 0.6 * customers_metric(&server, "push_cache_store_raw_bytes")
    });
    let raw = customers_metric(&server, "push_cache_store_raw_bytes");
    stop(&mut server);
    let written: u64 = shard_files(&stack.snapshots).iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    // Written plain it would take about the raw bytes (less the 12-byte headers).
    assert!((written as f64) < 0.7 * raw, "snapshot {written} bytes against {raw} raw: the frames are kept");

    while_down(&stack, &mut expected);
    let server = stack.serve(zstd, 3600);
    assert_eq!(start_mode(&server), "snapshot", "log:\n{}", server.log());
    serves_exactly(&server, &expected);
    assert_eq!(customers_metric(&server, "push_cache_store_dictionary_trainings_total"), 0.0, "nothing retrained");
    assert!(customers_metric(&server, "push_cache_store_dictionaries") >= 1.0);
    assert!(
        customers_metric(&server, "push_cache_store_bytes")
            < 0.6 * customers_metric(&server, "push_cache_store_raw_bytes")
    );
}
