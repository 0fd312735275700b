//! A small Confluent-API-compatible Schema Registry for local stacks and
//! tests: subjects, versions, global schema IDs (the same schema always gets
//! the same ID), Confluent's error codes and bodies, optional basic auth, and
//! an optional JSON file that keeps its state across restarts.
//!
//! Plain threads and blocking sockets: it answers a handful of requests at
//! start-up, so simplicity beats speed here.

use crate::http::request::{decode_chunked, parse_head, percent_decode, split_target, BodyFraming, Chunked, Method};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
const MAX_BODY: usize = 8 << 20;
const POLL: Duration = Duration::from_millis(200);

/// What the registry holds: schemas by ID (ID = index + 1) and subjects'
/// versions (version = index + 1) as schema IDs.
#[derive(Default, Serialize, Deserialize)]
struct State {
    schemas: Vec<String>,
    #[serde(default)]
    canonical: Vec<String>,
    subjects: BTreeMap<String, Vec<u32>>,
}

struct Registry {
    state: Mutex<State>,
    data: Option<PathBuf>,
    auth: Option<String>,
    stop: AtomicBool,
}

/// A registry running on background threads; stops when dropped.
pub struct RegistryHandle {
    pub addr: SocketAddr,
    registry: Arc<Registry>,
    thread: Option<JoinHandle<()>>,
}

impl RegistryHandle {
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.registry.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RegistryHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts a registry on `listen` (port 0: any free port).
pub fn spawn(listen: &str, data: Option<PathBuf>, basic_auth: Option<(String, String)>) -> io::Result<RegistryHandle> {
    let state = match &data {
        Some(path) if path.exists() => serde_json::from_slice(&std::fs::read(path)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))?,
        _ => State::default(),
    };
    let auth = basic_auth.map(|(u, p)| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))));
    let registry = Arc::new(Registry { state: Mutex::new(state), data, auth, stop: AtomicBool::new(false) });
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    let r = registry.clone();
    let thread = std::thread::Builder::new().name("schema-registry".into()).spawn(move || accept_loop(listener, r))?;
    Ok(RegistryHandle { addr, registry, thread: Some(thread) })
}

/// Runs a registry in the foreground until the process is stopped.
pub fn run(listen: &str, data: Option<PathBuf>) -> io::Result<()> {
    let handle = spawn(listen, data, None)?;
    eprintln!("schema registry listening on http://{}", handle.addr);
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])?;
    signals.forever().next();
    handle.stop();
    Ok(())
}

fn accept_loop(listener: TcpListener, registry: Arc<Registry>) {
    for stream in listener.incoming() {
        if registry.stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let r = registry.clone();
        let _ = std::thread::Builder::new().name("schema-registry-conn".into()).spawn(move || serve(stream, &r));
    }
}

/// One connection: requests in turn until the client closes or we stop.
fn serve(mut stream: TcpStream, registry: &Registry) {
    let _ = stream.set_read_timeout(Some(POLL));
    let mut buf: Vec<u8> = Vec::new();
    let mut body = Vec::new();
    loop {
        let head = match read_head(&mut stream, &mut buf, registry) {
            Some(Ok(h)) => h,
            Some(Err(())) => return reply(&mut stream, 400, &error_body(400, "malformed request"), true),
            None => return,
        };
        let consumed = match read_body(&mut stream, &mut buf, &head, &mut body, registry) {
            Some(n) => n,
            None => return reply(&mut stream, 400, &error_body(400, "malformed or incomplete body"), true),
        };
        let request = Request { head: &head, raw: &buf, body: &body };
        let (status, response) = registry.answer(&request);
        let close = !head.keep_alive;
        reply(&mut stream, status, &response, close);
        if close {
            return;
        }
        buf.drain(..consumed);
    }
}

/// `None`: the client went away or the registry stops.
fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>, registry: &Registry) -> Option<Result<crate::http::request::RequestHead, ()>> {
    loop {
        match parse_head(buf, 64 * 1024, MAX_BODY) {
            Ok(Some(h)) => return Some(Ok(h)),
            Ok(None) => {}
            Err(_) => return Some(Err(())),
        }
        if !read_more(stream, buf, registry)? {
            return None;
        }
    }
}

