//! Test harness: runs the real `push-cache` binary on a free port and talks
//! to it over real sockets.
#![allow(dead_code)]

pub mod kafka;
pub mod proxy;
pub mod redis;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("push-cache-test-{name}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `push-cache` process, stopped with SIGTERM on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

/// The YAML of a test server; `extra` is appended (and may override sections).
pub fn config_yaml(port: u16, webservice_extra: &str, rest: &str) -> String {
    format!(
        "webservice:
  address: 127.0.0.1:{port}
{webservice_extra}
{rest}"
    )
}

/// The YAML of a test server fed by Kafka: `topics` is a YAML value
/// (`customers` or `[customers, bills]`), `stores` and `routes` are YAML
/// flow mappings, one per list item. Two shards.
pub fn kafka_config(
    port: u16,
    brokers: &str,
    registry_url: &str,
    topics: &str,
    stores: &[&str],
    routes: &[&str],
) -> String {
    let items = |list: &[&str]| list.iter().map(|item| format!("    - {item}\n")).collect::<String>();
    let rest = format!(
        "kafka:
  brokers: '{brokers}'
  group_id: push-cache-test
  topic: {topics}
  schema_registry_url: '{registry_url}'
  properties: {{fetch.wait.max.ms: '10'}}
cache:
  stores:
{}  routes:
{}runtime: {{shards: 2}}
",
        items(stores),
        items(routes)
    );
    config_yaml(port, "", &rest)
}

/// `kafka_config` with one in-memory store `customers` of `customer`
/// records on topic `customers`, served at `/customers`.
pub fn customers_config(port: u16, brokers: &str, registry_url: &str) -> String {
    let stores = ["{name: customers, type: in_memory, schemas: [customer]}"];
    kafka_config(port, brokers, registry_url, "customers", &stores, &["{path: /customers, store: customers}"])
}

pub const KAFKA_NOWHERE: &str =
    "kafka: {brokers: '127.0.0.1:1', group_id: test, topic: t, schema_registry_url: 'http://127.0.0.1:1'}\n";

pub const DEFAULT_CACHE: &str = "cache:
  stores: [{name: main, type: in_memory}, {name: tickets, type: in_memory}]
  routes: [{path: /customers, store: main}, {path: /tickets, store: tickets, key_field: ticketId}]
runtime: {shards: 2}
";

impl Server {
    /// Starts a server with the default test config plus `webservice_extra`
    /// lines (indented two spaces) under `webservice:`.
    pub fn start(webservice_extra: &str) -> Server {
        let port = free_port();
        let yaml = config_yaml(port, webservice_extra, &format!("{KAFKA_NOWHERE}{DEFAULT_CACHE}"));
        Server::start_yaml(&yaml, port, &[])
    }

    pub fn start_yaml(yaml: &str, port: u16, env: &[(&str, &str)]) -> Server {
        let dir = temp_dir("srv");
        let config = dir.join("config.yaml");
        std::fs::write(&config, yaml).unwrap();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_push-cache"));
        cmd.arg("--config").arg(&config).arg("--secrets").arg(dir.join("secrets"));
        cmd.stdout(Stdio::null()).stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start push-cache");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut server = Server { child, addr, dir };
        server.wait_listening();
        server
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("push-cache exited early with {status}: {}", self.log());
            }
            if TcpStream::connect(self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("push-cache did not listen: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// How the process ended, without reaping it (waitid with WNOWAIT).
    fn exit_status(&self) -> String {
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        let rc = unsafe { libc::waitid(libc::P_PID, self.child.id(), &mut info, flags) };
        let pid = unsafe { info.si_pid() };
        if rc != 0 || pid == 0 {
            return "the process is still running".into();
        }
        match info.si_code {
            libc::CLD_EXITED => format!("the process exited with code {}", unsafe { info.si_status() }),
            _ => format!("the process was killed by signal {}", unsafe { info.si_status() }),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap_or_else(|e| {
            panic!("cannot connect to push-cache at {}: {e}; {}; log:\n{}", self.addr, self.exit_status(), self.log())
        });
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code and how long it took.
    pub fn terminate(&mut self) -> (Option<i32>, Duration) {
        let start = Instant::now();
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        (status.code(), start.elapsed())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(6);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    let _ = std::fs::remove_dir_all(&self.dir);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A response read off a raw socket.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Reads one response from `stream`, keeping extra bytes in `pending`.
/// `head_only` for responses to HEAD (no body whatever Content-Length says).
pub fn read_response(stream: &mut TcpStream, pending: &mut Vec<u8>, head_only: bool) -> Response {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(n) = resp.parse(pending).expect("valid response") {
            let status = resp.code.unwrap();
            let headers: Vec<(String, String)> = resp
                .headers
                .iter()
                .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let len = if head_only || status == 304 || status == 100 { 0 } else { len };
            let chunked = headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked"));
            if chunked && !head_only {
                pending.drain(..n);
                let body = read_chunked(stream, pending);
                return Response { status, headers, body };
            }
            while pending.len() < n + len {
                read_some(stream, pending);
            }
            let body = pending[n..n + len].to_vec();
            pending.drain(..n + len);
            return Response { status, headers, body };
        }
        read_some(stream, pending);
    }
}

/// Reads a chunked body (RFC 9112 section 7.1) from the front of `pending`.
fn read_chunked(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = pending.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            read_some(stream, pending);
        };
        let line = String::from_utf8_lossy(&pending[..line_end]).into_owned();
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).expect("chunk size");
        while pending.len() < line_end + 2 + size + 2 {
            read_some(stream, pending);
        }
        body.extend_from_slice(&pending[line_end + 2..line_end + 2 + size]);
        pending.drain(..line_end + 2 + size + 2);
        if size == 0 {
            return body;
        }
    }
}

fn read_some(stream: &mut TcpStream, pending: &mut Vec<u8>) {
    let mut buf = [0u8; 65536];
    let n = stream.read(&mut buf).expect("read from server");
    assert!(n > 0, "server closed the connection; had {:?}", String::from_utf8_lossy(pending));
    pending.extend_from_slice(&buf[..n]);
}

/// GET `path` on a new connection: (status, body).
pub fn http_get(server: &Server, path: &str) -> (u16, String) {
    let r = exchange(server, &get(path));
    (r.status, r.text())
}

/// Polls `check` every 25 ms until it holds; panics after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Sends raw bytes and reads one response.
pub fn exchange(server: &Server, request: &[u8]) -> Response {
    let mut s = server.connect();
    s.write_all(request).unwrap();
    read_response(&mut s, &mut Vec::new(), request.starts_with(b"HEAD"))
}

/// True when the server closed the connection (EOF) within the timeout.
pub fn closed(stream: &mut TcpStream, pending: &[u8]) -> bool {
    let _ = pending;
    let mut buf = [0u8; 1024];
    matches!(stream.read(&mut buf), Ok(0) | Err(_))
}

pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

pub fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub fn customer_body(i: usize) -> String {
    format!(
        r#"{{"accountId":"acct-{i:08}","name":"Customer Name {i}","address":"{i} Long Street","phone":"+44 20 7946 0000","createdAt":1700000000000,"updatedAt":{}}}"#,
        1_700_000_500_000u64 + i as u64
    )
}
