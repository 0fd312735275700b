//! What ingestion promises a reader, against the real binary, a tansu broker
//! and the bundled registry: readiness means every record up to the start
//! watermarks is visible; a clean catch-up logs no warning; a GET bound to a
//! position waits (parked, without CPU) until that position is applied, or
//! answers 504 in time.

mod common;

use common::kafka::*;
use common::*;
use push_cache::registry::server as registry;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(port: u16, brokers: &str, registry_url: &str, wait_ms: Option<u64>) -> String {
    let yaml = customers_config(port, brokers, registry_url);
    match wait_ms {
        Some(ms) => {
            yaml.replacen("webservice:\n", &format!("webservice:\n  limits: {{min_offset_wait_ms: {ms}}}\n"), 1)
        }
        None => yaml,
    }
}

struct Stack {
    broker: Broker,
    _registry: registry::RegistryHandle,
    registry_url: String,
    schema: Schema,
}

fn stack(partitions: i32) -> Stack {
    let broker = Broker::start();
    broker.create_topic("customers", partitions);
    let reg = registry::spawn("127.0.0.1:0", None, None).unwrap();
    let registry_url = format!("http://{}", reg.addr);
    let schema = register(&registry_url, "customers-value", CUSTOMER_V1);
    Stack { broker, _registry: reg, registry_url, schema }
}

/// Sum of a metric's samples whose line starts with `prefix`.
fn metric_sum(text: &str, prefix: &str) -> u64 {
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
}

/// Clients that read while the cache replays (as a sidecar's callers do):
/// pipelined GETs of `path(i)` on a keep-alive connection until `stop`.
fn read_load(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    path: fn(usize) -> String,
    burst: usize,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut answered = 0;
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let requests: Vec<u8> = (0..burst).flat_map(|i| get(&path(i))).collect();
        let mut pending = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            stream.write_all(&requests).unwrap();
            for _ in 0..burst {
                read_response(&mut stream, &mut pending, false);
                answered += 1;
            }
        }
        answered
    })
}

