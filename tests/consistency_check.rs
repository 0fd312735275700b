//! `push-cache-check` against real parts: a tansu broker, the bundled schema
//! registry and the push-cache binary. It must find no differences in a
//! cache that mirrors its topics, and name exactly the keys changed through
//! the API (writes change the cache only, never the topics).

mod common;

use common::kafka::*;
use common::*;
use push_cache::registry::server as registry;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn config(port: u16, brokers: &str, registry_url: &str) -> String {
    let stores =
        ["{name: customers, type: in_memory, schemas: [customer]}", "{name: bills, type: in_memory, schemas: [bill]}"];
    let routes = ["{path: /customers, store: customers}", "{path: /bills, store: bills}"];
    kafka_config(port, brokers, registry_url, "[customers, bills]", &stores, &routes)
}

/// Customers with updates and tombstones over three partitions, bills with a
/// tombstone on a key customers also have, and one undecodable record.
fn produce(p: &TestProducer, customer_schema: &Schema, bill_schema: &Schema) {
    for i in 0..40 {
        p.send_avro("customers", &format!("acct-{i:08}"), customer_schema, customer(i, 1).0);
    }
    for i in 0..10 {
        p.send_avro("customers", &format!("acct-{i:08}"), customer_schema, customer(i, 2).0);
    }
    for i in 30..35 {
        p.tombstone("customers", &format!("acct-{i:08}"));
    }
    for i in 0..5 {
        p.send_avro("bills", &format!("acct-{i:08}"), bill_schema, bill(i).0);
    }
    p.tombstone("bills", "acct-00000001");
    p.send_raw("customers", b"poison", Some(&[7, 0, 0, 0, 1, 2]));
    p.flush();
}

fn run_check(server: &Server) -> (i32, String, String) {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_push-cache-check"))
        .arg("--config")
        .arg(server.dir.join("config.yaml"))
        .arg("--secrets")
        .arg(server.dir.join("secrets"))
        .arg("--url")
        .arg(format!("http://{}", server.addr))
        .output()
        .expect("run push-cache-check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Ready, and holding the last record of every partition. Readiness alone
/// is not enough with tansu: it reports a partition's high watermark as its
/// last batch's base offset + 1, so the service can be ready one batch early.
fn wait_converged(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = |path: &str| exchange(server, &get(path)).status;
    let converged = || {
        status("/health/ready") == 200
            && (30..35).all(|i| status(&format!("/api/customers/acct-{i:08}")) == 404)
            && status("/api/bills/acct-00000001") == 404
            && exchange(server, &get("/metrics"))
                .text()
                .contains("push_cache_kafka_records_skipped_total{reason=\"bad_magic\"} 1")
    };
    while !converged() {
        assert!(Instant::now() < deadline, "the service did not catch up: {}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The difference lines (everything but the summary), sorted.
fn difference_lines(stdout: &str) -> Vec<String> {
    let mut lines: Vec<String> = stdout
        .lines()
        .filter(|l| !l.contains(" differences: "))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    lines
}

#[test]
fn finds_no_differences_then_exactly_the_keys_written_through_the_api() {
    let broker = Broker::start();
    broker.create_topic("customers", 3);
    broker.create_topic("bills", 1);
    let reg = registry::spawn("127.0.0.1:0", None, None).unwrap();
    let reg_url = format!("http://{}", reg.addr);
    let customer_schema = register(&reg_url, "customers-value", CUSTOMER_V1);
    let bill_schema = register(&reg_url, "bills-value", BILL);
    produce(&broker.producer(), &customer_schema, &bill_schema);

    let port = free_port();
    let server = Server::start_yaml(&config(port, &broker.bootstrap(), &reg_url), port, &[]);
    wait_converged(&server);

    let (code, stdout, stderr) = run_check(&server);
    eprintln!("first run:\n{stdout}{stderr}");
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.starts_with("0 differences: 0 missing, 0 extra, 0 different; 2 routes, 39 keys expected from 62 records (6 tombstones, 1 undecodable: 1 bad_magic)"), "{stdout}");
    assert!(stderr.contains("customers/") && stderr.contains("bad_magic"), "the poison record is reported: {stderr}");

    // Change the cache only: add a key, remove one, replace one's value.
    assert_eq!(exchange(&server, &post("/api/customers", r#"{"accountId":"not-in-topic","name":"x"}"#)).status, 201);
    assert_eq!(exchange(&server, b"DELETE /api/customers/acct-00000003 HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
    assert_eq!(exchange(&server, b"DELETE /api/bills/acct-00000004 HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
    assert_eq!(exchange(&server, &post("/api/bills", r#"{"accountId":"acct-00000004","year":1999}"#)).status, 201);

    let (code, stdout, stderr) = run_check(&server);
    eprintln!("second run:\n{stdout}{stderr}");
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(
        difference_lines(&stdout),
        [
            "different /api/bills/acct-00000004",
            "extra /api/customers/not-in-topic",
            "missing /api/customers/acct-00000003"
        ],
        "{stdout}"
    );
    assert!(stdout.contains("year: expected 2024, got 1999") && stdout.contains("payments: expected [{"), "{stdout}");
    assert!(stdout.contains("3 differences: 1 missing, 1 extra, 1 different"), "{stdout}");
}

#[test]
fn usage_and_config_errors_exit_2() {
    let bin = env!("CARGO_BIN_EXE_push-cache-check");
    let out = Command::new(bin).args(["--url", "http://127.0.0.1:1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config FILE is required"));

    let dir = temp_dir("check");
    let file = dir.join("config.yaml");
    std::fs::write(&file, "kafka: {brokers: b}\n").unwrap();
    let out = Command::new(bin).arg("--config").arg(&file).args(["--url", "http://127.0.0.1:1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("configuration error"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let port = free_port();
    std::fs::write(&file, config_yaml(port, "", &format!("{KAFKA_NOWHERE}{DEFAULT_CACHE}"))).unwrap();
    let out = Command::new(bin)
        .arg("--config")
        .arg(&file)
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("check --url and that push-cache is running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(dir).unwrap();
}
