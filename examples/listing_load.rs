//! GET latency with and without clients paging through the key listing.
//!
//! `cargo run --release --example listing_load -- ADDR [KEYS] [SECONDS] [LISTERS] [LIMIT]`
//! against a running push-cache with a `/customers` in-memory route, e.g.
//! `127.0.0.1:8080 1000000 10 4 100`. Loads KEYS customers by pipelined
//! POSTs (0: use what is there), then measures single GETs (2 closed-loop
//! clients, random keys) for SECONDS alone, then again while LISTERS clients
//! page through every key with `limit=LIMIT`, following `Link`, and prints
//! the percentiles of both and the pages' own latency.

use hdrhistogram::Histogram;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PATH: &str = "/api/customers";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let addr = args.first().cloned().unwrap_or_else(|| "127.0.0.1:8080".into());
    let (keys, seconds, listers, limit) = (arg(1, 200_000), arg(2, 10), arg(3, 4) as usize, arg(4, 100));
    if keys > 0 {
        let t = Instant::now();
        populate(&addr, keys);
        println!("loaded {keys} keys in {:.1} s", t.elapsed().as_secs_f64());
    }
    let total = count_keys(&addr);
    println!("the store holds {total} keys");
    let alone = measure_gets(&addr, total, seconds);
    report("GET alone", &alone);
    let stop = Arc::new(AtomicBool::new(false));
    let pagers: Vec<_> = (0..listers)
        .map(|_| {
            let (addr, stop) = (addr.clone(), stop.clone());
            std::thread::spawn(move || page_forever(&addr, limit, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let busy = measure_gets(&addr, total, seconds);
    stop.store(true, Ordering::Relaxed);
    let mut pages = Histogram::<u64>::new(3).unwrap();
    for p in pagers {
        pages.add(p.join().unwrap()).unwrap();
    }
    report(&format!("GET with {listers} listers (limit={limit})"), &busy);
    report("listing pages", &pages);
    println!(
        "p99 ratio with/without listers: {:.2}",
        busy.value_at_quantile(0.99) as f64 / alone.value_at_quantile(0.99).max(1) as f64
    );
}

fn report(what: &str, h: &Histogram<u64>) {
    let us = |q: f64| h.value_at_quantile(q) as f64;
    println!(
        "{what}: n={} p50={:.0}us p99={:.0}us p99.9={:.0}us max={:.0}us",
        h.len(),
        us(0.5),
        us(0.99),
        us(0.999),
        h.max() as f64
    );
}

fn connect(addr: &str) -> Conn {
    let s = TcpStream::connect(addr).expect("connect to push-cache");
    s.set_nodelay(true).unwrap();
    Conn { s, buf: Vec::new() }
}

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Reads one response: (status, Link header, body).
    fn response(&mut self) -> (u16, Option<String>, Vec<u8>) {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut r = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = r.parse(&self.buf) {
                let status = r.code.unwrap_or(0);
                let header = |name: &str| {
                    r.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).into_owned())
                };
                let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                let link = header("link");
                while self.buf.len() < n + len {
                    self.fill();
                }
                let body = self.buf[n..n + len].to_vec();
                self.buf.drain(..n + len);
                return (status, link, body);
            }
            self.fill();
        }
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 65536];
        let n = self.s.read(&mut chunk).expect("read");
        assert!(n > 0, "server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    fn get(&mut self, path: &str) -> (u16, Option<String>, Vec<u8>) {
        self.s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
        self.response()
    }
}

fn key(i: u64) -> String {
    format!("acct-{i:08}")
}

/// Pipelined POSTs from 4 connections, 1000 requests per write.
fn populate(addr: &str, keys: u64) {
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let mut c = connect(&addr);
                let mine: Vec<u64> = (0..keys).filter(|i| i % 4 == w).collect();
                for batch in mine.chunks(1000) {
                    let mut wire = Vec::new();
                    for i in batch {
                        let body = format!(
                            concat!(
                                r#"{{"accountId":"{}","name":"Customer Name {}","address":"{} Long Street","#,
                                r#""phone":"+44 20 7946 0000","createdAt":1700000000000,"updatedAt":{}}}"#
                            ),
                            key(*i),
                            i,
                            i,
                            1_700_000_500_000 + i
                        );
                        let head = format!("POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len());
                        wire.extend_from_slice(head.as_bytes());
                        wire.extend_from_slice(body.as_bytes());
                    }
                    c.s.write_all(&wire).unwrap();
                    for _ in batch {
                        let (status, _, _) = c.response();
                        assert!(status == 201 || status == 409, "POST answered {status}");
                    }
                }
            })
        })
        .collect();
    workers.into_iter().for_each(|w| w.join().unwrap());
}

fn count_keys(addr: &str) -> u64 {
    let mut c = connect(addr);
    let mut next = Some(format!("{PATH}?limit=10000"));
    let mut n = 0;
    while let Some(path) = next {
        let (status, link, body) = c.get(&path);
        assert_eq!(status, 200);
        n += serde_json::from_slice::<Vec<String>>(&body).unwrap().len() as u64;
        next = link.map(|l| l[1..l.find('>').unwrap()].to_string());
    }
    n
}

/// Two closed-loop GET clients on random keys for `seconds`; latencies in µs.
fn measure_gets(addr: &str, keys: u64, seconds: u64) -> Histogram<u64> {
    let clients: Vec<_> = (0..2u64)
        .map(|c| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let mut h = Histogram::<u64>::new(3).unwrap();
                let mut conn = connect(&addr);
                let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ (c + 1);
                let end = Instant::now() + Duration::from_secs(seconds);
                while Instant::now() < end {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let t = Instant::now();
                    let (status, _, _) = conn.get(&format!("{PATH}/{}", key(x % keys.max(1))));
                    h.record(t.elapsed().as_micros() as u64).unwrap();
                    assert_eq!(status, 200);
                }
                h
            })
        })
        .collect();
    let mut all = Histogram::<u64>::new(3).unwrap();
    for c in clients {
        all.add(c.join().unwrap()).unwrap();
    }
    all
}

/// Follows `Link` through every key, again and again, until stopped; page latencies in µs.
fn page_forever(addr: &str, limit: u64, stop: &AtomicBool) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new(3).unwrap();
    let mut c = connect(addr);
    let first = format!("{PATH}?limit={limit}");
    let mut path = first.clone();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let (status, link, _) = c.get(&path);
        h.record(t.elapsed().as_micros() as u64).unwrap();
        assert_eq!(status, 200);
        path = link.map_or_else(|| first.clone(), |l| l[1..l.find('>').unwrap()].to_string());
    }
    h
}
