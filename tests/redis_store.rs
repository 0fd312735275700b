//! Redis stores next to in-memory ones, against a
//! real redis-server with an ACL user, a tansu broker and the binary.

mod common;

use ::redis::Commands;
use common::kafka::*;
use common::redis::Redis;
use common::*;
use push_cache::registry::server as registry;
use std::time::{Duration, Instant};

fn config(port: u16, brokers: &str, registry_url: &str, redis_url: &str) -> String {
    let shared = format!("{{name: shared-customers, type: redis, url: '{redis_url}', prefix: cust, schemas: [customer], timeout_ms: 300}}");
    let bills =
        format!("{{name: bills, type: redis, url: '{redis_url}', prefix: bills, schemas: [bill], timeout_ms: 300}}");
    let stores = ["{name: customers, type: in_memory, schemas: [customer]}", &shared, &bills];
    let routes = [
        "{path: /customers, store: customers}",
        "{path: /shared/customers, store: shared-customers}",
        "{path: /bills, store: bills}",
    ];
    kafka_config(port, brokers, registry_url, "[customers, bills]", &stores, &routes)
}

struct Stack {
    broker: Broker,
    _registry: registry::RegistryHandle,
    redis: Redis,
    server: Server,
    customer: Schema,
    bill: Schema,
}

fn stack() -> Stack {
    let broker = Broker::start();
    broker.create_topic("customers", 2);
    broker.create_topic("bills", 1);
    let reg = registry::spawn("127.0.0.1:0", None, None).unwrap();
    let reg_url = format!("http://{}", reg.addr);
    let customer = register(&reg_url, "customers-value", CUSTOMER_V1);
    let bill_schema = register(&reg_url, "bills-value", BILL);
    let redis = Redis::start();
    let p = broker.producer();
    for i in 0..40 {
        p.send_avro("customers", &format!("acct-{i:08}"), &customer, common::kafka::customer(i, 1).0);
        p.send_avro("bills", &format!("acct-{i:08}"), &bill_schema, bill(i).0);
    }
    p.tombstone("bills", "acct-00000003");
    p.flush();
    let port = free_port();
    let server = Server::start_yaml(&config(port, &broker.bootstrap(), &reg_url, &redis.url(2)), port, &[]);
    Stack { broker, _registry: reg, redis, server, customer, bill: bill_schema }
}

