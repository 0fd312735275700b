//! Key listings: ascending JSON arrays of keys paged by `limit`, `offset`
//! and the `after` cursor, with `Link` to the next page, merged over several
//! shards, over in-memory and Redis stores; and what a listing costs the
//! GETs around it. Real binary, real sockets, real redis-server.

mod common;

use common::redis::Redis;
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn memory_server(shards: usize) -> Server {
    let port = free_port();
    let rest = format!(
        "{KAFKA_NOWHERE}cache:
  stores: [{{name: main, type: in_memory}}]
  routes: [{{path: /customers, store: main}}]
runtime: {{shards: {shards}}}
"
    );
    Server::start_yaml(&config_yaml(port, "", &rest), port, &[])
}

/// POSTs one `{"accountId": key}` per key, pipelined in batches on one connection.
fn populate(server: &Server, path: &str, keys: &[String]) {
    let mut s = server.connect();
    let mut pending = Vec::new();
    for batch in keys.chunks(500) {
        let mut wire = Vec::new();
        for k in batch {
            wire.extend(post(path, &serde_json::json!({ "accountId": k, "n": 1 }).to_string()));
        }
        s.write_all(&wire).unwrap();
        for k in batch {
            let r = read_response(&mut s, &mut pending, false);
            assert_eq!(r.status, 201, "{k}: {}", r.text());
        }
    }
}

fn keys_of(r: &Response) -> Vec<String> {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not a JSON array of keys ({e}): {}", r.text()))
}

/// The path and query of a `Link: <…>; rel="next"` header.
fn next_link(r: &Response) -> Option<String> {
    let link = r.header("Link")?;
    assert!(link.ends_with("; rel=\"next\""), "{link}");
    Some(link[1..link.find('>').unwrap()].to_string())
}

/// Follows `Link` from `first` to the end; returns every key and the page count.
fn walk(server: &Server, first: &str) -> (Vec<String>, usize) {
    let mut keys = Vec::new();
    let mut pages = 0;
    let mut next = Some(first.to_string());
    while let Some(path) = next {
        let r = exchange(server, &get(&path));
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        keys.extend(keys_of(&r));
        next = next_link(&r);
        pages += 1;
        assert!(pages < 10_000, "the Link chain does not end");
    }
    (keys, pages)
}

fn sample_keys(n: usize) -> Vec<String> {
    let mut keys: Vec<String> = (0..n).map(|i| format!("acct-{i:06}")).collect();
    keys.extend(["a b/c", "é-clé", "x&y=z", "100%", "plus+sign"].map(String::from));
    keys
}

#[test]
fn pages_follow_the_after_cursor_across_shards() {
    let server = memory_server(3);
    let mut keys = sample_keys(500);
    populate(&server, "/api/customers", &keys);
    keys.sort();

    let all = exchange(&server, &get("/api/customers"));
    assert_eq!(keys_of(&all), keys);
    assert_eq!(all.header("Link"), None, "no limit, no next page");

    let (walked, pages) = walk(&server, "/api/customers?limit=37");
    assert_eq!(walked, keys, "pages joined by Link give every key once, in order");
    assert_eq!(pages, keys.len().div_ceil(37));

    let first = exchange(&server, &get("/api/customers?limit=3"));
    assert_eq!(keys_of(&first), keys[..3]);
    assert_eq!(next_link(&first).as_deref(), Some(format!("/api/customers?limit=3&after={}", keys[2]).as_str()));

    let after = exchange(&server, &get(&format!("/api/customers?after={}&limit=4&offset=2", keys[100])));
    assert_eq!(keys_of(&after), keys[103..107], "offset counts from the cursor");

    let last_page = exchange(&server, &get(&format!("/api/customers?after={}&limit=5", keys[keys.len() - 5])));
    assert_eq!(keys_of(&last_page), keys[keys.len() - 4..]);
    assert_eq!(last_page.header("Link"), None, "the limit did not cut the list");
    let exact = exchange(&server, &get(&format!("/api/customers?after={}&limit=4", keys[keys.len() - 5])));
    assert_eq!(exact.header("Link"), None, "a page that ends exactly at the last key has no next");

    let special = exchange(&server, &get("/api/customers?after=a+b%2Fc&limit=1"));
    assert_eq!(keys_of(&special), ["acct-000000"]);
    let before = exchange(&server, &get("/api/customers?limit=1"));
    assert_eq!(keys_of(&before), ["100%"]);
    assert_eq!(next_link(&before).as_deref(), Some("/api/customers?limit=1&after=100%25"));
    assert_eq!(keys_of(&exchange(&server, &get("/api/customers?limit=0"))), Vec::<String>::new());
}

#[test]
fn filters_page_with_the_filter_kept_in_the_link() {
    let server = memory_server(2);
    let mut keys = sample_keys(3000);
    populate(&server, "/api/customers", &keys);
    keys.sort();
    let matching: Vec<String> = keys.iter().filter(|k| k.contains("7")).cloned().collect();
    let (walked, _) = walk(&server, "/api/customers?filter=7&limit=50");
    assert_eq!(walked, matching);
    let r = exchange(&server, &get("/api/customers?filter=%C3%A9-&limit=1"));
    assert_eq!(keys_of(&r), ["é-clé"]);
    let r = exchange(&server, &get("/api/customers?filter=00&limit=2"));
    assert_eq!(next_link(&r).as_deref(), Some("/api/customers?limit=2&after=acct-000000&filter=00"));
    // A filter matching nothing scans every key, slice by slice, and answers [].
    assert_eq!(keys_of(&exchange(&server, &get("/api/customers?filter=nothing-like-this"))), Vec::<String>::new());
}

