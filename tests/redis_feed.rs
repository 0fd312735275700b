//! Each Redis store's own feed, against a real redis-server, a tansu broker
//! and the binary: a stalled Redis holds back only its own store and never
//! the stop; a restart resumes from the position stored in Redis; readiness
//! follows failing writes, not only PING; a value that is not ours is a 502.

mod common;

use common::kafka::*;
use common::redis::Redis;
use common::*;
use push_cache::registry::server as registry;
use std::time::{Duration, Instant};

struct Stack {
    broker: Broker,
    _registry: registry::RegistryHandle,
    redis: Redis,
    customer: Schema,
    yaml: String,
}

/// A broker with topic `customers` (2 partitions), a registry, a Redis, and
/// the YAML of a server with an in-memory store and a Redis store `shared`.
fn stack() -> Stack {
    let broker = Broker::start();
    broker.create_topic("customers", 2);
    let reg = registry::spawn("127.0.0.1:0", None, None).unwrap();
    let reg_url = format!("http://{}", reg.addr);
    let customer = register(&reg_url, "customers-value", CUSTOMER_V1);
    let redis = Redis::start();
    let shared = format!("{{name: shared, type: redis, url: '{}', prefix: c, timeout_ms: 300}}", redis.url(0));
    let stores = ["{name: customers, type: in_memory}", &shared];
    let routes = ["{path: /customers, store: customers}", "{path: /shared/customers, store: shared}"];
    let yaml = kafka_config(0, &broker.bootstrap(), &reg_url, "customers", &stores, &routes);
    Stack { broker, _registry: reg, redis, customer, yaml }
}

impl Stack {
    fn server(&self) -> Server {
        let port = free_port();
        let yaml = self.yaml.replace("127.0.0.1:0\n", &format!("127.0.0.1:{port}\n"));
        Server::start_yaml(&yaml, port, &[])
    }

    fn produce(&self, keys: std::ops::Range<u64>, version: u64) {
        let p = self.broker.producer();
        for i in keys {
            p.send_avro("customers", &format!("acct-{i:08}"), &self.customer, customer(i, version).0);
        }
        p.flush();
    }

    /// The body Redis holds for `acct-{i}` (the value after its ETag line).
    fn bodies_in_redis(&self, keys: std::ops::Range<u64>) -> Vec<Option<String>> {
        let mut conn = self.redis.client(0);
        let mut out = Vec::new();
        let all: Vec<u64> = keys.collect();
        for chunk in all.chunks(1000) {
            let names: Vec<String> = chunk.iter().map(|i| format!("c:acct-{i:08}")).collect();
            let values: Vec<Option<Vec<u8>>> = ::redis::cmd("MGET").arg(&names).query(&mut conn).unwrap();
            out.extend(values.into_iter().map(|v| {
                v.map(|v| String::from_utf8_lossy(&v[v.iter().position(|b| *b == b'\n').unwrap() + 1..]).into_owned())
            }));
        }
        out
    }

    /// The sum of the next offsets the store's position hash holds.
    fn stored_offsets(&self) -> i64 {
        let fields: Vec<(Vec<u8>, i64)> =
            ::redis::cmd("HGETALL").arg(&b"c:\xffpush-cache:offsets"[..]).query(&mut self.redis.client(0)).unwrap();
        fields.iter().filter(|(f, _)| f.starts_with(b"customers/")).map(|(_, n)| n).sum()
    }

    fn redis_holds(&self, keys: std::ops::Range<u64>, version: impl Fn(u64) -> u64) -> bool {
        let start = keys.start;
        self.bodies_in_redis(keys).into_iter().enumerate().all(|(n, body)| {
            let i = start + n as u64;
            body.as_deref() == Some(customer(i, version(i)).1.as_str())
        })
    }

    fn assert_redis_holds(&self, keys: std::ops::Range<u64>, version: impl Fn(u64) -> u64) {
        let start = keys.start;
        for (n, body) in self.bodies_in_redis(keys).into_iter().enumerate() {
            let i = start + n as u64;
            assert_eq!(body.as_deref(), Some(customer(i, version(i)).1.as_str()), "Redis key c:acct-{i:08}");
        }
    }
}

fn signal(pid: u32, sig: i32) {
    unsafe { libc::kill(pid as i32, sig) };
}

