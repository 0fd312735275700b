//! Fault injection with real processes (issue 7). Each case says what must
//! hold and checks it:
//!
//! - clients that vanish mid-request or mid-response: the server keeps
//!   serving, and every connection they held is released;
//! - 10 000 idle connections: a new client is still answered at once, the
//!   server's memory grows by a bounded amount per connection, and the idle
//!   timeout releases them all;
//! - the schema registry down mid-stream: records with a schema the cache has
//!   not fetched yet wait for it; none is skipped, all are served after;
//! - a slow Redis saturating its writer channel: in-memory routes keep
//!   answering at once, the Redis route fails fast, memory stays bounded, and
//!   after the stall both stores converge with nothing lost.
//!
//! Broker outages are in `kafka_ingest.rs`, Redis killed and restarted in
//! `redis_store.rs`.

mod common;

use common::kafka::*;
use common::redis::Redis;
use common::*;
use push_cache::registry::server as registry;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Sum of a metric's samples (all label sets) in the server's /metrics.
fn metric_sum(server: &Server, name: &str) -> f64 {
    let text = http_get(server, "/metrics").1;
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Lets this process and the servers it starts hold `n` descriptors.
fn raise_fd_limit(n: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit.rlim_cur = n.max(limit.rlim_cur);
    limit.rlim_max = limit.rlim_max.max(limit.rlim_cur);
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(rc, 0, "cannot raise RLIMIT_NOFILE to {n}: raise `ulimit -n` (hard limit) or run as root");
}

/// A connection whose close sends RST (SO_LINGER 0), as a crashed client's does.
fn reset_on_close(s: &TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    let fd = std::os::fd::AsRawFd::as_raw_fd(s);
    let size = std::mem::size_of::<libc::linger>() as libc::socklen_t;
    unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_LINGER, &linger as *const _ as *const libc::c_void, size)
    };
}

#[test]
fn clients_vanishing_mid_request_or_mid_response_leave_no_trace() {
    let server = Server::start("");
    for i in 0..2000 {
        exchange(&server, &post("/api/customers", &customer_body(i)));
    }
    for round in 0..100 {
        // Half a request head, then gone.
        let mut s = server.connect();
        s.write_all(b"GET /api/customers/acct-0000").unwrap();
        drop(s);
        // A whole head, half of the promised body, then a reset.
        let mut s = server.connect();
        s.write_all(b"POST /api/customers HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n{\"accountId\"").unwrap();
        reset_on_close(&s);
        drop(s);
        // A listing of 2000 keys (~30 KB) that is never read: reset mid-response.
        let mut s = server.connect();
        s.write_all(&get("/api/customers")).unwrap();
        if round % 2 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        reset_on_close(&s);
        drop(s);
    }
    let (status, body) = http_get(&server, "/api/customers/acct-00000042");
    assert_eq!((status, body), (200, customer_body(42)), "serving goes on");
    // Only the /metrics request itself is open once the server has noticed.
    wait_until("every vanished connection to be released", Duration::from_secs(10), || {
        metric_sum(&server, "push_cache_connections_open") <= 1.0
    });
    assert!(metric_sum(&server, "push_cache_connections_accepted_total") >= 300.0);
}

#[test]
fn ten_thousand_idle_connections_are_cheap_and_released() {
    const IDLE: usize = 10_000;
    raise_fd_limit(IDLE as u64 + 2_000);
    let server = Server::start("  limits: {idle_timeout_ms: 4000}");
    exchange(&server, &post("/api/customers", &customer_body(7)));
    let before = rss_kib(server.pid());
    // Each connection makes one request (so the server has set it up fully),
    // then stays idle.
    let mut idle: Vec<TcpStream> = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        let mut s = server.connect();
        s.write_all(&get("/api/customers/acct-00000007")).unwrap();
        idle.push(s);
    }
    for s in idle.iter_mut() {
        assert_eq!(read_response(s, &mut Vec::new(), false).status, 200);
    }
    let open = metric_sum(&server, "push_cache_connections_open");
    assert!(open >= IDLE as f64, "{open} connections open");
    let grown = rss_kib(server.pid()).saturating_sub(before);
    let per_conn = grown as f64 * 1024.0 / IDLE as f64;
    eprintln!("{IDLE} idle connections: server RSS +{grown} KiB, {per_conn:.0} bytes each");
    assert!(per_conn < 24.0 * 1024.0, "{per_conn:.0} bytes per idle connection");

    // A new client is served at once while they all sit there.
    let started = Instant::now();
    assert_eq!(http_get(&server, "/api/customers/acct-00000007").1, customer_body(7));
    assert!(started.elapsed() < Duration::from_millis(200), "{:?}", started.elapsed());

    // The idle timeout releases them.
    wait_until("the idle timeout to close them", Duration::from_secs(20), || {
        metric_sum(&server, "push_cache_connections_open") <= 1.0
    });
    assert!(idle.iter_mut().all(|s| closed(s, &[])));
}

