//! The HTTP API and its HTTP/1.1 behaviour, against the real
//! binary (2 shards) over real sockets.

mod common;

use common::*;
use std::io::Write;
use std::time::{Duration, Instant};

#[test]
fn get_post_delete_and_conditional_get() {
    let server = Server::start("");
    let missing = exchange(&server, &get("/api/customers/acct-00000001"));
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "key not found");

    let created = exchange(&server, &post("/api/customers", &customer_body(1)));
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.text(), customer_body(1));
    assert_eq!(created.header("Location"), Some("/api/customers/acct-00000001"));

    let got = exchange(&server, &get("/api/customers/acct-00000001"));
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), customer_body(1));
    assert_eq!(got.header("Content-Type"), Some("application/json"));
    assert_eq!(got.header("Cache-Control"), Some("public, max-age=300"));
    assert_eq!(got.header("ETag"), Some("\"1700000500001\""));

    let conditional =
        b"GET /api/customers/acct-00000001 HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"1700000500001\"\r\n\r\n";
    let not_modified = exchange(&server, conditional);
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("ETag"), Some("\"1700000500001\""));
    let stale =
        exchange(&server, b"GET /api/customers/acct-00000001 HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"1\"\r\n\r\n");
    assert_eq!(stale.status, 200);

    let head = exchange(&server, b"HEAD /api/customers/acct-00000001 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some(customer_body(1).len().to_string().as_str()));
    assert_eq!(head.header("ETag"), Some("\"1700000500001\""));

    let conflict = exchange(&server, &post("/api/customers", &customer_body(1)));
    assert_eq!(conflict.status, 409);

    let deleted = exchange(&server, b"DELETE /api/customers/acct-00000001 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.text(), customer_body(1));
    let again = exchange(&server, b"DELETE /api/customers/acct-00000001 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(again.status, 404);
    assert_eq!(exchange(&server, &get("/api/customers/acct-00000001")).status, 404);
}

#[test]
fn etag_is_a_body_hash_without_updated_at_and_key_field_is_per_route() {
    let server = Server::start("");
    let body = r#"{"ticketId":"t-1","accountId":"a","issue":"no signal","status":"open","timestamp":1}"#;
    let created = exchange(&server, &post("/api/tickets", body));
    assert_eq!(created.status, 201, "{}", created.text());
    let got = exchange(&server, &get("/api/tickets/t-1"));
    assert_eq!(got.text(), body);
    let etag = got.header("ETag").unwrap().to_string();
    assert!(etag.starts_with('"') && etag.len() == 18, "{etag}");
    // A ticket is not a customer: the customers route does not see it.
    assert_eq!(exchange(&server, &get("/api/customers/t-1")).status, 404);
}

#[test]
fn bad_requests_get_json_errors() {
    let server = Server::start("");
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (post("/api/customers", "{not json"), 400),
        (post("/api/customers", r#"{"name":"no key"}"#), 400),
        (post("/api/customers", "[1,2]"), 400),
        (get("/api/nothing/here"), 404),
        (get("/api/customers/"), 404),
        (get("/api/customers?limit=ten"), 400),
        (get("/api/customers?offset=x"), 400),
        (get("/api/customers/%zz"), 400),
        (b"PATCH /api/customers/a HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".to_vec(), 405),
        (b"DELETE /api/customers HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 405),
        (b"POST /health/live HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".to_vec(), 405),
        (
            b"POST /api/customers HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
            400,
        ),
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
    ];
    for (request, status) in cases {
        let r = exchange(&server, &request);
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&request));
        assert!(r.json()["error"].is_string(), "{}", r.text());
        if status == 405 {
            assert!(r.header("Allow").is_some());
        }
    }
    let r = exchange(&server, b"PATCH /api/customers/a HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.header("Allow"), Some("GET, HEAD, PUT, DELETE"));
    let r = exchange(&server, b"DELETE /api/customers HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.header("Allow"), Some("GET, HEAD, POST"));
}

#[test]
fn malformed_request_closes_the_connection() {
    let server = Server::start("");
    let mut s = server.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nBad Header Line\r\n\r\n").unwrap();
    let mut pending = Vec::new();
    let r = read_response(&mut s, &mut pending, false);
    assert_eq!(r.status, 400);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(closed(&mut s, &pending));
}

#[test]
fn admin_token_guards_writes() {
    let server = Server::start("  admin_token: s3cret");
    let denied = exchange(&server, &post("/api/customers", &customer_body(2)));
    assert_eq!(denied.status, 401);
    assert_eq!(denied.header("WWW-Authenticate"), Some("Bearer"));
    let body = customer_body(2);
    let wrong = format!(
        "POST /api/customers HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer nope\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(exchange(&server, wrong.as_bytes()).status, 401);
    let right = format!(
        "POST /api/customers HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(exchange(&server, right.as_bytes()).status, 201);
    assert_eq!(exchange(&server, b"DELETE /api/customers/acct-00000002 HTTP/1.1\r\nHost: t\r\n\r\n").status, 401);
    assert_eq!(exchange(&server, &get("/api/customers/acct-00000002")).status, 200, "reads need no token");
    let del = b"DELETE /api/customers/acct-00000002 HTTP/1.1\r\nHost: t\r\nAuthorization: bearer s3cret\r\n\r\n";
    assert_eq!(exchange(&server, del).status, 200);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start("");
    exchange(&server, &post("/api/customers", &customer_body(3)));
    let mut s = server.connect();
    let mut burst = get("/api/customers/acct-00000003");
    burst.extend_from_slice(&get("/api/customers/missing"));
    burst.extend_from_slice(b"HEAD /api/customers/acct-00000003 HTTP/1.1\r\nHost: t\r\n\r\n");
    s.write_all(&burst).unwrap();
    let mut pending = Vec::new();
    let a = read_response(&mut s, &mut pending, false);
    let b = read_response(&mut s, &mut pending, false);
    let c = read_response(&mut s, &mut pending, true);
    assert_eq!((a.status, b.status, c.status), (200, 404, 200));
    assert_eq!(a.text(), customer_body(3));
    assert!(pending.is_empty());
}

#[test]
fn request_sent_one_byte_at_a_time() {
    let server = Server::start("");
    let mut s = server.connect();
    let body = customer_body(4);
    let request = post("/api/customers", &body);
    for b in &request {
        s.write_all(std::slice::from_ref(b)).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    let r = read_response(&mut s, &mut Vec::new(), false);
    assert_eq!(r.status, 201);
    assert_eq!(r.text(), body);
}

#[test]
fn two_hundred_keys_over_one_connection_exercise_forwarding() {
    let server = Server::start("");
    let mut s = server.connect();
    let mut pending = Vec::new();
    for i in 0..200 {
        s.write_all(&post("/api/customers", &customer_body(1000 + i))).unwrap();
        assert_eq!(read_response(&mut s, &mut pending, false).status, 201);
    }
    for i in 0..200 {
        s.write_all(&get(&format!("/api/customers/acct-{:08}", 1000 + i))).unwrap();
        let r = read_response(&mut s, &mut pending, false);
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), customer_body(1000 + i));
    }
    // Both shards answered: the owners were local for some keys, remote for others.
    let metrics = reqwest::blocking::get(server.url("/metrics")).unwrap().text().unwrap();
    let forwarded: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("push_cache_requests_forwarded_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(forwarded >= 50, "{metrics}");
    let entries: Vec<u64> = metrics
        .lines()
        .filter(|l| l.starts_with("push_cache_store_entries{") && l.contains("store=\"main\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries.iter().sum::<u64>(), 200);
    assert!(entries.iter().all(|e| *e > 50), "{entries:?}");
}

#[test]
fn key_listing_gathers_all_shards() {
    let server = Server::start("");
    for i in 0..30 {
        assert_eq!(exchange(&server, &post("/api/customers", &customer_body(i))).status, 201);
    }
    let all = exchange(&server, &get("/api/customers")).json();
    let expected: Vec<String> = (0..30).map(|i| format!("acct-{i:08}")).collect();
    assert_eq!(all, serde_json::json!(expected));
    let page = exchange(&server, &get("/api/customers?limit=5&offset=10")).json();
    assert_eq!(page, serde_json::json!(expected[10..15]));
    let filtered = exchange(&server, &get("/api/customers?filter=acct-0000002")).json();
    assert_eq!(filtered, serde_json::json!(expected[20..30]));
    let none = exchange(&server, &get("/api/customers?offset=100")).json();
    assert_eq!(none, serde_json::json!([]));
}

#[test]
fn keep_alive_close_and_http10() {
    let server = Server::start("");
    let mut s = server.connect();
    let mut pending = Vec::new();
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, &mut pending, false).status, 200);
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut pending, false);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(closed(&mut s, &pending));

    let mut s = server.connect();
    s.write_all(b"GET /health/live HTTP/1.0\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut pending, false);
    assert_eq!(r.status, 200);
    assert!(closed(&mut s, &pending));

    let mut s = server.connect();
    s.write_all(b"GET /health/live HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut pending, false);
    assert_eq!(r.header("Connection"), Some("keep-alive"));
    s.write_all(b"GET /health/live HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, &mut pending, false).status, 200);
}

#[test]
fn chunked_body_and_expect_continue() {
    let server = Server::start("");
    let body = customer_body(5);
    let (a, b) = body.split_at(10);
    let chunked = format!("POST /api/customers HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len());
    let r = exchange(&server, chunked.as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.text(), body);

    let body = customer_body(6);
    let mut s = server.connect();
    let head = format!(
        "POST /api/customers HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut pending = Vec::new();
    let cont = read_response(&mut s, &mut pending, false);
    assert_eq!(cont.status, 100);
    s.write_all(body.as_bytes()).unwrap();
    assert_eq!(read_response(&mut s, &mut pending, false).status, 201);
}

#[test]
fn oversized_header_and_body() {
    let server = Server::start("  limits: {header_bytes: 2048, body_bytes: 4096}");
    let big_header = format!("GET /health/live HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(3000));
    assert_eq!(exchange(&server, big_header.as_bytes()).status, 431);
    let endless = format!("GET /health/live HTTP/1.1\r\nHost: t\r\nX-Big: {}", "a".repeat(5000));
    assert_eq!(exchange(&server, endless.as_bytes()).status, 431);
    let big_body = format!(r#"{{"accountId":"big","pad":"{}"}}"#, "x".repeat(5000));
    let r = exchange(&server, &post("/api/customers", &big_body));
    assert_eq!(r.status, 413);
    let chunked = format!(
        "POST /api/customers HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big_body}\r\n0\r\n\r\n",
        big_body.len()
    );
    assert_eq!(exchange(&server, chunked.as_bytes()).status, 413);
    // Just under the limit is fine.
    let ok_body = format!(r#"{{"accountId":"ok","pad":"{}"}}"#, "x".repeat(3000));
    assert_eq!(exchange(&server, &post("/api/customers", &ok_body)).status, 201);
}

#[test]
fn slow_client_is_cut_off_by_the_header_timeout() {
    let server = Server::start("  limits: {header_timeout_ms: 300, idle_timeout_ms: 1000}");
    let mut s = server.connect();
    let started = Instant::now();
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: t\r\n").unwrap();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(50));
        s.write_all(b"X-Slow: 1\r\n").unwrap();
    }
    let mut pending = Vec::new();
    let r = read_response(&mut s, &mut pending, false);
    assert_eq!(r.status, 408);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(closed(&mut s, &pending));

    // An idle keep-alive connection is closed quietly after the idle timeout.
    let mut s = server.connect();
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, &mut pending, false).status, 200);
    let idle = Instant::now();
    assert!(closed(&mut s, &pending));
    let waited = idle.elapsed();
    assert!(waited >= Duration::from_millis(800) && waited < Duration::from_secs(3), "{waited:?}");
}

#[test]
fn five_hundred_concurrent_connections() {
    let server = Server::start("");
    exchange(&server, &post("/api/customers", &customer_body(7)));
    let mut conns: Vec<_> = (0..500).map(|_| server.connect()).collect();
    for s in conns.iter_mut() {
        s.write_all(&get("/api/customers/acct-00000007")).unwrap();
    }
    for s in conns.iter_mut() {
        let r = read_response(s, &mut Vec::new(), false);
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), customer_body(7));
    }
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let url = server.url("/api/customers/acct-00000007");
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                (0..50).all(|_| client.get(&url).send().map(|r| r.status() == 200).unwrap_or(false))
            })
        })
        .collect();
    assert!(handles.into_iter().all(|h| h.join().unwrap()));
}

#[test]
fn health_and_metrics_endpoints() {
    let server = Server::start("");
    let client = reqwest::blocking::Client::new();
    assert_eq!(client.get(server.url("/health/live")).send().unwrap().status(), 200);
    client.get(server.url("/api/customers/none")).send().unwrap();
    let metrics = client.get(server.url("/metrics")).send().unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = metrics.text().unwrap();
    assert!(
        text.contains("push_cache_http_requests_total{route=\"/customers\",method=\"GET\",status=\"404\"} 1"),
        "{text}"
    );
    assert!(text.contains("push_cache_http_request_duration_seconds_count"));
    assert!(text.contains("push_cache_store_bytes{shard=\"1\",store=\"main\"}"));
    assert!(text.contains("push_cache_build_info{version="));
}

#[test]
fn sigterm_stops_cleanly_and_quickly() {
    let mut server = Server::start("");
    // An idle keep-alive connection must not hold the stop back.
    let mut idle = server.connect();
    idle.write_all(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_response(&mut idle, &mut Vec::new(), false);
    let (code, took) = server.terminate();
    assert_eq!(code, Some(0), "{}", server.log());
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn idle_server_does_not_spin() {
    let server = Server::start("");
    std::thread::sleep(Duration::from_millis(500));
    let ticks = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let before = ticks(server.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = ticks(server.pid()) - before;
    // A spinning shard would burn ~200 ticks (2 s at 100 Hz) per core.
    assert!(used <= 10, "idle server used {used} ticks in 2 s");
}

#[test]
fn bad_config_stops_startup_naming_the_key() {
    let dir = temp_dir("badcfg");
    let config = dir.join("bad.yaml");
    std::fs::write(&config, format!("{KAFKA_NOWHERE}{DEFAULT_CACHE}webservice: {{adress: x}}\n")).unwrap();
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_push-cache")).arg("--config").arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("adress"), "{err}");

    std::fs::write(&config, format!("{KAFKA_NOWHERE}{DEFAULT_CACHE}")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_push-cache"))
        .arg("--config")
        .arg(&config)
        .env("APP_RUNTIME__SHARDS", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shards"));
}

/// io_uring needs locked memory: with too little, start-up stops at once
/// (exit 1, not a hang, even with more shards than CPUs) and says which
/// limit to raise. Before, it said only "shard 0 stopped during start-up".
#[test]
fn too_little_locked_memory_stops_startup_naming_the_limit() {
    use std::os::unix::process::CommandExt;
    let dir = temp_dir("memlock");
    let config = dir.join("memlock.yaml");
    let cache = DEFAULT_CACHE.replace("shards: 2", "shards: 8");
    std::fs::write(&config, format!("webservice: {{address: '127.0.0.1:0'}}\n{KAFKA_NOWHERE}{cache}")).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_push-cache"));
    command.arg("--config").arg(&config);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 64 * 1024, rlim_max: 64 * 1024 };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let started = Instant::now();
    let out = command.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot start shard") && err.contains("ulimit -l"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "start-up took {:?}", started.elapsed());
}