fn metric(server: &Server, series: &str) -> Option<f64> {
    http_get(server, "/metrics").1.lines().find(|l| l.starts_with(series))?.rsplit(' ').next()?.parse().ok()
}

#[test]
fn a_stalled_redis_holds_back_only_its_own_store_and_never_the_stop() {
    const RECORDS: u64 = 50_000;
    let s = stack();
    let mut server = s.server();
    wait_until("readiness", Duration::from_secs(60), || http_get(&server, "/health/ready").0 == 200);
    s.produce(0..1, 1);
    wait_until("the first record in Redis", Duration::from_secs(20), || {
        http_get(&server, "/api/shared/customers/acct-00000000").0 == 200
    });

    // Redis stalls (SIGSTOP: connections stay open, nothing answers) while
    // far more records arrive than any buffer on the way holds.
    signal(s.redis.pid(), libc::SIGSTOP);
    s.produce(0..RECORDS, 2);
    let newest = format!("/api/customers/acct-{:08}", RECORDS - 1);
    let started = Instant::now();
    wait_until("the in-memory route to take the newest record during the stall", Duration::from_secs(90), || {
        http_get(&server, &newest) == (200, customer(RECORDS - 1, 2).1)
    });
    eprintln!("in-memory store took {RECORDS} records in {:?} while Redis was stopped", started.elapsed());
    let started = Instant::now();
    let (status, body) = http_get(&server, "/api/shared/customers/acct-00000000");
    assert_eq!(status, 503, "{body}");
    assert!(started.elapsed() < Duration::from_secs(1), "the Redis route must fail fast: {:?}", started.elapsed());
    wait_until("readiness to name the stalled store", Duration::from_secs(20), || {
        let (status, body) = http_get(&server, "/health/ready");
        status == 503 && body.contains("redis:shared")
    });
    let lag = "push_cache_redis_lag{store=\"shared\",topic=\"customers\",partition=\"0\"}";
    wait_until("the stalled feed's lag to show", Duration::from_secs(20), || {
        metric(&server, lag).is_some_and(|n| n > 1_000.0)
    });

    // After Redis comes back, every key converges to the topic.
    signal(s.redis.pid(), libc::SIGCONT);
    wait_until("readiness after the stall", Duration::from_secs(60), || http_get(&server, "/health/ready").0 == 200);
    let started = Instant::now();
    wait_until("the Redis feed to write its backlog", Duration::from_secs(180), || {
        let text = http_get(&server, "/metrics").1;
        let lags: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with("push_cache_redis_lag{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        lags.len() == 2 && lags.iter().all(|n| *n == 0.0)
    });
    wait_until("every key in Redis to match the topic", Duration::from_secs(120), || s.redis_holds(0..RECORDS, |_| 2));
    eprintln!("the Redis feed wrote its backlog in {:?} after Redis came back", started.elapsed());
    s.assert_redis_holds(0..RECORDS, |_| 2);

    // A stop during a stall: prompt, orderly (the in-memory drain runs, no
    // watchdog), exit code 0.
    signal(s.redis.pid(), libc::SIGSTOP);
    s.produce(0..2_000, 3);
    wait_until("the in-memory route to take the update", Duration::from_secs(30), || {
        http_get(&server, "/api/customers/acct-00001999") == (200, customer(1999, 3).1)
    });
    std::thread::sleep(Duration::from_secs(1));
    let (code, took) = server.terminate();
    signal(s.redis.pid(), libc::SIGCONT);
    let log = server.log();
    assert_eq!(code, Some(0), "{log}");
    assert!(took < Duration::from_secs(5), "SIGTERM during a Redis stall took {took:?}");
    assert!(!log.contains("stop took too long"), "the stop must not need the watchdog: {log}");
    eprintln!("SIGTERM during the stall: exit in {took:?}");
}

#[test]
fn a_restart_resumes_from_the_position_stored_in_redis() {
    let s = stack();
    s.produce(0..2_000, 1);
    let mut server = s.server();
    wait_until("readiness", Duration::from_secs(60), || http_get(&server, "/health/ready").0 == 200);
    // (tansu may report a high watermark at start that is a batch short:
    // wait for the data, not only for readiness.)
    wait_until("every record in Redis", Duration::from_secs(30), || s.redis_holds(0..2_000, |_| 1));
    wait_until("the stored position to cover every record", Duration::from_secs(10), || s.stored_offsets() == 2_000);
    assert_eq!(server.terminate().0, Some(0));

    // A sentinel: a key only a replay of old records would write back.
    let _: () = ::redis::cmd("DEL").arg("c:acct-00000000").query(&mut s.redis.client(0)).unwrap();
    s.produce(2_000..2_500, 1);
    s.produce(1..2, 2);
    let server = s.server();
    wait_until("readiness after the restart", Duration::from_secs(60), || http_get(&server, "/health/ready").0 == 200);
    wait_until("the new records in Redis", Duration::from_secs(30), || {
        s.redis_holds(1..2_500, |i| if i == 1 { 2 } else { 1 })
    });
    assert_eq!(http_get(&server, "/api/shared/customers/acct-00000000").0, 404, "the feed replayed from the beginning");
    let written = metric(&server, "push_cache_redis_records_written_total{store=\"shared\"}");
    assert_eq!(written, Some(501.0), "only the records produced while stopped are written again");
    // The in-memory store replays the topic, as it starts empty.
    assert_eq!(http_get(&server, "/api/customers/acct-00000000"), (200, customer(0, 1).1));
}

#[test]
fn a_redis_restarted_without_its_data_is_refilled_from_the_topic() {
    let mut s = stack();
    s.produce(0..1_000, 1);
    let server = s.server();
    wait_until("readiness", Duration::from_secs(60), || http_get(&server, "/health/ready").0 == 200);
    wait_until("every record in Redis", Duration::from_secs(30), || s.redis_holds(0..1_000, |_| 1));
    s.redis.restart_empty();
    s.produce(1_000..1_001, 1);
    wait_until("Redis to hold every key again", Duration::from_secs(60), || s.redis_holds(0..1_001, |_| 1));
    wait_until("readiness after the refill", Duration::from_secs(30), || http_get(&server, "/health/ready").0 == 200);
}

#[test]
fn readiness_stays_503_while_writes_fail_even_though_ping_answers() {
    let s = stack();
    let server = s.server();
    wait_until("readiness", Duration::from_secs(60), || http_get(&server, "/health/ready").0 == 200);
    let mut admin = s.redis.client(0);
    let _: () = ::redis::cmd("CONFIG").arg("SET").arg("maxmemory-policy").arg("noeviction").query(&mut admin).unwrap();
    let _: () = ::redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("1").query(&mut admin).unwrap();
    s.produce(5..6, 1);
    wait_until("readiness to report the failing writes", Duration::from_secs(20), || {
        let (status, body) = http_get(&server, "/health/ready");
        status == 503 && body.contains("redis:shared") && body.contains("OOM")
    });
    // PING answers all along (the health check runs every 500 ms), yet the
    // store stays not ready: only a write that succeeds clears it.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let pong: String = ::redis::cmd("PING").query(&mut admin).unwrap();
        assert_eq!(pong, "PONG");
        let (status, body) = http_get(&server, "/health/ready");
        assert_eq!(status, 503, "ready while every write fails: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _: () = ::redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("0").query(&mut admin).unwrap();
    wait_until("readiness once writes succeed", Duration::from_secs(20), || {
        http_get(&server, "/health/ready").0 == 200
    });
    assert_eq!(http_get(&server, "/api/shared/customers/acct-00000005"), (200, customer(5, 1).1));
}

#[test]
fn a_value_that_is_not_ours_is_a_502() {
    let s = stack();
    let server = s.server();
    wait_until("readiness", Duration::from_secs(60), || http_get(&server, "/health/ready").0 == 200);
    let _: () =
        ::redis::cmd("SET").arg("c:foreign").arg("written by someone else").query(&mut s.redis.client(0)).unwrap();
    let r = exchange(&server, &get("/api/shared/customers/foreign"));
    assert_eq!(r.status, 502, "{}", r.text());
    let error = r.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("`shared`") && error.contains("delete the key"), "{error}");
    assert_eq!(http_get(&server, "/api/shared/customers/absent").0, 404);
}

/// `body`'s POST with the admin token of `position_bound_…_on_a_redis_route`.
fn authorized_post(path: &str, body: &str) -> Vec<u8> {
    let head = format!("POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret\r\n");
    format!("{head}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

/// The Redis feed's applied (next) offset of each partition, by `/offsets`.
fn redis_applied(server: &Server) -> Vec<i64> {
    let offsets: serde_json::Value = serde_json::from_str(&http_get(server, "/offsets").1).unwrap();
    let rows = offsets["redis:shared"].as_array().cloned().unwrap_or_default();
    let mut applied = vec![0; 2];
    for row in rows {
        applied[row["partition"].as_u64().unwrap() as usize] = row["applied"].as_i64().unwrap();
    }
    applied
}

#[test]
fn position_bound_reads_and_writes_through_kafka_on_a_redis_route() {
    let s = stack();
    s.produce(0..100, 1);
    let writes = "{path: /shared/customers, store: shared, writes: kafka, topic: customers}";
    let limits = "webservice:\n  admin_token: s3cret\n  limits: {min_offset_wait_ms: 1000}\n";
    let port = free_port();
    let yaml = s.yaml.replace("{path: /shared/customers, store: shared}", writes).replacen("webservice:\n", limits, 1);
    let server = Server::start_yaml(&yaml.replace("127.0.0.1:0\n", &format!("127.0.0.1:{port}\n")), port, &[]);
    wait_until("readiness", Duration::from_secs(60), || http_get(&server, "/health/ready").0 == 200);
    wait_until("the Redis feed to apply every record", Duration::from_secs(30), || {
        redis_applied(&server).iter().sum::<i64>() == 100
    });

    // One past the end of both partitions: the GET waits, then answers once
    // the Redis feed has written the records produced meanwhile.
    let ends = redis_applied(&server);
    let path = format!(
        "/api/shared/customers/acct-00000150?min_offset=customers/0/{}&min_offset=customers/1/{}",
        ends[0], ends[1]
    );
    let producer = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            s.produce(100..200, 1);
        });
        let started = Instant::now();
        let answer = http_get(&server, &path);
        (answer, started.elapsed())
    });
    let ((status, body), waited) = producer;
    assert_eq!((status, body), (200, customer(150, 1).1), "after {waited:?}");
    assert!(waited >= Duration::from_millis(250), "answered before the records were produced: {waited:?}");

    // A position that never comes: 504 after min_offset_wait_ms, naming where the feed got.
    let started = Instant::now();
    let (status, body) = http_get(&server, "/api/shared/customers/acct-00000001?min_offset=customers/0/1000000");
    let waited = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("waiting_for") && body.contains("\"applied\""), "{body}");
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_millis(2000), "{waited:?}");

    // Writes through Kafka on the Redis route: a GET right after the 201 sees the write.
    for i in 1_000..1_050 {
        let body = customer(i, 1).1;
        let r = exchange(&server, &authorized_post("/api/shared/customers", &body));
        assert_eq!(r.status, 201, "{}", r.text());
        assert!(r.header("Kafka-Position").is_some_and(|p| p.starts_with("customers/")));
        assert_eq!(http_get(&server, &format!("/api/shared/customers/acct-{i:08}")), (200, body), "round {i}");
    }
}

