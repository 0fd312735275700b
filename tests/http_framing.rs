//! RFC 9112 framing as the real binary applies it over real sockets: one
//! test per rule (Host, request line, absolute-form targets, Transfer-Encoding,
//! chunk syntax and the smuggling it prevents, Expect and 100 Continue,
//! Content-Length), closing politely after a rejection, the body deadline,
//! and linear work for chunked bodies however they are split.

mod common;

use common::{customer_body, exchange, read_response, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CHUNKED_POST: &str = "POST /api/customers HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";

/// Everything the server sends until it closes the connection.
fn read_until_closed(s: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 65536];
    loop {
        assert!(Instant::now() < deadline, "the server did not close; got {:?}", String::from_utf8_lossy(&all));
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                panic!("the server did not close within the read timeout; got {:?}", String::from_utf8_lossy(&all))
            }
            Err(e) => panic!("read failed ({e}) after {:?}", String::from_utf8_lossy(&all)),
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// Sends `request` on a new connection; returns every status line the
/// server wrote before closing (the connection must close).
fn statuses_until_closed(server: &Server, request: &[u8]) -> Vec<u16> {
    let mut s = server.connect();
    s.write_all(request).unwrap();
    let text = read_until_closed(&mut s);
    status_lines(&text)
}

fn status_lines(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.1 ")
        .filter(|(i, _)| *i == 0 || text[..*i].ends_with('\n') || text[..*i].ends_with('}'))
        .map(|(i, _)| text[i + 9..i + 12].parse().unwrap())
        .collect()
}

/// Sends `request` on a new connection and reads one response.
fn status(server: &Server, request: &str) -> u16 {
    exchange(server, request.as_bytes()).status
}

#[test]
fn http11_needs_exactly_one_valid_host() {
    let server = Server::start("");
    assert_eq!(statuses_until_closed(&server, b"GET /health/live HTTP/1.1\r\n\r\n"), [400]);
    let twice = b"GET /health/live HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n";
    assert_eq!(statuses_until_closed(&server, twice), [400]);
    assert_eq!(status(&server, "GET /health/live HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
    assert_eq!(status(&server, "GET /health/live HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n"), 200);
    assert_eq!(status(&server, "GET /health/live HTTP/1.0\r\n\r\n"), 200, "HTTP/1.0 needs no Host");
}

#[test]
fn absolute_form_targets_are_routed_on_their_path() {
    let server = Server::start("");
    assert_eq!(status(&server, "GET http://cache.example/health/live HTTP/1.1\r\nHost: x\r\n\r\n"), 200);
    let r = exchange(&server, b"GET http://cache.example/api/customers/nobody HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.json()["error"].as_str()), (404, Some("key not found")));
}

#[test]
fn a_request_line_that_is_not_http_is_400_and_other_versions_505() {
    let server = Server::start("");
    assert_eq!(statuses_until_closed(&server, b"THIS IS NOT HTTP\r\n\r\n"), [400]);
    assert_eq!(statuses_until_closed(&server, b"GET /health/live\r\n\r\n"), [400]);
    assert_eq!(statuses_until_closed(&server, b"GET /health/live HTTP/2.0\r\nHost: t\r\n\r\n"), [505]);
    assert_eq!(status(&server, "GET /health/live HTTP/1.7\r\nHost: t\r\n\r\n"), 200, "a 1.x minor is served as 1.1");
    assert_eq!(statuses_until_closed(&server, b"GET /health/live HTTP/1.1\nHost: t\n\n"), [400], "bare LF");
}

#[test]
fn a_target_longer_than_the_header_limit_is_414_and_a_long_header_431() {
    let server = Server::start("");
    let long_target = format!("GET /api/customers/{} HTTP/1.1\r\nHost: t\r\n\r\n", "k".repeat(20_000));
    let mut s = server.connect();
    s.write_all(long_target.as_bytes()).unwrap();
    let text = read_until_closed(&mut s);
    assert!(text.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{text:?}");
    let long_header = format!("GET /health/live HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n", "v".repeat(20_000));
    assert_eq!(statuses_until_closed(&server, long_header.as_bytes()), [431]);
}

#[test]
fn transfer_encoding_headers_are_one_list_ending_in_chunked() {
    let server = Server::start("");
    let post = |te_lines: &str| {
        let request = format!("POST /api/customers HTTP/1.1\r\nHost: t\r\n{te_lines}\r\n5\r\nhello\r\n0\r\n\r\n");
        statuses_until_closed(&server, request.as_bytes())
    };
    assert_eq!(post("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"), [501]);
    assert_eq!(post("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"), [501]);
    assert_eq!(post("Transfer-Encoding: chunked, chunked\r\n"), [501]);
    assert_eq!(post("Transfer-Encoding: identity, chunked\r\n"), [501]);
    let body = customer_body(1);
    let ok = format!("{CHUNKED_POST}{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).replace("chunked", "Chunked");
    assert_eq!(status(&server, &ok), 201);
}

#[test]
fn transfer_encoding_on_http10_closes_after_the_response() {
    let server = Server::start("");
    let body = customer_body(2);
    let request = format!(
        "POST /api/customers HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{body}\r\n0\r\n\r\n\
         GET /health/live HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        body.len()
    );
    assert_eq!(statuses_until_closed(&server, request.as_bytes()), [201], "closed after the first response");
}

/// A lenient chunk parser ends `2;a` at the bare LF and then reads the
/// bytes after the body as a second, smuggled request.
#[test]
fn a_bare_lf_in_a_chunk_line_is_400_and_smuggles_nothing() {
    let server = Server::start("");
    let request = b"POST /api/customers HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                    2;a\nxx\r\n0\r\n\r\nGET /api/customers/smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_eq!(statuses_until_closed(&server, request), [400], "exactly one response, then the connection closes");
    let request = b"POST /api/customers HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2;a\nxx\r\n45\r\n";
    assert_eq!(statuses_until_closed(&server, request), [400]);
}

#[test]
fn chunk_lines_and_trailers_allow_only_their_rfc_syntax() {
    let server = Server::start("");
    let body = customer_body(3);
    let post = |size_line: &str, trailer: &str| {
        let request = format!("{CHUNKED_POST}{size_line}\r\n{body}\r\n0\r\n{trailer}\r\n");
        exchange(&server, request.as_bytes()).status
    };
    let size = format!("{:x}", body.len());
    let bad_lines = ["S ", "S;", "S;a=", "0xS", "S;a=\x01"].map(|l| l.replace('S', &size));
    for bad in bad_lines {
        assert_eq!(post(&bad, ""), 400, "size line {bad:?}");
    }
    assert_eq!(post(&size, "Bad Name: x\r\n"), 400, "trailer name with a space");
    assert_eq!(post(&size, "X: a\x7fb\r\n"), 400, "control byte in a trailer");
    assert_eq!(post(&format!("{size} ; name = \"quoted \\\" value\" ;flag"), "Checksum: abc\r\n"), 201);
}

#[test]
fn expectations_other_than_100_continue_are_417() {
    let server = Server::start("");
    let request = b"POST /api/customers HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n{}";
    assert_eq!(statuses_until_closed(&server, request), [417]);
}

/// Sends a head with `Expect: 100-continue` and returns the first response
/// the server writes, without sending the body.
fn first_answer_to_expect(server: &Server, path: &str, extra: &str, length: usize) -> u16 {
    let mut s = server.connect();
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: t\r\n{extra}Expect: 100-continue\r\nContent-Length: {length}\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    read_response(&mut s, &mut Vec::new(), false).status
}

#[test]
fn continue_is_sent_only_when_the_request_may_proceed() {
    let server = Server::start("  admin_token: s3cret");
    let auth = "Authorization: Bearer s3cret\r\n";
    assert_eq!(first_answer_to_expect(&server, "/api/nowhere", auth, 10), 404);
    assert_eq!(first_answer_to_expect(&server, "/api/customers/x", auth, 10), 405);
    assert_eq!(first_answer_to_expect(&server, "/api/customers", "", 10), 401);
    assert_eq!(first_answer_to_expect(&server, "/api/customers", auth, 2 << 20), 413);
    assert_eq!(first_answer_to_expect(&server, "/api/customers", auth, 10), 100);

    // After 100 the body is read and answered.
    let mut s = server.connect();
    let body = customer_body(4);
    let expect = "Expect: 100-continue\r\n";
    let length = body.len();
    let head = format!("POST /api/customers HTTP/1.1\r\nHost: t\r\n{auth}{expect}Content-Length: {length}\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut pending = Vec::new();
    assert_eq!(read_response(&mut s, &mut pending, false).status, 100);
    s.write_all(body.as_bytes()).unwrap();
    assert_eq!(read_response(&mut s, &mut pending, false).status, 201);

    // A refusal instead of 100 closes: the client may or may not send the body.
    let mut s = server.connect();
    s.write_all(b"POST /api/nowhere HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n").unwrap();
    assert_eq!(status_lines(&read_until_closed(&mut s)), [404]);
}

#[test]
fn content_length_is_strictly_digits_and_one_value() {
    let server = Server::start("");
    for bad in ["+2", "2 2", "0x2", "2, 2", "-0", "2.0"] {
        let request = format!("POST /api/customers HTTP/1.1\r\nHost: t\r\nContent-Length: {bad}\r\n\r\n{{}}");
        assert_eq!(statuses_until_closed(&server, request.as_bytes()), [400], "Content-Length: {bad}");
    }
    let differ = b"POST /api/customers HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}";
    assert_eq!(statuses_until_closed(&server, differ), [400]);
    let body = customer_body(5);
    let length = body.len();
    let twice = format!("Content-Length: {length}\r\nContent-Length: {length}\r\n");
    let same = format!("POST /api/customers HTTP/1.1\r\nHost: t\r\n{twice}\r\n{body}");
    assert_eq!(status(&server, &same), 201);
}

/// The client sends a large body the server refuses at once; it must still
/// read the 413 rather than a connection reset.
#[test]
fn a_refused_request_is_answered_before_the_connection_closes() {
    let server = Server::start("");
    for _ in 0..5 {
        let mut s = server.connect();
        let mut writer = s.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            let _ = writer.write_all(b"POST /api/customers HTTP/1.1\r\nHost: t\r\nContent-Length: 3000000\r\n\r\n");
            let chunk = vec![b'x'; 16 * 1024];
            for _ in 0..40 {
                if writer.write_all(&chunk).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let outcome = loop {
            match s.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break Err(e),
            }
        };
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 413 "), "read {text:?}, then {outcome:?}");
        sender.join().unwrap();
    }
}

/// The answers to pipelined requests are still queued on the server (the
/// client reads late) when a malformed request ends the connection, with
/// bytes the client sent after it still unread: closing at once would reset
/// the connection and drop the queued answers, 400 included.
#[test]
fn queued_answers_survive_the_close_after_a_malformed_request() {
    let server = Server::start("");
    let pad = "p".repeat(400_000);
    let body = format!(r#"{{"accountId":"big-2","pad":"{pad}"}}"#);
    assert_eq!(exchange(&server, &common::post("/api/customers", &body)).status, 201);
    let mut burst = b"GET /api/customers/big-2 HTTP/1.1\r\nHost: t\r\n\r\n".repeat(3);
    burst.extend_from_slice(b"GET /health/live HTTP/1.1\r\nHost: t\r\nBad Header Line\r\n\r\n");
    burst.extend_from_slice(&[b'x'; 32 * 1024]);
    let mut s = server.connect();
    s.write_all(&burst).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut got = Vec::new();
    let outcome = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert_eq!(status_lines(&text), [200, 200, 200, 400], "then {outcome:?}");
}

#[test]
fn a_body_must_arrive_within_the_body_timeout() {
    let server = Server::start("  limits: {body_timeout_ms: 1000}");
    let mut s = server.connect();
    let started = Instant::now();
    s.write_all(b"POST /api/customers HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\n\r\n").unwrap();
    // One byte every 200 ms: each read is prompt, the whole body is not.
    for _ in 0..40 {
        if s.write_all(b"x").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let text = read_until_closed(&mut s);
    assert_eq!(status_lines(&text), [408], "{text}");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "408 after {waited:?}");
}

/// CPU time (user + system) of process `pid`'s shard threads so far: the
/// threads that serve HTTP, without the Kafka client's background threads.
fn cpu_time(pid: u32) -> Duration {
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let mut ticks = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else { continue };
        let (name, rest) = stat.split_once(" (").unwrap().1.rsplit_once(") ").unwrap();
        if name.starts_with("shard-") {
            let fields: Vec<&str> = rest.split(' ').collect();
            ticks += fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        }
    }
    assert!(ticks > 0 || std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count() > 1);
    Duration::from_millis(ticks * 1000 / hz)
}

/// An 8 MB chunked body in 100-byte chunks, 40 to a write, a write every
/// millisecond, to a path that refuses POST once the body is in (so the CPU
/// is the framing's). The decoder keeps its state between reads, so the
/// shards' work is linear; decoding from the start on every read kept a
/// shard busy for as long as the upload lasted (over 2 s).
#[test]
fn a_chunked_body_in_small_writes_costs_linear_cpu() {
    let server = Server::start("  limits: {body_bytes: 16777216}");
    let body = "p".repeat(8_000_000);
    let chunks: Vec<Vec<u8>> = body
        .as_bytes()
        .chunks(100)
        .map(|piece| [format!("{:x}\r\n", piece.len()).as_bytes(), piece, b"\r\n"].concat())
        .collect();
    let mut s = server.connect();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_time(server.pid());
    let started = Instant::now();
    s.write_all(b"POST /health/live HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    for forty in chunks.chunks(40) {
        s.write_all(&forty.concat()).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    s.write_all(b"0\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false);
    let (cpu, wall) = (cpu_time(server.pid()) - before, started.elapsed());
    assert_eq!(r.status, 405, "{}", r.text());
    eprintln!("shard CPU for a {} byte body in {} chunks, 40 per write: {cpu:?} in {wall:?}", body.len(), chunks.len());
    assert!(cpu < Duration::from_millis(1000), "shard CPU {cpu:?} for an 8 MB chunked body");
}

/// Pipelined chunked and Content-Length requests sent one byte at a time
/// are answered in order, exactly as when sent whole.
#[test]
fn pipelined_bodies_split_into_single_bytes_parse_as_whole() {
    let server = Server::start("");
    let burst = |i: usize| {
        let (a, b) = (customer_body(100 + i), customer_body(200 + i));
        format!(
            "{CHUNKED_POST}3;x=\"y\"\r\n{}\r\n{:x}\r\n{}\r\n0\r\nT: v\r\n\r\n\
             POST /api/customers HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{b}\
             GET /api/customers/acct-{:08} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            &a[..3],
            a.len() - 3,
            &a[3..],
            b.len(),
            100 + i
        )
    };
    let whole = statuses_until_closed(&server, burst(0).as_bytes());
    assert_eq!(whole, [201, 201, 200]);
    let mut s = server.connect();
    for byte in burst(1).as_bytes() {
        s.write_all(std::slice::from_ref(byte)).unwrap();
    }
    assert_eq!(status_lines(&read_until_closed(&mut s)), whole);
}
