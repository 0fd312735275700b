//! One GET hit as a shard handles it, without the socket: parse the request
//! head, resolve the route, look the key up and write the response bytes.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use push_cache::api::handlers::write_entry;
use push_cache::api::router::{Router, Target};
use push_cache::config::Config;
use push_cache::http::request::parse_head;
use push_cache::http::response::Framing;
use push_cache::store::entry::Entry;
use push_cache::store::memory::MemoryStore;

const CONFIG: &str = "
kafka: {brokers: b, group_id: g, topic: t, schema_registry_url: 'http://r'}
cache:
  stores: [{name: main, type: in_memory}]
  routes: [{path: /users, store: main}]
";

fn parse_and_respond(c: &mut Criterion) {
    let router = Router::new(&Config::from_yaml(CONFIG).unwrap());
    let mut store = MemoryStore::default();
    for i in 0..100_000 {
        let body = format!(
            r#"{{"accountId":"acct-{i:08}","name":"Customer Name {i}","address":"{i} Long Street, Some Town, AB1 2CD","phone":"+44 20 7946 0000","createdAt":1700000000000,"updatedAt":1700000500000}}"#
        );
        store.upsert(
            Entry::from_parts(format!("acct-{i:08}").as_bytes(), b"\"1700000500000\"", body.as_bytes()).unwrap(),
        );
    }
    let request =
        b"GET /api/users/acct-00004242 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n";
    let framing = Framing { head_only: false, close: false, keep_alive_10: false };
    let mut out = Vec::with_capacity(4096);
    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_hit_parse_and_respond", |b| {
        b.iter(|| {
            out.clear();
            let head = parse_head(black_box(request), 16384, 1 << 20).unwrap().unwrap();
            let Ok(Target::Item { route, key }) = router.resolve(&request[head.target.clone()]) else {
                panic!("route")
            };
            let r = &router.routes[route];
            black_box(write_entry(r, store.get(key.as_bytes()), None, framing, &mut out))
        })
    });
    group.finish();
}

criterion_group!(benches, parse_and_respond);
criterion_main!(benches);