/// Bytes of head + body in `buf` once the body is complete.
fn read_body(stream: &mut TcpStream, buf: &mut Vec<u8>, head: &crate::http::request::RequestHead, body: &mut Vec<u8>, registry: &Registry) -> Option<usize> {
    loop {
        let rest = &buf[head.len..];
        match head.framing {
            BodyFraming::None => {
                body.clear();
                return Some(head.len);
            }
            BodyFraming::Length(n) if rest.len() >= n => {
                body.clear();
                body.extend_from_slice(&rest[..n]);
                return Some(head.len + n);
            }
            BodyFraming::Chunked => match decode_chunked(rest, body, MAX_BODY) {
                Ok(Chunked::Done { consumed }) => return Some(head.len + consumed),
                Ok(Chunked::Partial) => {}
                Err(_) => return None,
            },
            BodyFraming::Length(_) => {}
        }
        if !read_more(stream, buf, registry)? {
            return None;
        }
    }
}

/// Reads more bytes; `Some(false)` at EOF, `None` when stopping.
fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>, registry: &Registry) -> Option<bool> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if registry.stop.load(Ordering::Relaxed) {
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Some(false),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Some(true);
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(_) => return Some(false),
        }
    }
}

fn reply(stream: &mut TcpStream, status: u16, body: &[u8], close: bool) {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n{}\r\n",
        crate::http::response::reason(status),
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
}

fn error_body(code: i64, message: &str) -> Vec<u8> {
    json!({ "error_code": code, "message": message }).to_string().into_bytes()
}

struct Request<'a> {
    head: &'a crate::http::request::RequestHead,
    raw: &'a [u8],
    body: &'a [u8],
}

type Answer = (u16, Vec<u8>);

fn ok(v: Value) -> Answer {
    (200, v.to_string().into_bytes())
}

fn err(status: u16, code: i64, message: impl AsRef<str>) -> Answer {
    (status, error_body(code, message.as_ref()))
}

impl Registry {
    fn answer(&self, req: &Request) -> Answer {
        if let Some(expected) = &self.auth {
            let given = req.head.authorization.clone().map(|r| &req.raw[r]);
            if given != Some(expected.as_bytes()) {
                return err(401, 401, "Unauthorized");
            }
        }
        let (path, _query) = split_target(&req.raw[req.head.target.clone()]);
        let Some(segments) = path.split(|b| *b == b'/').filter(|s| !s.is_empty()).map(|s| percent_decode(s, false)).collect::<Option<Vec<String>>>() else {
            return err(400, 400, "bad percent-encoding in path");
        };
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        self.route(req.head.method, &segs, req.body)
    }

    fn route(&self, method: Method, segs: &[&str], body: &[u8]) -> Answer {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match (method, segs) {
            (Method::Get, []) => ok(json!({})),
            (Method::Get, ["schemas", "types"]) => ok(json!(["AVRO"])),
            (Method::Get, ["schemas", "ids", id]) => with_id(&state, id, |s| ok(json!({ "schema": s }))),
            (Method::Get, ["schemas", "ids", id, "versions"]) => with_id(&state, id, |_| ok(json!(usages(&state, id.parse().unwrap_or(0))))),
            (Method::Get, ["subjects"]) => ok(json!(state.subjects.keys().collect::<Vec<_>>())),
            (Method::Get, ["subjects", s, "versions"]) => with_subject(&state, s, |v| ok(json!((1..=v.len()).collect::<Vec<_>>()))),
            (Method::Get, ["subjects", s, "versions", v]) => with_version(&state, s, v, |version, id, schema| ok(version_json(s, version, id, schema))),
            (Method::Get, ["subjects", s, "versions", v, "schema"]) => with_version(&state, s, v, |_, _, schema| (200, schema.as_bytes().to_vec())),
            (Method::Post, ["subjects", s, "versions"]) => self.register(&mut state, s, body),
            (Method::Post, ["subjects", s]) => lookup(&state, s, body),
            (Method::Delete, ["subjects", s]) => self.delete_subject(&mut state, s),
            (Method::Get, ["config"]) | (Method::Get, ["config", _]) => ok(json!({ "compatibilityLevel": "BACKWARD" })),
            (Method::Put, ["config"]) | (Method::Put, ["config", _]) => {
                let level = serde_json::from_slice::<Value>(body).ok().and_then(|v| v.get("compatibility").cloned()).unwrap_or(json!("BACKWARD"));
                ok(json!({ "compatibility": level }))
            }
            _ => err(404, 404, "HTTP 404 Not Found"),
        }
    }

    fn register(&self, state: &mut State, subject: &str, body: &[u8]) -> Answer {
        let (text, canonical) = match parse_schema_request(body) {
            Ok(s) => s,
            Err(answer) => return answer,
        };
        let id = match state.canonical.iter().position(|c| *c == canonical) {
            Some(i) => i as u32 + 1,
            None => {
                state.schemas.push(text);
                state.canonical.push(canonical);
                state.schemas.len() as u32
            }
        };
        let versions = state.subjects.entry(subject.to_string()).or_default();
        if !versions.contains(&id) {
            versions.push(id);
            self.save(state);
        }
        ok(json!({ "id": id }))
    }