#[test]
fn registry_down_mid_stream_is_waited_out() {
    let broker = Broker::start();
    broker.create_topic("customers", 2);
    let data = temp_dir("registry-data").join("registry.json");
    let reg = registry::spawn("127.0.0.1:0", Some(data.clone()), None).unwrap();
    let reg_addr = reg.addr;
    let reg_url = format!("http://{reg_addr}");
    let v1 = register(&reg_url, "customers-value", CUSTOMER_V1);
    let v2 = register(&reg_url, "customers-value", CUSTOMER_V2);
    let p = broker.producer();
    for i in 0..20 {
        p.send_avro("customers", &format!("acct-{i:08}"), &v1, customer(i, 1).0);
    }
    p.flush();
    let port = free_port();
    let stores = ["{name: customers, type: in_memory}"];
    let routes = ["{path: /customers, store: customers}"];
    let server = Server::start_yaml(
        &kafka_config(port, &broker.bootstrap(), &reg_url, "customers", &stores, &routes),
        port,
        &[],
    );
    wait_until("readiness", Duration::from_secs(60), || http_get(&server, "/health/ready").0 == 200);

    // The registry goes away; records written with v2, which the cache has
    // never fetched, arrive meanwhile, followed by v1 updates.
    reg.stop();
    for i in 0..20 {
        p.send_avro("customers", &format!("acct-{i:08}"), &v2, customer_v2(i, Some("x@example.com")).0);
    }
    p.send_avro("customers", "acct-00000000", &v1, customer(0, 3).0);
    p.flush();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        http_get(&server, "/api/customers/acct-00000005"),
        (200, customer(5, 1).1),
        "waits, serving the old value"
    );
    assert_eq!(metric_sum(&server, "push_cache_kafka_records_skipped_total"), 0.0);
    assert!(metric_sum(&server, "push_cache_schema_fetch_failures_total") >= 1.0);

    // Back on the same address with the same data: everything is applied.
    let _reg = registry::spawn(&reg_addr.to_string(), Some(data), None).unwrap();
    wait_until("v2 records", Duration::from_secs(30), || {
        (1..20).all(|i| {
            http_get(&server, &format!("/api/customers/acct-{i:08}")) == (200, customer_v2(i, Some("x@example.com")).1)
        })
    });
    assert_eq!(http_get(&server, "/api/customers/acct-00000000"), (200, customer(0, 3).1));
    assert_eq!(metric_sum(&server, "push_cache_kafka_records_skipped_total"), 0.0, "nothing skipped for an outage");
}

#[test]
fn slow_redis_saturating_its_channel_loses_nothing() {
    const RECORDS: u64 = 20_000;
    let broker = Broker::start();
    broker.create_topic("customers", 2);
    let reg = registry::spawn("127.0.0.1:0", None, None).unwrap();
    let reg_url = format!("http://{}", reg.addr);
    let v1 = register(&reg_url, "customers-value", CUSTOMER_V1);
    let redis = Redis::start();
    let shared = format!("{{name: shared, type: redis, url: '{}', prefix: c, timeout_ms: 300}}", redis.url(0));
    let stores = ["{name: customers, type: in_memory}", &shared];
    let routes = ["{path: /customers, store: customers}", "{path: /shared/customers, store: shared}"];
    let port = free_port();
    let server = Server::start_yaml(
        &kafka_config(port, &broker.bootstrap(), &reg_url, "customers", &stores, &routes),
        port,
        &[],
    );
    wait_until("readiness", Duration::from_secs(60), || http_get(&server, "/health/ready").0 == 200);
    let p = broker.producer();
    p.send_avro("customers", "acct-00000000", &v1, customer(0, 1).0);
    p.flush();
    wait_until("the first record", Duration::from_secs(20), || {
        http_get(&server, "/api/shared/customers/acct-00000000").0 == 200
    });
    let rss_before = rss_kib(server.pid());

    // Redis stalls (SIGSTOP: connections stay open, nothing answers) while
    // far more records arrive than the writer's channel holds.
    unsafe { libc::kill(redis.pid() as i32, libc::SIGSTOP) };
    for i in 0..RECORDS {
        p.send_avro("customers", &format!("acct-{i:08}"), &v1, customer(i, 2).0);
    }
    p.flush();
    std::thread::sleep(Duration::from_secs(3));
    for i in 0..50 {
        let started = Instant::now();
        assert_eq!(http_get(&server, "/api/customers/acct-00000000").0, 200);
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "memory route slowed: {:?} (request {i})",
            started.elapsed()
        );
    }
    let started = Instant::now();
    assert_eq!(http_get(&server, "/api/shared/customers/acct-00000000").0, 503);
    assert!(started.elapsed() < Duration::from_secs(1), "Redis route must fail fast: {:?}", started.elapsed());
    let grown = rss_kib(server.pid()).saturating_sub(rss_before);
    assert!(grown < 256 * 1024, "memory bounded while the store is stalled: +{grown} KiB");

    unsafe { libc::kill(redis.pid() as i32, libc::SIGCONT) };
    wait_until("both stores to converge", Duration::from_secs(120), || {
        let last = format!("acct-{:08}", RECORDS - 1);
        http_get(&server, &format!("/api/shared/customers/{last}")) == (200, customer(RECORDS - 1, 2).1)
            && http_get(&server, &format!("/api/customers/{last}")) == (200, customer(RECORDS - 1, 2).1)
    });
    for i in (0..RECORDS).step_by(97) {
        let want = (200, customer(i, 2).1);
        assert_eq!(http_get(&server, &format!("/api/customers/acct-{i:08}")), want);
        assert_eq!(http_get(&server, &format!("/api/shared/customers/acct-{i:08}")), want);
    }
    assert_eq!(metric_sum(&server, "push_cache_kafka_records_skipped_total"), 0.0);
}
