//! Fast in-process tests of the consumer against librdkafka's mock cluster:
//! assignment of every partition, decoding with the registry, dispatch to
//! shard channels in order, skips, catch-up readiness, and a broker outage.

mod common;

use common::kafka::{customer, encode_datum, register, CUSTOMER_V1};
use push_cache::config::Config;
use push_cache::kafka::consumer;
use push_cache::kafka::decode::encode_frame;
use push_cache::kafka::stats::IngestStats;
use push_cache::placement::ShardQueues;
use push_cache::readiness::Readiness;
use push_cache::registry::server as registry;
use push_cache::runtime::shard::Shard;
use push_cache::runtime::IngestBatch;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(brokers: &str, registry: &str) -> Config {
    Config::from_yaml(&format!(
        "kafka: {{brokers: '{brokers}', group_id: g, topic: customers, schema_registry_url: '{registry}'}}
cache:
  stores: [{{name: customers, type: in_memory, schemas: [customer]}}, {{name: other, type: in_memory, schemas: [bill]}}]
  routes: [{{path: /customers, store: customers}}]
runtime: {{shards: 2}}
"
    ))
    .unwrap()
}

/// Applies what arrives on the shard channels to two plain shards.
fn apply(rx: &[flume::Receiver<IngestBatch>], shards: &[Shard]) {
    for (r, shard) in rx.iter().zip(shards) {
        for batch in r.try_iter() {
            for (store, change) in batch {
                shard.apply(store, change);
            }
        }
    }
}

fn get(shards: &[Shard], key: &str) -> Option<String> {
    let owner = push_cache::runtime::shard::owner_of(key.as_bytes(), shards.len());
    shards[owner].get(0, key.as_bytes()).map(|e| String::from_utf8(e.body().to_vec()).unwrap())
}

#[test]
fn mock_cluster_replay_skip_and_catch_up() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("customers", 4, 1).unwrap();
    let reg = registry::spawn("127.0.0.1:0", None, None).unwrap();
    let reg_url = format!("http://{}", reg.addr);
    let schema = register(&reg_url, "customers-value", CUSTOMER_V1);
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", cluster.bootstrap_servers()).create().unwrap();
    let mut expected = Vec::new();
    for i in 0..200u64 {
        let (v, json) = customer(i, 1);
        let payload = encode_frame(schema.id, &encode_datum(&schema, v));
        let key = format!("acct-{i:08}");
        producer.send(BaseRecord::to("customers").key(&key).payload(&payload)).unwrap();
        expected.push((key, json));
    }
    producer.send(BaseRecord::<[u8], [u8]>::to("customers").key(b"acct-00000005")).unwrap();
    producer.send(BaseRecord::to("customers").key("poison").payload(&b"\x01\x00\x00\x00\x01"[..])).unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();

    let (senders, receivers): (Vec<_>, Vec<_>) = (0..2).map(|_| flume::bounded::<IngestBatch>(1024)).unzip();
    let readiness = Arc::new(Readiness::default());
    let stats = Arc::new(IngestStats::default());
    let handle = consumer::start(
        &config(&cluster.bootstrap_servers(), &reg_url),
        ShardQueues::Partitioned(senders),
        readiness.clone(),
        stats.clone(),
    )
    .unwrap();
    assert!(!readiness.is_ready());
    let shards: Vec<Shard> = (0..2).map(|i| Shard::new(i, 2, &[true, true])).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !readiness.is_ready() {
        assert!(Instant::now() < deadline, "no catch-up: {:?}", readiness.waiting());
        apply(&receivers, &shards);
        std::thread::sleep(Duration::from_millis(20));
    }
    apply(&receivers, &shards);
    for (key, json) in &expected {
        if key == "acct-00000005" {
            assert_eq!(get(&shards, key), None, "tombstoned");
        } else {
            assert_eq!(get(&shards, key).as_deref(), Some(json.as_str()), "{key}");
        }
    }
    assert!(shards.iter().all(|s| s.get(1, b"acct-00000001").is_none()), "bills store untouched");
    let totals = stats.totals();
    assert_eq!(totals.applied.get("customer"), Some(&200));
    assert_eq!(totals.tombstones, 1);
    assert_eq!(totals.skipped.get("bad_magic"), Some(&1));
    handle.stop();
}

#[test]
fn broker_down_during_catch_up_is_waited_out() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("customers", 1, 1).unwrap();
    let reg = registry::spawn("127.0.0.1:0", None, None).unwrap();
    let reg_url = format!("http://{}", reg.addr);
    let schema = register(&reg_url, "customers-value", CUSTOMER_V1);
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", cluster.bootstrap_servers()).create().unwrap();
    for i in 0..50u64 {
        let payload = encode_frame(schema.id, &encode_datum(&schema, customer(i, 1).0));
        producer.send(BaseRecord::to("customers").key(&format!("acct-{i:08}")).payload(&payload)).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    cluster.broker_down(1).unwrap();

    let (tx, rx) = flume::bounded::<IngestBatch>(1024);
    let readiness = Arc::new(Readiness::default());
    let handle = consumer::start(
        &config(&cluster.bootstrap_servers(), &reg_url),
        ShardQueues::Partitioned(vec![tx.clone(), tx]),
        readiness.clone(),
        Arc::default(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(!readiness.is_ready());
    assert!(readiness.waiting().contains_key("kafka"));
    cluster.broker_up(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut changes = 0;
    while !readiness.is_ready() || changes < 50 {
        assert!(Instant::now() < deadline, "no catch-up after the broker came back: {:?}", readiness.waiting());
        changes += rx.try_iter().map(|b: IngestBatch| b.len()).sum::<usize>();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(changes, 50, "every record once");
    handle.stop();
}