#[test]
fn redis_routes_serve_ingested_records_and_writes() {
    let s = stack();
    wait_until("readiness", Duration::from_secs(60), || http_get(&s.server, "/health/ready").0 == 200);
    for i in 0..40u64 {
        let key = format!("acct-{i:08}");
        let customer = common::kafka::customer(i, 1).1;
        wait_until("redis writes", Duration::from_secs(20), || {
            http_get(&s.server, &format!("/api/shared/customers/{key}")) == (200, customer.clone())
        });
        assert_eq!(http_get(&s.server, &format!("/api/customers/{key}")), (200, customer));
        let bills = http_get(&s.server, &format!("/api/bills/{key}"));
        if i == 3 {
            assert_eq!(bills.0, 404, "tombstoned in Redis too");
        } else {
            assert_eq!(bills, (200, bill(i).1));
        }
    }
    let r = exchange(&s.server, &common::get("/api/shared/customers/acct-00000007"));
    assert_eq!(r.header("ETag"), Some("\"1700000500071\""));
    let conditional =
        b"GET /api/shared/customers/acct-00000007 HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"1700000500071\"\r\n\r\n";
    assert_eq!(exchange(&s.server, conditional).status, 304);

    // Keys live under the prefix in database 2, for the ACL user.
    let mut conn = s.redis.client(2);
    let raw: Vec<u8> = conn.get("bills:acct-00000001").unwrap();
    assert!(raw.starts_with(b"\"") && raw.ends_with(bill(1).1.as_bytes()));
    let in_db0: Option<Vec<u8>> = s.redis.client(0).get("bills:acct-00000001").unwrap();
    assert!(in_db0.is_none());

    // POST, DELETE and listing by SCAN on a Redis route.
    let body = r#"{"accountId":"posted-1","year":2025,"totalAmount":1.5,"payments":[]}"#;
    assert_eq!(exchange(&s.server, &post("/api/bills", body)).status, 201);
    assert_eq!(exchange(&s.server, &post("/api/bills", body)).status, 409);
    assert_eq!(http_get(&s.server, "/api/bills/posted-1"), (200, body.to_string()));
    let listed: Vec<String> = serde_json::from_str(&http_get(&s.server, "/api/bills?filter=acct-0000000").1).unwrap();
    assert_eq!(listed, (0..10).filter(|i| *i != 3).map(|i| format!("acct-{i:08}")).collect::<Vec<_>>());
    let page: Vec<String> = serde_json::from_str(&http_get(&s.server, "/api/bills?limit=2&offset=1").1).unwrap();
    assert_eq!(page, vec!["acct-00000001", "acct-00000002"]);
    let deleted = exchange(&s.server, b"DELETE /api/bills/posted-1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((deleted.status, deleted.text()), (200, body.to_string()));
    assert_eq!(http_get(&s.server, "/api/bills/posted-1").0, 404);

    let metrics = http_get(&s.server, "/metrics").1;
    assert!(metrics.contains("push_cache_redis_commands_total{store=\"bills\"}"), "{metrics}");
    assert!(metrics.contains("push_cache_redis_command_duration_seconds_bucket{store=\"bills\""));
}

#[test]
fn redis_killed_and_restarted_routes_fail_fast_then_converge() {
    let mut s = stack();
    wait_until("readiness", Duration::from_secs(60), || http_get(&s.server, "/health/ready").0 == 200);
    wait_until("redis writes", Duration::from_secs(20), || http_get(&s.server, "/api/bills/acct-00000039").0 == 200);

    s.redis.kill();
    // Redis routes answer 503 within their timeout; memory routes keep serving.
    let started = Instant::now();
    let (status, body) = http_get(&s.server, "/api/bills/acct-00000001");
    assert_eq!(status, 503, "{body}");
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    assert!(body.contains("bills"), "{body}");
    for i in 0..40 {
        assert_eq!(http_get(&s.server, &format!("/api/customers/acct-{i:08}")).0, 200);
    }
    wait_until("readiness to report Redis", Duration::from_secs(10), || {
        let (status, body) = http_get(&s.server, "/health/ready");
        status == 503 && body.contains("redis:bills")
    });

    // Records that arrive meanwhile wait for Redis; none is dropped.
    let p = s.broker.producer();
    for i in 0..40 {
        p.send_avro("customers", &format!("acct-{i:08}"), &s.customer, common::kafka::customer(i, 9).0);
    }
    p.tombstone("bills", "acct-00000010");
    p.send_avro("bills", "acct-00000099", &s.bill, bill(99).0);
    p.flush();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        http_get(&s.server, "/api/customers/acct-00000005").1,
        common::kafka::customer(5, 9).1,
        "memory follows on"
    );

    s.redis.restart();
    wait_until("readiness after Redis returns", Duration::from_secs(30), || {
        http_get(&s.server, "/health/ready").0 == 200
    });
    for i in 0..40u64 {
        let key = format!("acct-{i:08}");
        let want = common::kafka::customer(i, 9).1;
        wait_until("Redis to converge", Duration::from_secs(20), || {
            http_get(&s.server, &format!("/api/shared/customers/{key}")) == (200, want.clone())
        });
    }
    assert_eq!(http_get(&s.server, "/api/bills/acct-00000010").0, 404);
    assert_eq!(http_get(&s.server, "/api/bills/acct-00000099"), (200, bill(99).1));
    assert_eq!(http_get(&s.server, "/api/bills/acct-00000011"), (200, bill(11).1));
}
