//! `compression: zstd` end to end: the real binary, two in-memory stores fed
//! the same POSTs, one compressed. Every GET, HEAD and conditional GET must
//! answer the same bytes and headers from both, while the compressed store
//! holds far fewer bytes. Also: the config accepts zstd on in-memory stores only.

mod common;

use common::*;
use std::io::Write;
use std::time::Duration;

const CACHE: &str = "cache:
  stores: [{name: plain, type: in_memory}, {name: zipped, type: in_memory, compression: zstd}]
  routes: [{path: /plain, store: plain}, {path: /zipped, store: zipped}]
runtime: {shards: 2}
";

/// Customers of several shapes, like the populate tool's.
fn body(i: usize) -> String {
    let base = customer_body(i);
    match i % 4 {
        0 => base,
        1 => base.replace("}", &format!(r#","tags":["vip","{}"],"notes":"{}"}}"#, i % 13, "n".repeat(i % 50))),
        2 => base.replace("Long Street", &format!("Rue du Commerce, {} Paris", 75_000 + i % 20)),
        _ => base.replace("}", r#","empty":{},"list":[]}"#),
    }
}

/// POSTs `bodies` to `path` over one pipelined connection; all must be 201.
fn post_all(server: &Server, path: &str, bodies: impl Iterator<Item = String>) {
    let mut stream = server.connect();
    let mut pending = Vec::new();
    let requests: Vec<Vec<u8>> = bodies.map(|b| post(path, &b)).collect();
    for chunk in requests.chunks(200) {
        stream.write_all(&chunk.concat()).unwrap();
        for _ in chunk {
            let r = read_response(&mut stream, &mut pending, false);
            assert_eq!(r.status, 201, "{}", r.text());
        }
    }
}

fn metric(server: &Server, name: &str, store: &str) -> u64 {
    let text = exchange(server, &get("/metrics")).text();
    let prefix = format!("{name}{{shard=");
    let label = format!("store=\"{store}\"}} ");
    text.lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(&label))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn compressed_store_answers_the_same_bytes_in_less_memory() {
    let port = free_port();
    let yaml = config_yaml(port, "", &format!("{KAFKA_NOWHERE}{CACHE}"));
    let server = Server::start_yaml(&yaml, port, &[]);
    let count = 6_000;
    for path in ["/api/plain", "/api/zipped"] {
        post_all(&server, path, (0..count).map(body));
    }
    // Training runs beside the shards; later writes pick the dictionary up
    // and compress the sampled bodies a slice at a time.
    let mut extra = count;
    wait_until("the zipped store to compress", Duration::from_secs(90), || {
        for path in ["/api/plain", "/api/zipped"] {
            post_all(&server, path, (extra..extra + 200).map(body));
        }
        extra += 200;
        let (zipped, raw) = (
            metric(&server, "push_cache_store_bytes", "zipped"),
            metric(&server, "push_cache_store_raw_bytes", "zipped"),
        );
        zipped * 10 < raw * 4
    });
    let plain = metric(&server, "push_cache_store_bytes", "plain");
    let (zipped, raw) =
        (metric(&server, "push_cache_store_bytes", "zipped"), metric(&server, "push_cache_store_raw_bytes", "zipped"));
    assert_eq!(raw, plain, "raw bytes of the compressed store are what the plain store holds");
    assert!(zipped * 10 < plain * 4, "compressed {zipped} of {plain} bytes");
    assert!(metric(&server, "push_cache_store_dictionary_trainings_total", "zipped") >= 2);
    assert_eq!(metric(&server, "push_cache_store_dictionaries", "plain"), 0);

    let mut stream = server.connect();
    let mut pending = Vec::new();
    for i in 0..extra {
        let key = format!("acct-{i:08}");
        let mut answers = Vec::new();
        for path in ["/api/plain", "/api/zipped"] {
            let url = format!("{path}/{key}");
            stream.write_all(&get(&url)).unwrap();
            let got = read_response(&mut stream, &mut pending, false);
            stream.write_all(format!("HEAD {url} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).unwrap();
            let head = read_response(&mut stream, &mut pending, true);
            let etag = got.header("ETag").unwrap().to_owned();
            stream
                .write_all(format!("GET {url} HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes())
                .unwrap();
            let not_modified = read_response(&mut stream, &mut pending, false);
            assert_eq!((got.status, head.status, not_modified.status), (200, 200, 304), "{url}");
            let length = head.header("Content-Length").map(str::to_owned);
            let got_length = got.header("Content-Length").map(str::to_owned);
            answers.push((got.body, etag, length, got_length));
        }
        assert_eq!(answers[0], answers[1], "{key}");
        assert_eq!(answers[1].0, body(i).into_bytes(), "{key}");
    }
    // DELETE answers the uncompressed body too.
    let deleted = exchange(&server, format!("DELETE /api/zipped/acct-{:08} HTTP/1.1\r\nHost: t\r\n\r\n", 5).as_bytes());
    assert_eq!((deleted.status, deleted.body), (200, body(5).into_bytes()));
}

#[test]
fn compression_is_zstd_on_in_memory_stores_only() {
    for (store, complaint) in [
        ("{name: s, type: in_memory, compression: lz4}", "zstd"),
        ("{name: s, type: redis, url: 'redis://127.0.0.1:1', compression: zstd}", "compression"),
    ] {
        let port = free_port();
        let cache = format!("cache:\n  stores: [{store}]\n  routes: [{{path: /s, store: s}}]\n");
        let yaml = config_yaml(port, "", &format!("{KAFKA_NOWHERE}{cache}"));
        let dir = temp_dir("cfg");
        std::fs::write(dir.join("config.yaml"), yaml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_push-cache"))
            .arg("--config")
            .arg(dir.join("config.yaml"))
            .arg("--secrets")
            .arg(dir.join("secrets"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{store} was accepted");
        assert!(stderr.contains(complaint), "{store}: {stderr}");
    }
}
