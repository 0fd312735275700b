//! `GET /offsets` and the per-partition gauges, against the real binary and
//! a tansu broker: every assigned partition is reported from the moment it
//! is assigned (not only once a record arrived), with applied offsets that
//! move only when records are visible; freshness metrics per topic and
//! partition.

mod common;

use common::kafka::*;
use common::*;
use push_cache::registry::server as registry;
use std::time::Duration;

fn offsets(server: &Server) -> Vec<serde_json::Value> {
    let (status, body) = http_get(server, "/offsets");
    assert_eq!(status, 200, "{body}");
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    all["memory"].as_array().unwrap_or_else(|| panic!("a memory feed: {body}")).clone()
}

fn row(rows: &[serde_json::Value], partition: i64) -> &serde_json::Value {
    rows.iter().find(|r| r["partition"] == partition).unwrap_or_else(|| panic!("partition {partition} in {rows:?}"))
}

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(name_and_labels)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Five records on partition 1 of three; the registry is unreachable, so
/// nothing can be applied: every partition is still reported, with its lag.
#[test]
fn every_assigned_partition_is_reported_before_any_record_is_applied() {
    let broker = Broker::start();
    broker.create_topic("customers", 3);
    let reg = registry::spawn("127.0.0.1:0", None, None).unwrap();
    let schema = register(&format!("http://{}", reg.addr), "customers-value", CUSTOMER_V1);
    let producer = broker.producer();
    // One record per batch: tansu 0.6 reports a watermark as the last batch's base offset + 1.
    for i in 0..5 {
        producer.send_avro_to("customers", 1, &format!("acct-{i:08}"), &schema, customer(i, 1).0);
        producer.flush();
    }
    let dead_registry = format!("http://127.0.0.1:{}", free_port());
    let port = free_port();
    let server = Server::start_yaml(&customers_config(port, &broker.bootstrap(), &dead_registry), port, &[]);
    wait_until("every partition in /offsets", Duration::from_secs(30), || offsets(&server).len() == 3);
    let rows = offsets(&server);
    for p in [0, 2] {
        let r = row(&rows, p);
        assert_eq!((r["applied"].as_i64(), r["high"].as_i64(), r["lag"].as_i64()), (Some(0), Some(0), Some(0)), "{r}");
    }
    let r = row(&rows, 1);
    assert_eq!((r["applied"].as_i64(), r["high"].as_i64(), r["lag"].as_i64()), (Some(0), Some(5), Some(5)), "{r}");
    let metrics = http_get(&server, "/metrics").1;
    for p in 0..3 {
        let lag = metric(&metrics, &format!("push_cache_kafka_lag{{topic=\"customers\",partition=\"{p}\"}}"));
        assert_eq!(lag, Some(if p == 1 { 5.0 } else { 0.0 }), "lag of partition {p}:\n{metrics}");
        let position = metric(&metrics, &format!("push_cache_kafka_position{{topic=\"customers\",partition=\"{p}\"}}"));
        assert_eq!(position, Some(0.0), "position of partition {p}");
    }
    assert_eq!(http_get(&server, "/health/ready").0, 503);
}

/// Once visible, records move the applied offset, and their staleness and
/// the newest record's age are reported.
#[test]
fn applied_offsets_and_freshness_follow_what_is_visible() {
    let broker = Broker::start();
    broker.create_topic("customers", 2);
    let reg = registry::spawn("127.0.0.1:0", None, None).unwrap();
    let reg_url = format!("http://{}", reg.addr);
    let schema = register(&reg_url, "customers-value", CUSTOMER_V1);
    let producer = broker.producer();
    // One record per batch: tansu 0.6 reports a watermark as the last batch's base offset + 1.
    for i in 0..5 {
        producer.send_avro_to("customers", 1, &format!("acct-{i:08}"), &schema, customer(i, 1).0);
        producer.flush();
    }
    let port = free_port();
    let server = Server::start_yaml(&customers_config(port, &broker.bootstrap(), &reg_url), port, &[]);
    wait_until("readiness", Duration::from_secs(30), || http_get(&server, "/health/ready").0 == 200);
    let rows = offsets(&server);
    assert_eq!(row(&rows, 1)["applied"], 5, "{rows:?}");
    assert_eq!(row(&rows, 0)["applied"], 0, "{rows:?}");

    producer.send_avro_to("customers", 0, "acct-00000099", &schema, customer(99, 1).0);
    producer.flush();
    wait_until("the new record", Duration::from_secs(20), || {
        http_get(&server, "/api/customers/acct-00000099").0 == 200
    });
    wait_until("partition 0 applied", Duration::from_secs(5), || row(&offsets(&server), 0)["applied"] == 1);

    let count = |metrics: &str| metric(metrics, "push_cache_staleness_seconds_count{topic=\"customers\"}");
    wait_until("six records observed", Duration::from_secs(5), || count(&http_get(&server, "/metrics").1) == Some(6.0));
    let metrics = http_get(&server, "/metrics").1;
    let under_a_minute = metric(&metrics, "push_cache_staleness_seconds_bucket{topic=\"customers\",le=\"60\"}");
    assert_eq!(under_a_minute, Some(6.0), "records produced just now are fresh:\n{metrics}");
    for p in 0..2 {
        let age =
            metric(&metrics, &format!("push_cache_newest_record_age_seconds{{topic=\"customers\",partition=\"{p}\"}}"));
        let age = age.unwrap_or_else(|| panic!("age of partition {p}:\n{metrics}"));
        assert!((0.0..60.0).contains(&age), "age {age}");
    }
    let log = server.log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
    assert!(warnings.is_empty(), "a clean catch-up logs no warning at the default level:\n{}", warnings.join("\n"));
}
