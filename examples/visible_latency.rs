//! Produce-to-visible latency: produces customer records one at a time and
//! polls the cache over HTTP until each is served, then prints percentiles.
//!
//! cargo run --release --example visible_latency -- \
//!   --brokers 127.0.0.1:9092 --registry http://127.0.0.1:8081 \
//!   --url http://127.0.0.1:8080/api/customers --topic customers --count 500

use hdrhistogram::Histogram;
use push_cache::kafka::decode::encode_frame;
use push_cache::kafka::registry_client::RegistryClient;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SCHEMA: &str = r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[
 {"name":"accountId","type":"string"},{"name":"name","type":"string"},{"name":"address","type":"string"},
 {"name":"phone","type":"string"},{"name":"createdAt","type":"long"},{"name":"updatedAt","type":"long"}]}"#;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_string())
}

fn avro_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn avro_string(out: &mut Vec<u8>, s: &str) {
    avro_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

fn customer(key: &str, name: &str, updated: i64) -> Vec<u8> {
    let mut d = Vec::new();
    for s in [key, name, "1 Latency Lane", "+44 20 7946 0000"] {
        avro_string(&mut d, s);
    }
    avro_long(&mut d, 1_700_000_000_000);
    avro_long(&mut d, updated);
    d
}

/// GET `path` on a kept-alive connection; returns the ETag header value.
fn etag_of(conn: &mut TcpStream, host: &str, path: &str) -> Option<String> {
    write!(conn, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).ok()?;
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let etag = text.lines().find_map(|l| l.strip_prefix("ETag: ")).map(str::to_string);
                return if text.starts_with("HTTP/1.1 200") { etag } else { None };
            }
        }
    }
}

fn main() {
    let (brokers, registry, url) = (
        arg("--brokers", "127.0.0.1:9092"),
        arg("--registry", "http://127.0.0.1:8081"),
        arg("--url", "http://127.0.0.1:8080/api/customers"),
    );
    let (topic, count): (String, u64) =
        (arg("--topic", "customers"), arg("--count", "500").parse().expect("--count N"));
    let id = RegistryClient::new(&registry)
        .expect("registry URL")
        .register(&format!("{topic}-value"), SCHEMA)
        .expect("register schema");
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", &brokers).set("linger.ms", "0").create().expect("producer");
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut conn = TcpStream::connect(host).expect("connect to the cache");
    conn.set_nodelay(true).unwrap();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    // The broker's share: from produce to the broker's acknowledgement.
    let mut acked = hist.clone();
    // The cache's share: from the acknowledgement to the first GET that sees it.
    let mut after_ack = hist.clone();
    let run = std::process::id() as i64 * 1_000_000;
    for i in 0..count {
        let key = format!("latency-{i:06}");
        let updated = run + i as i64;
        let payload = encode_frame(id, &customer(&key, "Latency Probe", updated));
        let started = Instant::now();
        producer.send(BaseRecord::to(&topic).key(&key).payload(&payload)).expect("produce");
        // rdkafka's flush() sleeps in 100 ms steps, and a blocking poll here
        // measured 1 ms at the median whatever the broker did; spinning took
        // a CPU from the broker. Check every 50 us.
        while producer.in_flight_count() > 0 {
            producer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_micros(50));
        }
        let ack = started.elapsed();
        acked.record(ack.as_micros() as u64).unwrap();
        let want = format!("\"{updated}\"");
        while etag_of(&mut conn, host, &format!("{path}/{key}")).as_deref() != Some(want.as_str()) {
            assert!(started.elapsed() < Duration::from_secs(30), "record {key} not visible after 30 s");
        }
        let visible = started.elapsed();
        hist.record(visible.as_micros() as u64).unwrap();
        after_ack.record((visible - ack).as_micros() as u64).unwrap();
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "produce-to-visible over {count} records: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(&hist, 0.5),
        ms(&hist, 0.9),
        ms(&hist, 0.99),
        hist.max() as f64 / 1000.0
    );
    println!(
        "of which produce-to-acknowledged (the broker): p50 {:.2} ms, p99 {:.2} ms",
        ms(&acked, 0.5),
        ms(&acked, 0.99)
    );
    println!(
        "acknowledged-to-visible (fetch, decode, apply, GET): p50 {:.2} ms, p99 {:.2} ms",
        ms(&after_ack, 0.5),
        ms(&after_ack, 0.99)
    );
}
