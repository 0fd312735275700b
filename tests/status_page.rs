//! The status page (`GET /`) and its JSON twin (`GET /status`), against the
//! real binary fed by tansu and the bundled registry, loaded in a real
//! headless Chromium driven over the DevTools protocol
//! (`scripts/cdp-driver.py`): no console errors, the numbers `/status` gives
//! (which must agree with `/metrics`), updates as records arrive, and a
//! layout that fits a phone's width.
//!
//! `PUSH_CACHE_UPDATE_SCREENSHOT=1` also writes the screenshot to
//! `docs/status-page.png` (the README's picture); it always goes to the
//! target directory.

mod common;

use common::kafka::*;
use common::*;
use push_cache::registry::server as registry;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";

#[test]
fn page_and_json_are_served_with_their_types() {
    let server = Server::start("");
    let page = exchange(&server, &get("/"));
    assert_eq!(page.status, 200);
    assert_eq!(page.header("Content-Type"), Some("text/html; charset=utf-8"));
    let policy = page.header("Content-Security-Policy").unwrap_or_default();
    assert!(policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"), "{policy}");
    assert!(page.text().starts_with("<!doctype html>"), "{}", page.text());
    let head = exchange(&server, b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((head.status, head.body.len()), (200, 0));

    let status = exchange(&server, &get("/status"));
    assert_eq!(status.status, 200);
    assert_eq!(status.header("Content-Type"), Some("application/json"));
    let s = status.json();
    assert_eq!(s["ready"], false, "no broker, so not ready: {s}");
    assert!(s["waiting_for"]["kafka"].is_string(), "{s}");
    assert_eq!(s["shards"].as_array().map(Vec::len), Some(2));
    assert_eq!(s["routes"][1], json!({"path": "/api/tickets", "store": "tickets", "key_field": "ticketId"}));
    assert_eq!(exchange(&server, &post("/status", "{}")).status, 405);
}

#[test]
fn status_page_in_chromium_shows_what_status_and_metrics_say_and_follows_new_records() {
    let mut driver = Driver::start();
    let broker = Broker::start();
    broker.create_topic("customers", 3);
    let reg = registry::spawn("127.0.0.1:0", None, None).unwrap();
    let reg_url = format!("http://{}", reg.addr);
    let schema = register(&reg_url, "customers-value", CUSTOMER_V1);
    let producer = broker.producer();
    for i in 0..40 {
        let (v, _) = customer(i, 1);
        producer.send_avro("customers", &format!("acct-{i:08}"), &schema, v);
    }
    producer.send_raw("customers", b"bad-1", Some(&[7, 0, 0, 0, 1, 2]));
    producer.send_raw("customers", b"bad-2", Some(&[7, 0, 0, 0, 1, 2]));
    producer.send_raw("customers", b"unknown", Some(&push_cache::kafka::decode::encode_frame(99_999, b"\x02a")));
    producer.flush();

    let port = free_port();
    let stores = ["{name: customers, type: in_memory}"];
    let routes = ["{path: /customers, store: customers}"];
    let yaml = kafka_config(port, &broker.bootstrap(), &reg_url, "customers", &stores, &routes);
    let server = Server::start_yaml(&yaml, port, &[]);
    wait_until("ready with every record", Duration::from_secs(60), || {
        let s = status(&server);
        s["ready"] == true && s["stores"][0]["entries"] == 40 && skipped(&s) == 3
    });
    let s = status(&server);
    assert_agrees_with_metrics(&s, &metrics(&server));
    assert_eq!(s["ingest"]["skipped"], json!({"bad_magic": 2, "unknown_schema": 1}));

    driver.ok(json!({"cmd": "open", "url": server.url("/")}));
    expect_page_shows(&mut driver, &server);

    // A new key: the page must follow without a reload.
    let polls = driver.eval("Number(document.body.dataset.polls)").as_u64().unwrap();
    let (v, _) = customer(100, 1);
    producer.send_avro("customers", "acct-00000100", &schema, v);
    producer.flush();
    let shown = driver.wait("document.querySelector('[data-k=\"store:customers:entries\"]').textContent === '41'", 30);
    assert!(shown, "the page did not show the new record; it shows {}", page_values(&mut driver));
    assert!(driver.eval("Number(document.body.dataset.polls)").as_u64().unwrap() > polls);
    expect_page_shows(&mut driver, &server);
    assert_agrees_with_metrics(&status(&server), &metrics(&server));

    // Some traffic, so the rate chart and latency have something to show.
    for _ in 0..3 {
        for i in 0..40 {
            let (code, body) = http_get(&server, &format!("/api/customers/acct-{i:08}"));
            assert_eq!(code, 200, "{body}");
        }
        std::thread::sleep(Duration::from_millis(2100));
    }
    let charts = "[...document.querySelectorAll('#lag-chart polyline')]\
        .filter(p => p.getAttribute('points').split(' ').length >= 2).length === 3 \
        && document.querySelector('#rate-chart polyline').getAttribute('points').split(' ').length >= 2";
    assert!(driver.wait(charts, 20), "a line per partition and a rate line, over several polls");
    assert!(driver.eval("document.getElementById('c-rate').textContent !== '–'").as_bool().unwrap());

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    driver.ok(json!({"cmd": "screenshot", "path": shot}));
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "a real screenshot");
    if std::env::var_os("PUSH_CACHE_UPDATE_SCREENSHOT").is_some() {
        std::fs::copy(&shot, concat!(env!("CARGO_MANIFEST_DIR"), "/docs/status-page.png")).unwrap();
    }

    // A phone's width: nothing wider than the screen (tables scroll inside).
    driver.ok(json!({"cmd": "viewport", "width": 390, "height": 844, "mobile": true}));
    let widths = driver.eval("[document.documentElement.scrollWidth, window.innerWidth]");
    assert!(widths[0].as_u64() <= widths[1].as_u64(), "the page is wider than a phone: {widths}");
    driver.ok(json!({"cmd": "screenshot", "path": shot.with_file_name("status-page-phone.png")}));

    let errors = driver.errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    // The error capture itself works: a thrown error is seen.
    driver.eval("setTimeout(() => { throw new Error('probe-error') }, 0); 1");
    std::thread::sleep(Duration::from_millis(300));
    assert!(driver.errors().iter().any(|e| e.contains("probe-error")), "errors are captured");
}

/// Waits until every figure the page marks (`data-k`) equals what `/status`
/// says now (the page polls every 2 s).
fn expect_page_shows(driver: &mut Driver, server: &Server) {
    let mut last = String::new();
    for _ in 0..30 {
        let want = expected_values(&status(server));
        let check = format!(
            "(() => {{ const want = {}; const got = {READ_VALUES}; \
             return Object.entries(want).every(([k, v]) => got[k] === v); }})()",
            serde_json::to_string(&want).unwrap()
        );
        if driver.wait(&check, 5) {
            return;
        }
        last = format!("want {want:?}\ngot {}", page_values(driver));
    }
    panic!("the page does not show what /status says:\n{last}");
}

/// Every `data-k` of the page: its `title` when it has one (exact bytes),
/// else its text without thousands separators.
const READ_VALUES: &str = "Object.fromEntries([...document.querySelectorAll('[data-k]')]\
    .map(e => [e.dataset.k, e.title !== '' ? e.title : e.textContent.replace(/,/g, '')]))";

fn page_values(driver: &mut Driver) -> Value {
    driver.eval(READ_VALUES)
}

/// What the page must show for a `/status` document, keyed like its `data-k`.
fn expected_values(s: &Value) -> BTreeMap<String, String> {
    let mut want = BTreeMap::new();
    let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    want.insert("ready".into(), if s["ready"] == true { "Ready" } else { "Not ready" }.into());
    for shard in s["shards"].as_array().unwrap() {
        for st in shard["stores"].as_array().unwrap() {
            let k = format!("shard:{}:{}", shard["shard"], text(&st["store"]));
            want.insert(format!("{k}:entries"), st["entries"].to_string());
            want.insert(format!("{k}:bytes"), st["bytes"].to_string());
        }
    }
    for st in s["stores"].as_array().unwrap() {
        want.insert(format!("store:{}:entries", text(&st["name"])), st["entries"].to_string());
        want.insert(format!("store:{}:bytes", text(&st["name"])), st["bytes"].to_string());
    }
    for p in s["ingest"]["partitions"].as_array().unwrap() {
        let k = format!("part:{}/{}", text(&p["topic"]), p["partition"]);
        for field in ["position", "high", "lag"] {
            want.insert(format!("{k}:{field}"), p[field].to_string());
        }
    }
    for (reason, n) in s["ingest"]["skipped"].as_object().unwrap() {
        want.insert(format!("skip:{reason}"), n.to_string());
    }
    for (t, n) in s["ingest"]["applied"].as_object().unwrap() {
        want.insert(format!("applied:{t}"), n.to_string());
    }
    want.insert("tombstones".into(), s["ingest"]["tombstones"].to_string());
    assert!(want.len() > 15, "a status with shards, stores and partitions: {s}");
    want
}

/// `/status` and `/metrics` count from the same sources: store sizes per
/// shard, lag and position per partition, skips and readiness agree.
fn assert_agrees_with_metrics(s: &Value, m: &BTreeMap<String, f64>) {
    let get = |series: String| *m.get(&series).unwrap_or_else(|| panic!("/metrics has no {series}"));
    for shard in s["shards"].as_array().unwrap() {
        for st in shard["stores"].as_array().unwrap() {
            let labels = format!("{{shard=\"{}\",store=\"{}\"}}", shard["shard"], st["store"].as_str().unwrap());
            assert_eq!(get(format!("push_cache_store_entries{labels}")), st["entries"].as_f64().unwrap());
            assert_eq!(get(format!("push_cache_store_bytes{labels}")), st["bytes"].as_f64().unwrap());
        }
    }
    let partitions = s["ingest"]["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3, "{s}");
    for p in partitions {
        let labels = format!("{{topic=\"{}\",partition=\"{}\"}}", p["topic"].as_str().unwrap(), p["partition"]);
        assert_eq!(get(format!("push_cache_kafka_lag{labels}")), p["lag"].as_f64().unwrap());
        assert_eq!(get(format!("push_cache_kafka_position{labels}")), p["position"].as_f64().unwrap());
    }
    for (reason, n) in s["ingest"]["skipped"].as_object().unwrap() {
        assert_eq!(get(format!("push_cache_kafka_records_skipped_total{{reason=\"{reason}\"}}")), n.as_f64().unwrap());
    }
    assert_eq!(get("push_cache_ready".into()), if s["ready"] == true { 1.0 } else { 0.0 });
}

fn status(server: &Server) -> Value {
    let r = exchange(server, &get("/status"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn skipped(s: &Value) -> u64 {
    s["ingest"]["skipped"].as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

/// Every sample of `/metrics`, by series name with labels.
fn metrics(server: &Server) -> BTreeMap<String, f64> {
    let text = http_get(server, "/metrics").1;
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?))))
        .collect()
}

/// `scripts/cdp-driver.py`: a headless Chromium driven over the DevTools
/// protocol, one JSON command and answer per line.
struct Driver {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Driver {
    fn start() -> Driver {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
        assert!(
            std::path::Path::new(&chromium).exists(),
            "no Chromium at {chromium}: run scripts/install-deps.sh (Debian package `chromium`)"
        );
        let probe = Command::new("python3").args(["-c", "import websocket"]).status().expect("python3");
        assert!(probe.success(), "Python's websocket-client is missing: run scripts/install-deps.sh");
        let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("chromium.log");
        let mut child = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cdp-driver.py"))
            .args(["--chromium", &chromium, "--log", log.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start scripts/cdp-driver.py");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut driver = Driver { child, stdin, stdout };
        let hello = driver.read();
        assert_eq!(hello["ready"], true, "the driver did not start Chromium: {hello}; see {}", log.display());
        driver
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from the driver");
        assert!(!line.is_empty(), "the Chromium driver exited");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("driver said {line:?}: {e}"))
    }

    fn send(&mut self, command: Value) -> Value {
        writeln!(self.stdin, "{command}").expect("write to the driver");
        self.read()
    }

    fn ok(&mut self, command: Value) -> Value {
        let reply = self.send(command.clone());
        assert_eq!(reply["ok"], true, "{command} failed: {reply}");
        reply
    }

    fn eval(&mut self, expr: &str) -> Value {
        self.ok(json!({"cmd": "eval", "expr": expr}))["value"].take()
    }

    fn wait(&mut self, expr: &str, timeout_s: u64) -> bool {
        self.ok(json!({"cmd": "wait", "expr": expr, "timeout": timeout_s}))["met"] == true
    }

    fn errors(&mut self) -> Vec<String> {
        serde_json::from_value(self.ok(json!({"cmd": "errors"}))["value"].take()).unwrap()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"cmd": "quit"}));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