#[test]
fn bad_listing_parameters_are_400() {
    let server = memory_server(2);
    for query in ["limit=ten", "limit=-1", "offset=x", "offset=1.5", "limit=%ZZ"] {
        let r = exchange(&server, &get(&format!("/api/customers?{query}")));
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        assert!(r.json()["error"].is_string());
    }
}

/// Median time of `n` GETs of `path` on one keep-alive connection.
fn median_ms(server: &Server, path: &str, n: usize) -> f64 {
    let mut s = server.connect();
    let mut pending = Vec::new();
    let mut times: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            s.write_all(&get(path)).unwrap();
            let r = read_response(&mut s, &mut pending, false);
            assert_eq!(r.status, 200);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[n / 2]
}

/// A page after a cursor costs about its size, not a sort of every key:
/// deep in 100 000 keys, a page of 10 takes about as long as a GET. (Before
/// the ordered index every page gathered and sorted all keys: 13-19 ms at
/// 50 000 keys in a release build, far more in this debug one.)
#[test]
fn a_page_after_a_cursor_does_not_cost_the_whole_store() {
    let server = memory_server(2);
    let keys: Vec<String> = (0..100_000).map(|i| format!("acct-{i:08}")).collect();
    populate(&server, "/api/customers", &keys);
    let get_ms = median_ms(&server, "/api/customers/acct-00050000", 50);
    let page_ms = median_ms(&server, "/api/customers?after=acct-00090000&limit=10", 50);
    let r = exchange(&server, &get("/api/customers?after=acct-00090000&limit=10"));
    assert_eq!(keys_of(&r), keys[90_001..90_011]);
    assert!(page_ms < 5.0 + 5.0 * get_ms, "a page of 10 took {page_ms:.2} ms (a GET {get_ms:.2} ms)");
}

/// While clients list every key without a limit, GETs on other connections
/// of the same shard keep being answered: the listing yields between
/// slices. (Before, each listing gathered and sorted every key in one go,
/// so a GET waited for the rest of the listing in progress.)
#[test]
fn unlimited_listings_do_not_stall_gets() {
    let server = memory_server(1);
    let keys: Vec<String> = (0..200_000).map(|i| format!("acct-{i:08}")).collect();
    populate(&server, "/api/customers", &keys);
    let quiet = get_latencies_ms(&server, Duration::from_secs(2));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listers: Vec<_> = (0..2)
        .map(|_| {
            let (addr, stop) = (server.addr, stop.clone());
            std::thread::spawn(move || {
                let mut lists = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.write_all(&get("/api/customers?filter=acct")).unwrap();
                    let r = read_response(&mut s, &mut Vec::new(), false);
                    assert_eq!((r.status, r.body.len()), (200, 200_000 * 16 + 1));
                    lists += 1;
                }
                lists
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let busy = get_latencies_ms(&server, Duration::from_secs(4));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let lists: usize = listers.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(lists > 0);
    eprintln!("GET p50/p99 {busy:.2?} ms while listing ({lists} listings), {quiet:.2?} ms without");
    // The median GET waits at most a slice of a listing, not the rest of one.
    assert!(busy.0 < 10.0 + 4.0 * quiet.0, "GET p50/p99 {busy:.2?} ms while listing, {quiet:.2?} ms without");
}

/// Median and 99th percentile of GETs sent back to back for `time`, in ms.
fn get_latencies_ms(server: &Server, time: Duration) -> (f64, f64) {
    let mut s = server.connect();
    let mut pending = Vec::new();
    let mut times = Vec::new();
    let end = Instant::now() + time;
    while Instant::now() < end {
        let t = Instant::now();
        s.write_all(&get("/api/customers/acct-00000042")).unwrap();
        assert_eq!(read_response(&mut s, &mut pending, false).status, 200);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

#[test]
fn redis_stores_page_the_same_way() {
    let redis = Redis::start();
    let server = redis.server(3);
    let mut keys = sample_keys(300);
    keys.push("a*b?[c]".into());
    populate(&server, "/api/customers", &keys);
    keys.sort();
    assert_eq!(keys_of(&exchange(&server, &get("/api/customers"))), keys);
    let (walked, pages) = walk(&server, "/api/customers?limit=40");
    assert_eq!((walked, pages), (keys.clone(), keys.len().div_ceil(40)));
    let star: Vec<String> = keys.iter().filter(|k| k.contains('*')).cloned().collect();
    assert_eq!(keys_of(&exchange(&server, &get("/api/customers?filter=*"))), star, "glob characters match literally");
    let sevens: Vec<String> = keys.iter().filter(|k| k.contains("7")).cloned().collect();
    assert_eq!(walk(&server, "/api/customers?filter=7&limit=9").0, sevens);
    let after = exchange(&server, &get(&format!("/api/customers?after={}&limit=3&offset=1", keys[10])));
    assert_eq!(keys_of(&after), keys[12..15]);
}