    fn delete_subject(&self, state: &mut State, subject: &str) -> Answer {
        match state.subjects.remove(subject) {
            Some(v) => {
                self.save(state);
                ok(json!((1..=v.len()).collect::<Vec<_>>()))
            }
            None => err(404, 40401, format!("Subject '{subject}' not found.")),
        }
    }

    fn save(&self, state: &State) {
        let Some(path) = &self.data else { return };
        let tmp = path.with_extension("tmp");
        let written = serde_json::to_vec_pretty(state).map_err(io::Error::other).and_then(|bytes| std::fs::write(&tmp, bytes)).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::error!(path = %path.display(), error = %e, "cannot save the registry state");
        }
    }
}

/// The schema text of a register/lookup body, and its canonical form.
fn parse_schema_request(body: &[u8]) -> Result<(String, String), Answer> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        schema: String,
        schema_type: Option<String>,
    }
    let b: Body = serde_json::from_slice(body).map_err(|e| err(422, 42201, format!("Invalid schema: {e}")))?;
    if b.schema_type.as_deref().is_some_and(|t| t != "AVRO") {
        return Err(err(422, 42201, "Invalid schema: only AVRO schemas are supported by this registry"));
    }
    let parsed = apache_avro::Schema::parse_str(&b.schema).map_err(|e| err(422, 42201, format!("Invalid schema: {e}")))?;
    Ok((b.schema, parsed.canonical_form()))
}

