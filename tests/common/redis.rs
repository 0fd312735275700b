//! A real `redis-server` for tests: a free port, an ACL user with a
//! password (the default user is off), and an append-only file fsynced on
//! every write, so a killed and restarted server keeps what it acknowledged.
#![allow(dead_code)]

use super::{free_port, kafka::wait_port, temp_dir};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

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
        std::fs::write(dir.join("users.acl"), format!("user default off\nuser {USER} on >{PASSWORD} ~* &* +@all\n")).unwrap();
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

    pub fn restart(&mut self) {
        self.child = spawn(self.port, &self.dir);
    }

    pub fn client(&self, db: u8) -> redis::Connection {
        redis::Client::open(self.url(db)).unwrap().get_connection().unwrap()
    }
}

fn spawn(port: u16, dir: &std::path::Path) -> Child {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always"])
        .arg("--dir")
        .arg(dir)
        .arg("--aclfile")
        .arg(dir.join("users.acl"))
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