/// The first time `/health/ready` says 200, every record produced before
/// start is served. 200 000 records over 4 partitions, replayed while
/// clients already read, keep the shards' queues full during the replay, so
/// readiness judged by what was *sent* comes while records still wait in
/// the queues.
#[test]
fn ready_only_once_every_record_up_to_the_start_watermarks_is_visible() {
    const N: u64 = 200_000;
    const PARTITIONS: i32 = 4;
    let s = stack(PARTITIONS);
    let producer = TestProducer::with_linger(&s.broker.bootstrap(), 20);
    for i in 0..N {
        let (value, _) = customer(i, 1);
        producer.send_avro("customers", &format!("acct-{i:08}"), &s.schema, value);
    }
    producer.flush();
    // tansu 0.6 reports a high watermark as its last batch's base offset + 1:
    // end every partition with a one-record batch so the watermark is exact.
    for p in 0..PARTITIONS {
        producer.send_avro_to("customers", p, &format!("tail-{p}"), &s.schema, customer(N + p as u64, 1).0);
        producer.flush();
    }
    let total = N + PARTITIONS as u64;

    let port = free_port();
    let server = Server::start_yaml(&config(port, &s.broker.bootstrap(), &s.registry_url, None), port, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let item: fn(usize) -> String = |i| format!("/api/customers/acct-{:08}", i * 3_001);
    let listing: fn(usize) -> String = |_| "/api/customers?limit=10".to_string();
    let mut readers: Vec<_> = (0..4).map(|_| read_load(server.addr, stop.clone(), item, 400)).collect();
    readers.extend((0..2).map(|_| read_load(server.addr, stop.clone(), listing, 1)));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(180);
    loop {
        let (status, body) = http_get(&server, "/health/ready");
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {body}");
        std::thread::sleep(Duration::from_millis(2));
    }
    let metrics = http_get(&server, "/metrics").1;
    stop.store(true, Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    let entries = metric_sum(&metrics, "push_cache_store_entries{");
    eprintln!(
        "ready after {:?}: {entries} of {total} keys visible, {reads} reads during the replay",
        started.elapsed()
    );
    assert_eq!(entries, total, "keys visible when readiness first said 200 ({reads} reads during the replay)");
    for p in 0..PARTITIONS {
        assert_eq!(http_get(&server, &format!("/api/customers/tail-{p}")).0, 200, "the last record of partition {p}");
    }
    for i in (0..N).step_by(997) {
        let (status, body) = http_get(&server, &format!("/api/customers/acct-{i:08}"));
        assert_eq!(status, 200, "acct-{i:08}: {body}");
    }
    let offsets = http_get(&server, "/offsets").1;
    let offsets: serde_json::Value = serde_json::from_str(&offsets).unwrap();
    let memory = offsets["memory"].as_array().expect("a memory feed");
    assert_eq!(memory.len(), PARTITIONS as usize, "{offsets}");
    for p in memory {
        assert_eq!(p["lag"], 0, "{offsets}");
        assert_eq!(p["applied"], p["high"], "{offsets}");
    }
    let warnings: Vec<&str> = server_log_warnings(&server);
    assert!(warnings.is_empty(), "a clean catch-up logs no warning at the default level:\n{}", warnings.join("\n"));
}

fn server_log_warnings(server: &Server) -> Vec<&'static str> {
    let log: &'static str = Box::leak(server.log().into_boxed_str());
    log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect()
}

/// A ready server over a one-partition topic holding `count` customers.
fn ready_server(s: &Stack, count: u64, wait_ms: u64) -> Server {
    let producer = s.broker.producer();
    for i in 0..count {
        producer.send_avro_to("customers", 0, &format!("acct-{i:08}"), &s.schema, customer(i, 1).0);
    }
    producer.flush();
    let port = free_port();
    let server = Server::start_yaml(&config(port, &s.broker.bootstrap(), &s.registry_url, Some(wait_ms)), port, &[]);
    wait_until("readiness", Duration::from_secs(60), || http_get(&server, "/health/ready").0 == 200);
    server
}

fn applied_offset(server: &Server) -> i64 {
    let offsets: serde_json::Value = serde_json::from_str(&http_get(server, "/offsets").1).unwrap();
    offsets["memory"][0]["applied"].as_i64().unwrap()
}

fn get_with_header(server: &Server, path: &str, header: &str) -> Response {
    exchange(server, format!("GET {path} HTTP/1.1\r\nHost: t\r\nKafka-Min-Position: {header}\r\n\r\n").as_bytes())
}

#[test]
fn a_get_bound_to_the_next_offset_waits_for_it_and_one_that_never_comes_times_out() {
    let s = stack(1);
    let server = ready_server(&s, 10, 1000);
    let next = applied_offset(&server);
    assert_eq!(next, 10);

    // Already applied: answered at once.
    let (status, _) = http_get(&server, "/api/customers/acct-00000003?min_offset=customers/0/9");
    assert_eq!(status, 200);

    // One past the end: waits until the record is produced and applied.
    let producer = s.broker.producer();
    let (updated, json) = customer(3, 2);
    let path = format!("/api/customers/acct-00000003?min_offset=customers%2F0%2F{next}");
    let started = Instant::now();
    let reader = {
        let addr = server.addr;
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            stream.write_all(&get(&path)).unwrap();
            let r = read_response(&mut stream, &mut Vec::new(), false);
            (r.status, r.text(), Instant::now())
        })
    };
    std::thread::sleep(Duration::from_millis(400));
    producer.send_avro_to("customers", 0, "acct-00000003", &s.schema, updated);
    producer.flush();
    let (status, body, answered) = reader.join().unwrap();
    assert_eq!((status, body.as_str()), (200, json.as_str()), "the bound read sees the write");
    assert!(answered - started >= Duration::from_millis(400), "it waited for the record");

    // The header form, with two positions, one already applied.
    let r = get_with_header(&server, "/api/customers/acct-00000003", &format!("customers/0/2, customers/0/{next}"));
    assert_eq!((r.status, r.text()), (200, json.clone()));

    // A position that never comes: 504 after min_offset_wait_ms (1000 ms), naming where it got.
    for path in
        ["/api/customers/acct-00000003?min_offset=customers/0/1000", "/api/customers?min_offset=customers/0/1000"]
    {
        let started = Instant::now();
        let (status, body) = http_get(&server, path);
        let waited = started.elapsed();
        assert_eq!(status, 504, "{body}");
        assert!(waited >= Duration::from_millis(900) && waited <= Duration::from_millis(1100), "waited {waited:?}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["waiting_for"][0]["offset"], 1000, "{body}");
        assert_eq!(body["waiting_for"][0]["applied"], next + 1, "{body}");
    }

    // Malformed positions are the client's error.
    for bad in ["customers/0", "customers/x/1", "customers/0/-1", "/0/1"] {
        let (status, body) = http_get(&server, &format!("/api/customers/acct-00000003?min_offset={bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_eq!(get_with_header(&server, "/api/customers/acct-00000003", "customers/zero/1").status, 400);
}

/// CPU time (user + system, in clock ticks) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn ten_thousand_parked_reads_cost_no_cpu_and_all_see_the_write() {
    const READERS: usize = 10_000;
    let s = stack(1);
    let server = ready_server(&s, 50, 60_000);
    let next = applied_offset(&server);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let cpu_ms_over_3s = || {
        let before = cpu_ticks(server.pid());
        std::thread::sleep(Duration::from_secs(3));
        (cpu_ticks(server.pid()) - before) * 1000 / hz
    };
    // The idle server's own CPU (the Kafka client keeps fetching), for comparison.
    let idle = cpu_ms_over_3s();
    let mut streams = Vec::with_capacity(READERS);
    for i in 0..READERS {
        let mut stream = TcpStream::connect(server.addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let key = format!("acct-{:08}", i % 50);
        stream.write_all(&get(&format!("/api/customers/{key}?min_offset=customers/0/{next}"))).unwrap();
        streams.push(stream);
    }
    // Let every request arrive and park, then measure the server's CPU while they wait.
    std::thread::sleep(Duration::from_secs(2));
    let parked = cpu_ms_over_3s();
    assert!(parked <= idle + 40, "{READERS} parked reads: {parked} ms of CPU in 3 s (idle: {idle} ms)");

    let producer = s.broker.producer();
    let (value, _) = customer(10_000, 1);
    producer.send_avro_to("customers", 0, "wake-up", &s.schema, value);
    producer.flush();
    let started = Instant::now();
    for (i, stream) in streams.iter_mut().enumerate() {
        let r = read_response(stream, &mut Vec::new(), false);
        assert_eq!(r.status, 200, "reader {i}: {}", r.text());
    }
    eprintln!(
        "{READERS} parked reads: {parked} ms of CPU over 3 s (idle server: {idle} ms); all answered {:?} after the write",
        started.elapsed()
    );
}

/// Offsets 0-2 are good records, 3-5 one batch no consumer can decompress
/// (gzip attributes, garbage payload), 6-7 good again: the batch is skipped
/// past, counted and logged with its offsets, and nothing valid is lost.
#[test]
fn an_undecodable_batch_is_skipped_counted_and_logged() {
    let s = stack(1);
    let producer = s.broker.producer();
    let mut keys = Vec::new();
    for i in 0..3 {
        producer.send_avro_to("customers", 0, &format!("acct-{i:08}"), &s.schema, customer(i, 1).0);
        producer.flush();
        keys.push(format!("acct-{i:08}"));
    }
    let error =
        produce_raw_batch(&s.broker.bootstrap(), "customers", 0, &raw_batch(1, 3, b"not gzip at all, not at all"));
    assert_eq!(error, 0, "the broker took the batch");
    for i in 6..8 {
        producer.send_avro_to("customers", 0, &format!("acct-{i:08}"), &s.schema, customer(i, 1).0);
        producer.flush();
        keys.push(format!("acct-{i:08}"));
    }
    let port = free_port();
    let server = Server::start_yaml(&config(port, &s.broker.bootstrap(), &s.registry_url, None), port, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(&server, "/health/ready").0 != 200 {
        assert!(Instant::now() < deadline, "stuck: {}\n{}", http_get(&server, "/health/ready").1, server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    for key in &keys {
        assert_eq!(http_get(&server, &format!("/api/customers/{key}")).0, 200, "{key}");
    }
    let metrics = http_get(&server, "/metrics").1;
    let skipped = metric_sum(&metrics, "push_cache_kafka_records_skipped_total{reason=\"undecodable_batch\"}");
    assert_eq!(skipped, 1, "{metrics}");
    assert_eq!(applied_offset(&server), 8);
    let log = server.log();
    let warning =
        log.lines().find(|l| l.contains("WARN") && l.contains("undecodable")).unwrap_or_else(|| panic!("{log}"));
    assert!(warning.contains("first_offset=3") && warning.contains("next_offset=6"), "{warning}");
    let warnings = server_log_warnings(&server);
    assert_eq!(warnings.len(), 1, "one warning for one skipped batch, not one per retry:\n{}", warnings.join("\n"));
}