fn lookup(state: &State, subject: &str, body: &[u8]) -> Answer {
    let (_, canonical) = match parse_schema_request(body) {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let Some(versions) = state.subjects.get(subject) else { return err(404, 40401, format!("Subject '{subject}' not found.")) };
    let found = versions.iter().enumerate().find(|(_, id)| state.canonical.get(**id as usize - 1) == Some(&canonical));
    match found {
        Some((i, id)) => ok(version_json(subject, i + 1, *id, &state.schemas[*id as usize - 1])),
        None => err(404, 40403, "Schema not found"),
    }
}

fn version_json(subject: &str, version: usize, id: u32, schema: &str) -> Value {
    json!({ "subject": subject, "version": version, "id": id, "schema": schema })
}

fn usages(state: &State, id: u32) -> Vec<Value> {
    let mut out = Vec::new();
    for (subject, versions) in &state.subjects {
        for (i, v) in versions.iter().enumerate() {
            if *v == id {
                out.push(json!({ "subject": subject, "version": i + 1 }));
            }
        }
    }
    out
}

fn with_id(state: &State, id: &str, f: impl FnOnce(&str) -> Answer) -> Answer {
    match id.parse::<usize>().ok().filter(|i| *i >= 1).and_then(|i| state.schemas.get(i - 1)) {
        Some(s) => f(s),
        None => err(404, 40403, format!("Schema {id} not found")),
    }
}

fn with_subject(state: &State, subject: &str, f: impl FnOnce(&[u32]) -> Answer) -> Answer {
    match state.subjects.get(subject) {
        Some(v) => f(v),
        None => err(404, 40401, format!("Subject '{subject}' not found.")),
    }
}

fn with_version(state: &State, subject: &str, version: &str, f: impl FnOnce(usize, u32, &str) -> Answer) -> Answer {
    with_subject(state, subject, |versions| {
        let n = match version {
            "latest" | "-1" => versions.len(),
            v => v.parse().unwrap_or(0),
        };
        match n.checked_sub(1).and_then(|i| versions.get(i)) {
            Some(id) => f(n, *id, &state.schemas[*id as usize - 1]),
            None => err(404, 40402, format!("Version {version} not found.")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{"type":"record","name":"T","fields":[{"name":"a","type":"string"}]}"#;
    const SCHEMA2: &str = r#"{"type":"record","name":"T","fields":[{"name":"a","type":"string"},{"name":"b","type":["null","long"],"default":null}]}"#;

    fn call(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let client = reqwest::blocking::Client::new();
        let url = format!("http://{addr}{path}");
        let mut req = client.request(method.parse().unwrap(), url).header("Content-Type", CONTENT_TYPE);
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        assert_eq!(resp.headers()["content-type"], CONTENT_TYPE);
        let text = resp.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    #[test]
    fn subjects_versions_and_ids() {
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        let a = reg.addr;
        assert_eq!(call(a, "POST", "/subjects/t-value/versions", Some(json!({ "schema": SCHEMA }))), (200, json!({"id": 1})));
        assert_eq!(call(a, "POST", "/subjects/t-value/versions", Some(json!({ "schema": SCHEMA }))), (200, json!({"id": 1})));
        assert_eq!(call(a, "POST", "/subjects/t-value/versions", Some(json!({ "schema": SCHEMA2, "schemaType": "AVRO" }))), (200, json!({"id": 2})));
        assert_eq!(call(a, "POST", "/subjects/u-value/versions", Some(json!({ "schema": SCHEMA }))), (200, json!({"id": 1})));
        assert_eq!(call(a, "GET", "/subjects", None), (200, json!(["t-value", "u-value"])));
        assert_eq!(call(a, "GET", "/subjects/t-value/versions", None), (200, json!([1, 2])));
        let (s, latest) = call(a, "GET", "/subjects/t-value/versions/latest", None);
        assert_eq!((s, &latest["version"], &latest["id"], &latest["subject"]), (200, &json!(2), &json!(2), &json!("t-value")));
        assert_eq!(call(a, "GET", "/schemas/ids/1", None), (200, json!({ "schema": SCHEMA })));
        assert_eq!(call(a, "GET", "/subjects/t-value/versions/1/schema", None).1, serde_json::from_str::<Value>(SCHEMA).unwrap());
        assert_eq!(call(a, "GET", "/schemas/ids/1/versions", None).1, json!([{"subject":"t-value","version":1},{"subject":"u-value","version":1}]));
        let (s, found) = call(a, "POST", "/subjects/t-value", Some(json!({ "schema": SCHEMA2 })));
        assert_eq!((s, &found["version"]), (200, &json!(2)));
        assert_eq!(call(a, "GET", "/schemas/ids/9", None), (404, json!({"error_code": 40403, "message": "Schema 9 not found"})));
        assert_eq!(call(a, "GET", "/subjects/nope/versions", None).1["error_code"], 40401);
        assert_eq!(call(a, "GET", "/subjects/t-value/versions/7", None).1["error_code"], 40402);
        assert_eq!(call(a, "POST", "/subjects/x/versions", Some(json!({ "schema": "{bad" }))).1["error_code"], 42201);
        assert_eq!(call(a, "POST", "/subjects/x/versions", Some(json!({ "schema": "{}", "schemaType": "PROTOBUF" }))).0, 422);
        assert_eq!(call(a, "GET", "/config", None), (200, json!({"compatibilityLevel": "BACKWARD"})));
        assert_eq!(call(a, "GET", "/nowhere", None).0, 404);
        assert_eq!(call(a, "DELETE", "/subjects/u-value", None), (200, json!([1])));
        assert_eq!(call(a, "GET", "/subjects", None), (200, json!(["t-value"])));
    }

    #[test]
    fn state_survives_a_restart_with_a_data_file() {
        let path = std::env::temp_dir().join(format!("registry-{}-{}.json", std::process::id(), line!()));
        let _ = std::fs::remove_file(&path);
        let reg = spawn("127.0.0.1:0", Some(path.clone()), None).unwrap();
        call(reg.addr, "POST", "/subjects/t-value/versions", Some(json!({ "schema": SCHEMA })));
        call(reg.addr, "POST", "/subjects/t-value/versions", Some(json!({ "schema": SCHEMA2 })));
        reg.stop();
        let reg = spawn("127.0.0.1:0", Some(path.clone()), None).unwrap();
        assert_eq!(call(reg.addr, "GET", "/schemas/ids/2", None), (200, json!({ "schema": SCHEMA2 })));
        assert_eq!(call(reg.addr, "POST", "/subjects/v-value/versions", Some(json!({ "schema": SCHEMA2 }))).1, json!({"id": 2}));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn malformed_requests_get_400() {
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        let mut s = TcpStream::connect(reg.addr).unwrap();
        s.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    }

    #[test]
    fn confluent_python_client_works_unchanged() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/registry_compat.py");
        let probe = std::process::Command::new("python3").args(["-c", "import confluent_kafka.schema_registry"]).output();
        if !probe.map(|o| o.status.success()).unwrap_or(false) {
            eprintln!("skipped: python3 with confluent_kafka is not installed (pip install confluent-kafka)");
            return;
        }
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        let out = std::process::Command::new("python3").arg(script).arg(format!("http://{}", reg.addr)).output().unwrap();
        assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
}