/// A batch the Kafka client cannot read (a gzip batch that is not gzip) in
/// the middle of a partition: the Redis feed finds where it ends and moves
/// past it, as the in-memory consumer does, so the records after it reach
/// Redis and the store is never stuck silently.
#[test]
fn an_undecodable_batch_does_not_stop_the_redis_feed() {
    let s = stack();
    let p = s.broker.producer();
    for i in 0..3 {
        p.send_avro_to("customers", 0, &format!("acct-{i:08}"), &s.customer, customer(i, 1).0);
        p.flush();
    }
    let bad = raw_batch(1, 3, b"not gzip at all, not at all");
    assert_eq!(produce_raw_batch(&s.broker.bootstrap(), "customers", 0, &bad), 0, "the broker took the batch");
    for i in 6..8 {
        p.send_avro_to("customers", 0, &format!("acct-{i:08}"), &s.customer, customer(i, 1).0);
        p.flush();
    }
    let server = s.server();
    wait_until("the Redis store past the bad batch", Duration::from_secs(60), || {
        [0u64, 1, 2, 6, 7]
            .iter()
            .all(|i| http_get(&server, &format!("/api/shared/customers/acct-{i:08}")) == (200, customer(*i, 1).1))
    });
    let log = server.log();
    assert!(log.contains("Redis feed skipped an undecodable batch"), "{log}");
}
