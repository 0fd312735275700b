//! A Redis store on a Redis Cluster (`cluster_nodes`), against real
//! `redis-server --cluster-enabled yes` nodes, a tansu broker and the binary:
//! keys spread over the masters and are served back; a manual failover and a
//! killed master are survived.

mod common;

use common::kafka::*;
use common::redis::Cluster;
use common::*;
use push_cache::registry::server as registry;
use std::time::Duration;

struct Stack {
    broker: Broker,
    _registry: registry::RegistryHandle,
    cluster: Cluster,
    customer: Schema,
    server: Server,
}

fn stack(masters: usize, replicas: usize, records: u64) -> Stack {
    let cluster = Cluster::start(masters, replicas);
    let broker = Broker::start();
    broker.create_topic("customers", 2);
    let reg = registry::spawn("127.0.0.1:0", None, None).unwrap();
    let reg_url = format!("http://{}", reg.addr);
    let customer = register(&reg_url, "customers-value", CUSTOMER_V1);
    let nodes = cluster.urls().iter().map(|u| format!("'{u}'")).collect::<Vec<_>>().join(", ");
    let store = format!("{{name: clustered, type: redis, cluster_nodes: [{nodes}], prefix: cc, timeout_ms: 1000}}");
    let stores = ["{name: customers, type: in_memory}", &store];
    let routes = ["{path: /customers, store: customers}", "{path: /cluster/customers, store: clustered}"];
    let s = Stack { server: start(&broker, &reg_url, &stores, &routes), broker, _registry: reg, cluster, customer };
    s.produce(0..records, 1);
    s
}

fn start(broker: &Broker, reg_url: &str, stores: &[&str], routes: &[&str]) -> Server {
    let port = free_port();
    Server::start_yaml(&kafka_config(port, &broker.bootstrap(), reg_url, "customers", stores, routes), port, &[])
}

impl Stack {
    fn produce(&self, keys: std::ops::Range<u64>, version: u64) {
        let p = self.broker.producer();
        for i in keys {
            p.send_avro("customers", &format!("acct-{i:08}"), &self.customer, customer(i, version).0);
        }
        p.flush();
    }

    /// Every key reads back through the cluster route at `version`.
    fn wait_served(&self, keys: std::ops::Range<u64>, version: u64, limit: Duration) {
        for i in keys {
            let want = (200, customer(i, version).1);
            wait_until(&format!("acct-{i:08} v{version} through the cluster route"), limit, || {
                http_get(&self.server, &format!("/api/cluster/customers/acct-{i:08}")) == want
            });
        }
    }

    fn keys_per_master(&self) -> Vec<(u16, usize)> {
        self.cluster
            .roles()
            .into_iter()
            .filter(|(_, role)| role == "master")
            .map(|(p, _)| (p, ::redis::cmd("DBSIZE").query(&mut self.cluster.node(p)).unwrap()))
            .collect()
    }
}

#[test]
fn a_cluster_store_spreads_keys_over_its_masters_and_serves_them() {
    let s = stack(3, 0, 300);
    wait_until("readiness", Duration::from_secs(60), || http_get(&s.server, "/health/ready").0 == 200);
    s.wait_served(0..300, 1, Duration::from_secs(10));
    let per_master = s.keys_per_master();
    assert_eq!(per_master.len(), 3);
    assert!(per_master.iter().all(|(_, n)| *n > 30), "keys spread over every master: {per_master:?}");
    let total: usize = per_master.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 301, "300 keys and the feed's position hash: {per_master:?}");

    // Tombstones, writes and the listing go through the cluster too.
    let p = s.broker.producer();
    p.tombstone("customers", "acct-00000005");
    p.flush();
    wait_until("the tombstone", Duration::from_secs(20), || {
        http_get(&s.server, "/api/cluster/customers/acct-00000005").0 == 404
    });
    let body = r#"{"accountId":"posted-1","name":"x"}"#;
    assert_eq!(exchange(&s.server, &post("/api/cluster/customers", body)).status, 201);
    assert_eq!(http_get(&s.server, "/api/cluster/customers/posted-1"), (200, body.to_string()));
    let listed: Vec<String> =
        serde_json::from_str(&http_get(&s.server, "/api/cluster/customers?filter=acct-0000001").1).unwrap();
    assert_eq!(listed, (10..20).map(|i| format!("acct-{i:08}")).collect::<Vec<_>>(), "a SCAN of every master");
}

#[test]
fn a_cluster_store_survives_a_failover_and_a_killed_master() {
    let mut s = stack(3, 1, 300);
    wait_until("readiness", Duration::from_secs(60), || http_get(&s.server, "/health/ready").0 == 200);
    s.wait_served(0..300, 1, Duration::from_secs(10));

    // A manual failover: a replica takes over its master's slots.
    let replica = s.cluster.roles().into_iter().find(|(_, r)| r == "slave").unwrap().0;
    s.cluster.failover(replica);
    s.cluster.wait_ok();
    s.produce(0..300, 2);
    s.wait_served(0..300, 2, Duration::from_secs(60));

    // A master killed: its replica is promoted after the node timeout; the
    // feed retries meanwhile and then writes on.
    let master = s.keys_per_master().into_iter().find(|(_, n)| *n > 0).unwrap().0;
    std::thread::sleep(Duration::from_millis(500));
    s.cluster.kill(master);
    s.produce(0..300, 3);
    s.cluster.wait_ok();
    s.wait_served(0..300, 3, Duration::from_secs(90));
    wait_until("readiness after the failover", Duration::from_secs(30), || {
        http_get(&s.server, "/health/ready").0 == 200
    });
}
