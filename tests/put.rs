//! PUT (upsert) on in-memory and Redis stores, and projections (`fields`)
//! applied to writes and to Kafka ingest. Real binary, real sockets,
//! real redis-server, tansu and the bundled registry.

mod common;

use common::kafka::*;
use common::redis::Redis;
use common::*;
use push_cache::registry::server as registry;
use std::time::Duration;

fn put(path: &str, body: &str, extra: &str) -> Vec<u8> {
    format!(
        "PUT {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Creates, replaces and reads back keys owned by every shard.
fn upsert_round_trip(server: &Server, path: &str) {
    for i in 0..8 {
        let key = format!("acct-{i:08}");
        let url = format!("{path}/{key}");
        let created = exchange(server, &put(&url, &customer_body(i), ""));
        assert_eq!(created.status, 201, "{}", created.text());
        assert_eq!(created.text(), customer_body(i));
        assert_eq!(created.header("ETag").map(str::to_owned), Some(format!("\"{}\"", 1_700_000_500_000u64 + i as u64)));
        assert_eq!(created.header("Location"), Some(url.as_str()));
        let newer = customer_body(i + 100).replace(&format!("acct-{:08}", i + 100), &key);
        let replaced = exchange(server, &put(&url, &newer, ""));
        assert_eq!(replaced.status, 200, "{}", replaced.text());
        assert_eq!(replaced.text(), newer);
        let got = exchange(server, &get(&url));
        assert_eq!((got.status, got.text()), (200, newer.clone()));
        assert_eq!(got.header("ETag"), replaced.header("ETag"));
    }
    // No key field in the body: the path names the key. A hash ETag then.
    let bare = exchange(server, &put(&format!("{path}/plain%20key"), r#"{"name":"n"}"#, ""));
    assert_eq!(bare.status, 201, "{}", bare.text());
    assert_eq!(bare.header("ETag").unwrap().len(), 18);
    assert_eq!(exchange(server, &get(&format!("{path}/plain%20key"))).text(), r#"{"name":"n"}"#);
    // POST on a key PUT created still conflicts.
    assert_eq!(exchange(server, &post(path, &customer_body(3).replace("acct-00000103", "acct-00000003"))).status, 409);
}

#[test]
fn put_creates_then_replaces_in_memory() {
    let server = Server::start("");
    upsert_round_trip(&server, "/api/customers");
}

#[test]
fn put_rejects_bad_bodies_and_names_its_method() {
    let server = Server::start("  limits: {body_bytes: 64}");
    let cases = [
        ("{not json", 400),
        ("[1,2]", 400),
        (r#""text""#, 400),
        (r#"{"accountId":"someone-else"}"#, 400),
        (r#"{"accountId":{}}"#, 400),
        (&*format!(r#"{{"accountId":"a","pad":"{}"}}"#, "x".repeat(100)), 413),
    ];
    for (body, status) in cases {
        let r = exchange(&server, &put("/api/customers/a", body, ""));
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert!(r.json()["error"].is_string());
    }
    assert_eq!(exchange(&server, &get("/api/customers/a")).status, 404, "nothing was stored");
    let on_collection = exchange(&server, &put("/api/customers", "{}", ""));
    assert_eq!(on_collection.status, 405);
    assert_eq!(on_collection.header("Allow"), Some("GET, HEAD, POST"));
    let r = exchange(&server, b"PATCH /api/customers/a HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET, HEAD, PUT, DELETE"));
}

#[test]
fn put_needs_the_admin_token_when_one_is_set() {
    let server = Server::start("  admin_token: s3cret");
    let body = r#"{"accountId":"a1"}"#;
    let r = exchange(&server, &put("/api/customers/a1", body, ""));
    assert_eq!(r.status, 401);
    let r = exchange(&server, &put("/api/customers/a1", body, "Authorization: Bearer nope\r\n"));
    assert_eq!(r.status, 401);
    let r = exchange(&server, &put("/api/customers/a1", body, "Authorization: Bearer s3cret\r\n"));
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn put_creates_then_replaces_in_redis() {
    let redis = Redis::start();
    let server = redis.server(4);
    upsert_round_trip(&server, "/api/customers");
}

#[test]
fn projected_stores_keep_only_their_fields_from_writes() {
    let port = free_port();
    let rest = format!(
        "{KAFKA_NOWHERE}cache:
  stores: [{{name: full, type: in_memory}}, {{name: slim, type: in_memory, fields: [accountId, name, updatedAt]}}]
  routes: [{{path: /customers, store: full}}, {{path: /slim, store: slim}}]
runtime: {{shards: 2}}
"
    );
    let server = Server::start_yaml(&config_yaml(port, "", &rest), port, &[]);
    let created = exchange(&server, &post("/api/slim", &customer_body(1)));
    assert_eq!(created.status, 201, "{}", created.text());
    let slim = r#"{"accountId":"acct-00000001","name":"Customer Name 1","updatedAt":1700000500001}"#;
    assert_eq!(created.text(), slim);
    let got = exchange(&server, &get("/api/slim/acct-00000001"));
    assert_eq!((got.text().as_str(), got.header("ETag")), (slim, Some("\"1700000500001\"")));
    let put_body = r#"{"phone":"1","name":"Other","accountId":"acct-00000002"}"#;
    let replaced = exchange(&server, &put("/api/slim/acct-00000002", put_body, ""));
    assert_eq!(replaced.text(), r#"{"name":"Other","accountId":"acct-00000002"}"#, "the body's own field order");
}

#[test]
fn rejects_empty_field_names() {
    let port = free_port();
    let rest = format!(
        "{KAFKA_NOWHERE}cache:
  stores: [{{name: slim, type: in_memory, fields: [accountId, '']}}]
  routes: [{{path: /slim, store: slim}}]
"
    );
    let dir = temp_dir("fields");
    let config = dir.join("config.yaml");
    std::fs::write(&config, config_yaml(port, "", &rest)).unwrap();
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_push-cache")).arg("--config").arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cache.stores[0].fields[1]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Kafka-fed store with `fields: [accountId, name]` serves only those,
/// with a hash ETag (no `updatedAt` kept), while an unprojected store fed by
/// the same topic serves whole records.
#[test]
fn kafka_fed_projection_serves_only_its_fields() {
    let broker = Broker::start();
    broker.create_topic("customers", 2);
    let reg = registry::spawn("127.0.0.1:0", None, None).unwrap();
    let reg_url = format!("http://{}", reg.addr);
    let schema = register(&reg_url, "customers-value", CUSTOMER_V1);
    let p = broker.producer();
    for i in 0..20 {
        p.send_avro("customers", &format!("acct-{i:08}"), &schema, customer(i, 1).0);
    }
    p.flush();
    let port = free_port();
    let stores = ["{name: full, type: in_memory}", "{name: names, type: in_memory, fields: [accountId, name]}"];
    let routes = ["{path: /customers, store: full}", "{path: /names, store: names}"];
    let yaml = kafka_config(port, &broker.bootstrap(), &reg_url, "customers", &stores, &routes);
    let server = Server::start_yaml(&yaml, port, &[]);
    wait_until("readiness", Duration::from_secs(60), || http_get(&server, "/health/ready").0 == 200);
    for i in 0..20 {
        let full = exchange(&server, &get(&format!("/api/customers/acct-{i:08}")));
        assert_eq!(full.text(), customer(i, 1).1);
        let record: serde_json::Value = full.json();
        let names = exchange(&server, &get(&format!("/api/names/acct-{i:08}")));
        let expected = serde_json::json!({"accountId": record["accountId"], "name": record["name"]}).to_string();
        assert_eq!(names.text(), expected);
        let etag = names.header("ETag").unwrap();
        assert_eq!(etag.len(), 18, "a body hash, as updatedAt was not kept: {etag}");
        assert_ne!(Some(etag), full.header("ETag"));
    }
    p.tombstone("customers", "acct-00000004");
    p.flush();
    wait_until("tombstone", Duration::from_secs(20), || http_get(&server, "/api/names/acct-00000004").0 == 404);
}
