//! A real `redis-server` for tests: a free port, an ACL user with a
//! password (the default user is off), and an append-only file fsynced on
//! every write, so a killed and restarted server keeps what it acknowledged.
#![allow(dead_code)]

use super::{config_yaml, free_port, http_get, kafka::wait_port, temp_dir, wait_until, Server, KAFKA_NOWHERE};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

pub const USER: &str = "pushcache";
pub const PASSWORD: &str = "s3cret-pw";

impl Redis {
    pub fn start() -> Redis {
        let port = free_port();
        let dir = temp_dir("redis");
        std::fs::write(dir.join("users.acl"), format!("user default off\nuser {USER} on >{PASSWORD} ~* &* +@all\n"))
            .unwrap();
        let child = spawn(port, &dir);
        Redis { port, dir, child }
    }

    /// `redis://user:password@127.0.0.1:port/db`.
    pub fn url(&self, db: u8) -> String {
        format!("redis://{USER}:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// SIGKILL: no chance to save anything but what is already in the AOF.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill and restart without its data: as a Redis without persistence restarts.
    pub fn restart_empty(&mut self) {
        self.kill();
        std::fs::remove_dir_all(self.dir.join("appendonlydir")).unwrap();
        self.restart();
    }

    pub fn restart(&mut self) {
        self.child = spawn(self.port, &self.dir);
    }

    pub fn client(&self, db: u8) -> redis::Connection {
        redis::Client::open(self.url(db)).unwrap().get_connection().unwrap()
    }

    /// A server (2 shards, no Kafka) whose route `/customers` serves store
    /// `r` in database `db` of this Redis, keys `cust:{key}`; returned once
    /// the route answers (readiness never comes without a broker).
    pub fn server(&self, db: u8) -> Server {
        let port = free_port();
        let rest = format!(
            "{KAFKA_NOWHERE}cache:
  stores: [{{name: r, type: redis, url: '{}', prefix: cust, timeout_ms: 2000}}]
  routes: [{{path: /customers, store: r}}]
runtime: {{shards: 2}}
",
            self.url(db)
        );
        let server = Server::start_yaml(&config_yaml(port, "", &rest), port, &[]);
        wait_until("redis to answer", Duration::from_secs(20), || http_get(&server, "/api/customers/none").0 == 404);
        server
    }
}

fn spawn(port: u16, dir: &std::path::Path) -> Child {
    let mut command = Command::new("redis-server");
    command
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .arg("--dir")
        .arg(dir)
        .arg("--aclfile")
        .arg(dir.join("users.acl"));
    run(command, port)
}

/// Starts `command` (a redis-server) quietly and waits for its port.
fn run(mut command: Command, port: u16) -> Child {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server, or run scripts/install-deps.sh)");
    wait_port(port);
    child
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of real `redis-server` processes on loopback: `masters`
/// masters with `replicas` replicas each, slots spread by `redis-cli --cluster
/// create`. No ACL (the cluster bus and redis-cli would need the password too).
pub struct Cluster {
    pub ports: Vec<u16>,
    dir: PathBuf,
    children: Vec<Child>,
    killed: Vec<u16>,
}

impl Cluster {
    pub fn start(masters: usize, replicas: usize) -> Cluster {
        let dir = temp_dir("redis-cluster");
        let ports: Vec<u16> = (0..masters * (1 + replicas)).map(|_| cluster_port()).collect();
        let children = ports.iter().map(|p| spawn_cluster_node(*p, &dir.join(p.to_string()))).collect();
        let cluster = Cluster { ports, dir, children, killed: Vec::new() };
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for p in &cluster.ports {
            create.arg(format!("127.0.0.1:{p}"));
        }
        let out =
            create.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]).output().expect("redis-cli");
        assert!(out.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&out.stdout));
        cluster.wait_ok();
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect()
    }

    /// A plain connection to one node (not cluster-aware).
    pub fn node(&self, port: u16) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap().get_connection().unwrap()
    }

    /// Every live node agrees the cluster is ok and sees every master and replica.
    pub fn wait_ok(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let ok = self.live_ports().iter().all(|p| {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut self.node(*p)).unwrap_or_default();
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{}", self.ports.len()))
                    && info.contains("cluster_slots_ok:16384")
            });
            if ok {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "the Redis Cluster did not become ok");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Ports of the nodes not killed.
    pub fn live_ports(&self) -> Vec<u16> {
        self.ports.iter().filter(|p| !self.killed.contains(p)).copied().collect()
    }

    /// (port, role) of every node, from its own `ROLE`.
    pub fn roles(&self) -> Vec<(u16, String)> {
        self.live_ports()
            .into_iter()
            .map(|p| {
                let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut self.node(p)).unwrap();
                let name = match &role[0] {
                    redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    other => format!("{other:?}"),
                };
                (p, name)
            })
            .collect()
    }

    /// A manual `CLUSTER FAILOVER` of `replica`, until it is a master.
    /// Redis aborts a manual failover that the master does not confirm within
    /// 5 s (for example while the replica is still syncing) and never retries
    /// it, so this waits for the replica's link to be up and its sync done,
    /// then asks again after each abort.
    pub fn failover(&self, replica: u16) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let is_master = || self.roles().contains(&(replica, "master".to_string()));
        while !is_master() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for the replica to become a master");
            let info: String = redis::cmd("INFO").arg("replication").query(&mut self.node(replica)).unwrap_or_default();
            let synced = info.contains("master_link_status:up") && info.contains("master_sync_in_progress:0");
            if !synced {
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
            let _: redis::RedisResult<()> = redis::cmd("CLUSTER").arg("FAILOVER").query(&mut self.node(replica));
            let asked = std::time::Instant::now();
            while !is_master() && asked.elapsed() < std::time::Duration::from_secs(7) {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }

    /// SIGKILL one node.
    pub fn kill(&mut self, port: u16) {
        let child = &mut self.children[self.ports.iter().position(|p| *p == port).unwrap()];
        let _ = child.kill();
        let _ = child.wait();
        self.killed.push(port);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free port P whose cluster bus port P + 10000 is free too.
fn cluster_port() -> u16 {
    loop {
        let p = free_port();
        let base = 20_000 + p % 20_000;
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free(base) && free(base + 10_000) {
            return base;
        }
    }
}

fn spawn_cluster_node(port: u16, dir: &std::path::Path) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"])
        .arg("--dir")
        .arg(dir);
    run(command, port)
}
