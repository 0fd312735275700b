//! The small Confluent-API-compatible Schema Registry that Push Cache ships
//! for local runs and tests (`push-cache schema-registry --listen ADDR
//! [--data FILE]`, SPEC section 6). Production uses a real registry.
//!
//! Why it looks like this:
//! - It answers Confluent's documented v1 REST API (subjects, versions,
//!   `GET /schemas/ids/{id}`, lookups, config) with Confluent's media type,
//!   error codes and error bodies, so Confluent's own clients and ours work
//!   against it unchanged. Only Avro is supported; there are no
//!   compatibility checks and no schema references.
//! - The same schema gets the same global ID under every subject. Schemas are
//!   compared by their parsed form (whitespace, key order and namespace
//!   spelling do not matter), keeping logical types, defaults and docs, which
//!   Avro's parsing canonical form would drop: two schemas that decode
//!   differently never share an ID.
//! - It serves a handful of requests at start-up, so it uses blocking std
//!   sockets and a thread per connection, `httparse` for request heads,
//!   HTTP/1.1 keep-alive and Content-Length bodies. Bad input gets a 4xx
//!   answer, never a panic.
//! - With `--data FILE` the state is loaded on start and written on every
//!   change (temporary file + rename), so a restart keeps every ID.
//! - Optional HTTP basic auth lets tests prove that clients send credentials.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// Request body types Confluent accepts (octet-stream: what ad hoc clients
/// send when they name none; it is read as JSON).
const REQUEST_TYPES: [&str; 4] = [
    CONTENT_TYPE,
    "application/vnd.schemaregistry+json",
    "application/json",
    "application/octet-stream",
];
const COMPATIBILITY_LEVELS: [&str; 7] = [
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
];
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;
const MAX_BODY: usize = 8 * 1024 * 1024;
/// How often a waiting connection looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// An idle keep-alive connection is closed after this long.
const IDLE: Duration = Duration::from_secs(60);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// A registry serving on background threads. Dropping it, or `stop()`,
/// stops the listener and frees the address; open connections end within
/// a fraction of a second.
pub struct RegistryHandle {
    pub addr: SocketAddr,
    registry: Arc<Registry>,
    acceptor: Option<JoinHandle<()>>,
}

impl RegistryHandle {
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.registry.stop.store(true, Ordering::SeqCst);
        // accept() blocks: wake it with a connection of our own.
        if TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_secs(1)).is_ok() {
            let _ = acceptor.join();
        }
        // Each connection notices the stop within one POLL.
        let deadline = Instant::now() + 10 * POLL;
        while self.registry.connections.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(POLL / 10);
        }
    }
}

impl Drop for RegistryHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Where to connect to reach a listener bound to `addr` (0.0.0.0 -> loopback).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// Binds `listen` (port 0: any free port) and serves on background threads.
/// `data`: the state file, loaded now and written on every change.
/// `basic_auth`: the (user, password) every request must carry.
pub fn spawn(
    listen: &str,
    data: Option<PathBuf>,
    basic_auth: Option<(String, String)>,
) -> io::Result<RegistryHandle> {
    let state = match &data {
        Some(path) => State::load(path)?,
        None => State::default(),
    };
    let listener = TcpListener::bind(listen).map_err(|e| {
        let hint = "pick another --listen address (port 0: any free port)";
        io::Error::new(
            e.kind(),
            format!("schema registry cannot listen on {listen}: {e}; {hint}"),
        )
    })?;
    let addr = listener.local_addr()?;
    let auth = basic_auth.map(|(user, password)| format!("{user}:{password}"));
    let registry = Arc::new(Registry {
        state: Mutex::new(state),
        data,
        auth,
        stop: AtomicBool::new(false),
        connections: AtomicUsize::new(0),
    });
    let shared = Arc::clone(&registry);
    let acceptor = std::thread::Builder::new()
        .name("schema-registry".into())
        .spawn(move || accept_loop(&listener, &shared))?;
    tracing::debug!(%addr, "schema registry started");
    Ok(RegistryHandle {
        addr,
        registry,
        acceptor: Some(acceptor),
    })
}

/// Serves in the foreground until the process ends (the CLI command).
pub fn run(listen: &str, data: Option<PathBuf>) -> io::Result<()> {
    let mut handle = spawn(listen, data, None)?;
    eprintln!("schema registry listening on http://{}", handle.addr);
    match handle.acceptor.take().map(JoinHandle::join) {
        Some(Err(_)) => Err(io::Error::other(
            "the schema registry's listener thread died; see the log above",
        )),
        _ => Ok(()),
    }
}

fn accept_loop(listener: &TcpListener, registry: &Arc<Registry>) {
    for stream in listener.incoming() {
        if registry.stop.load(Ordering::SeqCst) {
            return;
        }
        match stream {
            Ok(stream) => start_connection(stream, registry),
            Err(e) => {
                tracing::warn!(error = %e, "schema registry cannot accept a connection");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn start_connection(stream: TcpStream, registry: &Arc<Registry>) {
    let registry = Arc::clone(registry);
    registry.connections.fetch_add(1, Ordering::SeqCst);
    let counted = Arc::clone(&registry);
    let spawned = std::thread::Builder::new()
        .name("schema-registry-conn".into())
        .spawn(move || {
            Connection::new(stream, &registry).serve();
            registry.connections.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        counted.connections.fetch_sub(1, Ordering::SeqCst);
        tracing::warn!(error = %e, "schema registry cannot start a connection thread; connection dropped");
    }
}

// ---------------------------------------------------------------------------
// State

/// Everything the registry knows; also the `--data` file's format.
#[derive(Clone, Default, Serialize, Deserialize)]
struct State {
    /// Schema texts by global ID: ID `n` is `schemas[n - 1]`.
    schemas: Vec<String>,
    /// Each subject's versions as schema IDs: version `v` is `[v - 1]`.
    subjects: BTreeMap<String, Vec<u32>>,
    /// The identity key of each schema, index for index; rebuilt on load.
    #[serde(skip)]
    keys: Vec<String>,
}

/// A valid schema from a request, with its identity key.
struct Candidate {
    text: String,
    key: String,
}

/// What identifies a schema: its parsed form, serialized. Unlike Avro's
/// parsing canonical form it keeps logical types, defaults and docs.
fn schema_key(text: &str) -> Result<String, apache_avro::Error> {
    let parsed = apache_avro::Schema::parse_str(text)?;
    Ok(serde_json::to_string(&parsed).unwrap_or_else(|_| parsed.canonical_form()))
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl State {
    /// The state in `path`; empty when the file does not exist or is empty.
    fn load(path: &Path) -> io::Result<State> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot read schema registry data {}: {e}", path.display()),
                ))
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(State::default());
        }
        let bad = |what: String| {
            invalid_data(format!(
                "schema registry data {} {what}; fix or delete the file",
                path.display()
            ))
        };
        let mut state: State =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("is not valid: {e}")))?;
        for (i, text) in state.schemas.iter().enumerate() {
            state.keys.push(
                schema_key(text)
                    .map_err(|e| bad(format!("has an invalid schema {}: {e}", i + 1)))?,
            );
        }
        let count = state.schemas.len() as u32;
        if let Some((subject, _)) = state
            .subjects
            .iter()
            .find(|(_, ids)| ids.iter().any(|id| *id == 0 || *id > count))
        {
            return Err(bad(format!(
                "names a schema ID that does not exist under subject '{subject}'"
            )));
        }
        Ok(state)
    }

    /// Writes to `path` atomically: a temporary file, then a rename.
    fn save(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(self).map_err(io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    fn schema(&self, id: u32) -> Option<&str> {
        self.schemas
            .get((id as usize).checked_sub(1)?)
            .map(String::as_str)
    }

    fn id_of(&self, key: &str) -> Option<u32> {
        self.keys
            .iter()
            .position(|k| k == key)
            .map(|i| i as u32 + 1)
    }

    /// The version and ID of the schema with `key` under `subject`.
    fn find(&self, subject: &str, key: &str) -> Option<(usize, u32)> {
        let id = self.id_of(key)?;
        let index = self.subjects.get(subject)?.iter().position(|v| *v == id)?;
        Some((index + 1, id))
    }

    /// Adds `schema` as the next version of `subject`; returns its global ID.
    fn add_version(&mut self, subject: &str, schema: Candidate) -> u32 {
        let id = self.id_of(&schema.key).unwrap_or_else(|| {
            self.schemas.push(schema.text);
            self.keys.push(schema.key);
            self.schemas.len() as u32
        });
        self.subjects
            .entry(subject.to_string())
            .or_default()
            .push(id);
        id
    }

    /// Every (subject, version) that uses schema `id`.
    fn usages(&self, id: u32) -> Vec<(&str, usize)> {
        let mut out = Vec::new();
        for (subject, ids) in &self.subjects {
            out.extend(
                ids.iter()
                    .enumerate()
                    .filter(|(_, v)| **v == id)
                    .map(|(i, _)| (subject.as_str(), i + 1)),
            );
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Answers

/// An answer: status and JSON body (always our content type).
#[derive(Debug)]
struct Reply {
    status: u16,
    body: Vec<u8>,
}

fn ok(value: Value) -> Reply {
    Reply {
        status: 200,
        body: value.to_string().into_bytes(),
    }
}

fn error(status: u16, code: i64, message: impl AsRef<str>) -> Reply {
    ok(json!({ "error_code": code, "message": message.as_ref() })).with_status(status)
}

impl Reply {
    fn with_status(self, status: u16) -> Reply {
        Reply { status, ..self }
    }
}

fn not_found() -> Reply {
    error(404, 404, "HTTP 404 Not Found")
}

fn method_not_allowed() -> Reply {
    error(405, 405, "HTTP 405 Method Not Allowed")
}

fn subject_not_found(subject: &str) -> Reply {
    error(404, 40401, format!("Subject '{subject}' not found."))
}

fn invalid_schema(why: impl std::fmt::Display) -> Reply {
    error(422, 42201, format!("Invalid schema: {why}"))
}

/// Runs the handler registered for `method`, or answers 405.
fn on(method: &str, handlers: &[(&str, &dyn Fn() -> Reply)]) -> Reply {
    handlers
        .iter()
        .find(|(m, _)| *m == method)
        .map_or_else(method_not_allowed, |(_, handler)| handler())
}

fn schema_entry<'a>(state: &'a State, id: &str) -> Result<(u32, &'a str), Reply> {
    let id: u32 = id.parse().map_err(|_| not_found())?;
    state
        .schema(id)
        .map(|text| (id, text))
        .ok_or_else(|| error(404, 40403, format!("Schema {id} not found")))
}

fn subject_versions<'a>(state: &'a State, subject: &str) -> Result<&'a [u32], Reply> {
    state
        .subjects
        .get(subject)
        .map(Vec::as_slice)
        .ok_or_else(|| subject_not_found(subject))
}

/// (version, ID, schema text) of `version` (a number, `latest` or `-1`).
fn version_entry<'a>(
    state: &'a State,
    subject: &str,
    version: &str,
) -> Result<(usize, u32, &'a str), Reply> {
    let wanted = match version {
        "latest" | "-1" => None,
        v => Some(
            v.parse::<i32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| invalid_version(v))? as usize,
        ),
    };
    let ids = subject_versions(state, subject)?;
    let number = wanted.unwrap_or(ids.len());
    let id = *number
        .checked_sub(1)
        .and_then(|i| ids.get(i))
        .ok_or_else(|| error(404, 40402, format!("Version {version} not found.")))?;
    Ok((number, id, state.schema(id).unwrap_or_default()))
}

fn invalid_version(version: &str) -> Reply {
    let message = format!("The specified version '{version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"");
    error(422, 42202, message)
}

/// The schema in a register or lookup body, validated.
fn candidate(body: &[u8]) -> Result<Candidate, Reply> {
    #[derive(Deserialize)]
    struct SchemaRequest {
        schema: Option<String>,
        #[serde(rename = "schemaType")]
        schema_type: Option<String>,
        references: Option<Vec<Value>>,
    }
    let request: SchemaRequest = parse_body(body)?;
    if let Some(kind) = request.schema_type.filter(|t| t != "AVRO") {
        return Err(invalid_schema(format!(
            "schemaType {kind} is not supported by this registry; only AVRO is"
        )));
    }
    if request.references.is_some_and(|r| !r.is_empty()) {
        return Err(invalid_schema(
            "schema references are not supported by this registry; inline the referenced types",
        ));
    }
    let text = request
        .schema
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| invalid_schema("the body has no \"schema\" string"))?;
    let key = schema_key(&text).map_err(invalid_schema)?;
    Ok(Candidate { text, key })
}

/// A JSON body: 400 when it is not JSON, 422 when it has the wrong shape.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => error(422, 422, format!("Unprocessable entity: {e}")),
        _ => error(400, 400, format!("The request body is not valid JSON: {e}")),
    })
}

fn version_json(subject: &str, version: usize, id: u32, schema: &str) -> Value {
    json!({ "subject": subject, "version": version, "id": id, "schema": schema })
}

// ---------------------------------------------------------------------------
// The registry

struct Registry {
    state: Mutex<State>,
    data: Option<PathBuf>,
    /// `user:password` every request must carry, if any.
    auth: Option<String>,
    stop: AtomicBool,
    /// Connection threads still running; `stop` waits for them so that a
    /// stopped registry answers nothing more.
    connections: AtomicUsize,
}

impl Registry {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Answers from the state, read-only.
    fn read(&self, answer: impl FnOnce(&State) -> Result<Reply, Reply>) -> Reply {
        answer(&self.state()).unwrap_or_else(|e| e)
    }

    /// Makes `next` the state once it is saved (if there is a data file).
    fn commit(&self, state: &mut State, next: State) -> Result<(), Reply> {
        if let Some(path) = &self.data {
            next.save(path).map_err(|e| {
                tracing::error!(path = %path.display(), error = %e, "schema registry cannot save its state");
                error(500, 50001, format!("Error in the backend data store: cannot write {}: {e}", path.display()))
            })?;
        }
        *state = next;
        Ok(())
    }

    fn answer(&self, head: &Head, body: &[u8]) -> Reply {
        if !self.authorized(head.authorization.as_deref()) {
            return error(401, 401, "Unauthorized");
        }
        if !body.is_empty() && !acceptable_body_type(head.content_type.as_deref()) {
            return error(415, 415, "HTTP 415 Unsupported Media Type");
        }
        let Some(segments) = path_segments(&head.target) else {
            return error(400, 400, "The request path has bad percent-encoding");
        };
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        self.route(&head.method, &segments, body)
    }

    fn authorized(&self, header: Option<&str>) -> bool {
        match &self.auth {
            None => true,
            Some(expected) => header.and_then(basic_credentials).as_ref() == Some(expected),
        }
    }

    fn route(&self, method: &str, segments: &[&str], body: &[u8]) -> Reply {
        match segments {
            [] => on(method, &[("GET", &|| ok(json!({})))]),
            ["schemas", "types"] => on(method, &[("GET", &|| ok(json!(["AVRO"])))]),
            ["schemas", "ids", id] => on(method, &[("GET", &|| self.schema_by_id(id))]),
            ["schemas", "ids", id, "schema"] => {
                on(method, &[("GET", &|| self.raw_schema_by_id(id))])
            }
            ["schemas", "ids", id, "versions"] => {
                on(method, &[("GET", &|| self.schema_versions(id))])
            }
            ["schemas", "ids", id, "subjects"] => {
                on(method, &[("GET", &|| self.schema_subjects(id))])
            }
            ["subjects"] => on(method, &[("GET", &|| self.subjects())]),
            ["subjects", s] => on(
                method,
                &[
                    ("POST", &|| self.lookup(s, body)),
                    ("DELETE", &|| self.delete_subject(s)),
                ],
            ),
            ["subjects", s, "versions"] => on(
                method,
                &[
                    ("GET", &|| self.versions(s)),
                    ("POST", &|| self.register(s, body)),
                ],
            ),
            ["subjects", s, "versions", v] => on(method, &[("GET", &|| self.version(s, v))]),
            ["subjects", s, "versions", v, "schema"] => {
                on(method, &[("GET", &|| self.raw_version_schema(s, v))])
            }
            ["config"] | ["config", _] => on(
                method,
                &[
                    ("GET", &|| ok(json!({ "compatibilityLevel": "BACKWARD" }))),
                    ("PUT", &|| put_config(body)),
                ],
            ),
            _ => not_found(),
        }
    }

    fn schema_by_id(&self, id: &str) -> Reply {
        self.read(|state| schema_entry(state, id).map(|(_, text)| ok(json!({ "schema": text }))))
    }

    fn raw_schema_by_id(&self, id: &str) -> Reply {
        self.read(|state| {
            schema_entry(state, id).map(|(_, text)| Reply {
                status: 200,
                body: text.as_bytes().to_vec(),
            })
        })
    }

    fn schema_versions(&self, id: &str) -> Reply {
        self.read(|state| {
            let (id, _) = schema_entry(state, id)?;
            let usages: Vec<Value> = state
                .usages(id)
                .into_iter()
                .map(|(s, v)| json!({ "subject": s, "version": v }))
                .collect();
            Ok(ok(json!(usages)))
        })
    }

    fn schema_subjects(&self, id: &str) -> Reply {
        self.read(|state| {
            let (id, _) = schema_entry(state, id)?;
            let mut subjects: Vec<&str> = state.usages(id).into_iter().map(|(s, _)| s).collect();
            subjects.dedup();
            Ok(ok(json!(subjects)))
        })
    }

    fn subjects(&self) -> Reply {
        self.read(|state| Ok(ok(json!(state.subjects.keys().collect::<Vec<_>>()))))
    }

    fn versions(&self, subject: &str) -> Reply {
        self.read(|state| {
            subject_versions(state, subject)
                .map(|ids| ok(json!((1..=ids.len()).collect::<Vec<_>>())))
        })
    }

    fn version(&self, subject: &str, version: &str) -> Reply {
        self.read(|state| {
            version_entry(state, subject, version)
                .map(|(v, id, text)| ok(version_json(subject, v, id, text)))
        })
    }

    fn raw_version_schema(&self, subject: &str, version: &str) -> Reply {
        self.read(|state| {
            version_entry(state, subject, version).map(|(_, _, text)| Reply {
                status: 200,
                body: text.as_bytes().to_vec(),
            })
        })
    }

    /// Registers under `subject`; an already registered schema keeps its
    /// version and ID.
    fn register(&self, subject: &str, body: &[u8]) -> Reply {
        let schema = match candidate(body) {
            Ok(schema) => schema,
            Err(reply) => return reply,
        };
        let mut state = self.state();
        if let Some((_, id)) = state.find(subject, &schema.key) {
            return ok(json!({ "id": id }));
        }
        let mut next = state.clone();
        let id = next.add_version(subject, schema);
        self.commit(&mut state, next)
            .map(|()| ok(json!({ "id": id })))
            .unwrap_or_else(|e| e)
    }

    fn lookup(&self, subject: &str, body: &[u8]) -> Reply {
        self.read(|state| {
            let schema = candidate(body)?;
            subject_versions(state, subject)?;
            let (version, id) = state
                .find(subject, &schema.key)
                .ok_or_else(|| error(404, 40403, "Schema not found"))?;
            let text = state.schema(id).unwrap_or_default();
            Ok(ok(
                json!({ "subject": subject, "id": id, "version": version, "schema": text }),
            ))
        })
    }

    fn delete_subject(&self, subject: &str) -> Reply {
        let mut state = self.state();
        let Some(ids) = state.subjects.get(subject) else {
            return subject_not_found(subject);
        };
        let versions: Vec<usize> = (1..=ids.len()).collect();
        let mut next = state.clone();
        next.subjects.remove(subject);
        self.commit(&mut state, next)
            .map(|()| ok(json!(versions)))
            .unwrap_or_else(|e| e)
    }
}

/// `PUT /config[/{subject}]`: checks the level and echoes it (nothing is
/// enforced by this registry).
fn put_config(body: &[u8]) -> Reply {
    #[derive(Deserialize)]
    struct Config {
        compatibility: Option<String>,
    }
    let config: Config = match parse_body(body) {
        Ok(c) => c,
        Err(reply) => return reply,
    };
    match config.compatibility.map(|c| c.to_ascii_uppercase()) {
        Some(level) if COMPATIBILITY_LEVELS.contains(&level.as_str()) => {
            ok(json!({ "compatibility": level }))
        }
        _ => error(
            422,
            42203,
            format!(
                "Invalid compatibility level. Valid values are {}",
                COMPATIBILITY_LEVELS.join(", ")
            ),
        ),
    }
}

/// `user:password` from an `Authorization: Basic ...` value.
fn basic_credentials(header: &str) -> Option<String> {
    let (scheme, token) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn acceptable_body_type(content_type: Option<&str>) -> bool {
    let Some(value) = content_type else {
        return true;
    };
    let media = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    REQUEST_TYPES.contains(&media.as_str())
}

/// The decoded, non-empty path segments of a request target (query and
/// fragment dropped); `None` for bad percent-encoding.
fn path_segments(target: &str) -> Option<Vec<String>> {
    let path = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect()
}

/// Strict `%XX` decoding to UTF-8; `None` on a bad escape or bad UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------------
// HTTP/1.1

/// What the registry needs from a request head.
#[derive(Debug)]
struct Head {
    method: String,
    target: String,
    /// Bytes of the head, up to and including the blank line.
    len: usize,
    body_len: usize,
    content_type: Option<String>,
    authorization: Option<String>,
    close: bool,
    expect_continue: bool,
}

/// Requests we answer with an error and then close the connection.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error("Malformed HTTP request: {0}")]
    Malformed(String),
    #[error("The request head is larger than {MAX_HEAD} bytes; send fewer or shorter headers")]
    HeadTooLarge,
    #[error("The request body is larger than {MAX_BODY} bytes")]
    BodyTooLarge,
    #[error("Send the body with Content-Length; chunked bodies are not supported")]
    LengthRequired,
}

impl RequestError {
    fn reply(&self) -> Reply {
        let status = match self {
            RequestError::Malformed(_) => 400,
            RequestError::HeadTooLarge => 431,
            RequestError::BodyTooLarge => 413,
            RequestError::LengthRequired => 411,
        };
        error(status, i64::from(status), self.to_string())
    }
}

/// The head at the start of `buf`, `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => head_of(&request, len).map(Some),
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => Err(RequestError::HeadTooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(RequestError::Malformed(e.to_string())),
    }
}

fn head_of(request: &httparse::Request, len: usize) -> Result<Head, RequestError> {
    let mut head = Head {
        method: request.method.unwrap_or_default().to_string(),
        target: request.path.unwrap_or_default().to_string(),
        len,
        body_len: 0,
        content_type: None,
        authorization: None,
        close: request.version != Some(1),
        expect_continue: false,
    };
    let mut length: Option<usize> = None;
    for header in request.headers.iter() {
        let value = std::str::from_utf8(header.value)
            .map_err(|_| RequestError::Malformed(format!("header {} is not UTF-8", header.name)))?
            .trim();
        match header.name.to_ascii_lowercase().as_str() {
            "content-length" => length = Some(content_length(value, length)?),
            "transfer-encoding" => return Err(RequestError::LengthRequired),
            "content-type" => head.content_type = Some(value.to_string()),
            "authorization" => head.authorization = Some(value.to_string()),
            "connection" => {
                head.close |= value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("close"))
            }
            "expect" => head.expect_continue = value.eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
    }
    head.body_len = length.unwrap_or(0);
    if head.body_len > MAX_BODY {
        return Err(RequestError::BodyTooLarge);
    }
    Ok(head)
}

/// A Content-Length value; repeated headers must agree.
fn content_length(value: &str, earlier: Option<usize>) -> Result<usize, RequestError> {
    let bad = || RequestError::Malformed(format!("bad Content-Length `{value}`"));
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: usize = value.parse().map_err(|_| RequestError::BodyTooLarge)?;
    match earlier {
        Some(m) if m != n => Err(bad()),
        _ => Ok(n),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

/// One client connection: requests in turn until it closes, idles out or
/// the registry stops.
struct Connection<'a> {
    stream: TcpStream,
    buf: Vec<u8>,
    registry: &'a Registry,
}

impl<'a> Connection<'a> {
    fn new(stream: TcpStream, registry: &'a Registry) -> Connection<'a> {
        let _ = stream.set_read_timeout(Some(POLL));
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let _ = stream.set_nodelay(true);
        Connection {
            stream,
            buf: Vec::new(),
            registry,
        }
    }

    fn serve(mut self) {
        while self.serve_one() {}
    }

    /// Reads and answers one request; false when the connection is done.
    fn serve_one(&mut self) -> bool {
        let head = match self.read_head() {
            Ok(Some(head)) => head,
            Ok(None) => return false,
            Err(e) => {
                self.send(&e.reply(), true);
                self.linger();
                return false;
            }
        };
        let total = head.len + head.body_len;
        if head.expect_continue
            && self.buf.len() < total
            && self
                .stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .is_err()
        {
            return false;
        }
        if !self.fill(total) {
            return false;
        }
        let reply = self.registry.answer(&head, &self.buf[head.len..total]);
        tracing::debug!(method = %head.method, target = %head.target, status = reply.status, "schema registry request");
        let sent = self.send(&reply, head.close);
        self.buf.drain(..total);
        sent && !head.close
    }

    /// `Ok(None)`: the client left, idled out, or the registry stops.
    fn read_head(&mut self) -> Result<Option<Head>, RequestError> {
        loop {
            if let Some(head) = parse_head(&self.buf)? {
                return Ok(Some(head));
            }
            if !self.read_more() {
                return Ok(None);
            }
        }
    }

    fn fill(&mut self, total: usize) -> bool {
        while self.buf.len() < total {
            if !self.read_more() {
                return false;
            }
        }
        true
    }

    /// Appends what the client sends next; false on EOF, error, idle or stop.
    fn read_more(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let started = Instant::now();
        while !self.registry.stop.load(Ordering::SeqCst) && started.elapsed() < IDLE {
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Ends the connection gently: closing with unread input would reset it
    /// and could destroy our answer before the client reads it.
    fn linger(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let mut chunk = [0u8; 16 * 1024];
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            match self.stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return,
            }
        }
    }

    fn send(&mut self, reply: &Reply, close: bool) -> bool {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n",
            reply.status,
            reason(reply.status),
            reply.body.len()
        );
        if reply.status == 401 {
            out.push_str("WWW-Authenticate: Basic realm=\"schema-registry\"\r\n");
        }
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&reply.body);
        self.stream
            .write_all(&bytes)
            .and_then(|()| self.stream.flush())
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str =
        r#"{"type":"record","name":"T","namespace":"t","fields":[{"name":"a","type":"string"}]}"#;
    const SCHEMA2: &str = r#"{"type":"record","name":"T","namespace":"t","fields":[{"name":"a","type":"string"},{"name":"b","type":["null","long"],"default":null}]}"#;

    /// Status, lower-cased headers and body of one response.
    type Response = (u16, Vec<(String, String)>, String);

    /// One keep-alive connection speaking raw HTTP/1.1.
    struct Raw {
        stream: TcpStream,
        buf: Vec<u8>,
    }

    impl Raw {
        fn connect(addr: SocketAddr) -> Raw {
            let stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            Raw {
                stream,
                buf: Vec::new(),
            }
        }

        fn send(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).unwrap();
        }

        /// The next response: status, lower-cased headers, body. `None` at EOF.
        fn response(&mut self) -> Option<Response> {
            loop {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut response = httparse::Response::new(&mut headers);
                if let httparse::Status::Complete(len) = response.parse(&self.buf).unwrap() {
                    let headers: Vec<(String, String)> = response
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    let status = response.code.unwrap();
                    let body_len: usize = headers
                        .iter()
                        .find(|(n, _)| n == "content-length")
                        .map_or(0, |(_, v)| v.parse().unwrap());
                    if self.buf.len() >= len + body_len {
                        let body =
                            String::from_utf8(self.buf[len..len + body_len].to_vec()).unwrap();
                        self.buf.drain(..len + body_len);
                        return Some((status, headers, body));
                    }
                }
                let mut chunk = [0u8; 4096];
                match self.stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        }

        /// A JSON call: status and body (JSON, or a string when it is not).
        fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
            let body = body.map(|b| b.to_string()).unwrap_or_default();
            let request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            self.send(request.as_bytes());
            let (status, headers, body) = self.response().expect("a response");
            assert!(
                headers.contains(&("content-type".into(), CONTENT_TYPE.into())),
                "{headers:?}"
            );
            (
                status,
                serde_json::from_str(&body).unwrap_or(Value::String(body)),
            )
        }

        /// Whether the server closed the connection.
        fn closed(&mut self) -> bool {
            let mut byte = [0u8; 1];
            matches!(self.stream.read(&mut byte), Ok(0) | Err(_))
        }
    }

    fn schema_body(schema: &str) -> Option<Value> {
        Some(json!({ "schema": schema }))
    }

    fn code(reply: (u16, Value)) -> (u16, Value) {
        (reply.0, reply.1["error_code"].clone())
    }

    #[test]
    fn identity_ignores_spelling_but_keeps_what_changes_decoding() {
        let spaced = r#"{ "namespace": "t", "name": "T", "type": "record", "fields": [ {"type": "string", "name": "a"} ] }"#;
        assert_eq!(schema_key(SCHEMA).unwrap(), schema_key(spaced).unwrap());
        assert_eq!(
            schema_key(SCHEMA).unwrap(),
            schema_key(r#"{"type":"record","name":"t.T","fields":[{"name":"a","type":"string"}]}"#)
                .unwrap()
        );
        let long = r#"{"type":"record","name":"T","fields":[{"name":"a","type":"long"}]}"#;
        let millis = r#"{"type":"record","name":"T","fields":[{"name":"a","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#;
        assert_ne!(schema_key(long).unwrap(), schema_key(millis).unwrap());
        assert!(schema_key("{nope").is_err());
    }

    #[test]
    fn state_gives_one_id_per_schema_and_one_version_per_subject_schema() {
        let mut state = State::default();
        let c = |text: &str| Candidate {
            text: text.to_string(),
            key: schema_key(text).unwrap(),
        };
        assert_eq!(state.add_version("a", c(SCHEMA)), 1);
        assert_eq!(state.add_version("a", c(SCHEMA2)), 2);
        assert_eq!(state.add_version("b", c(SCHEMA)), 1);
        assert_eq!(state.find("a", &c(SCHEMA2).key), Some((2, 2)));
        assert_eq!(state.find("b", &c(SCHEMA2).key), None);
        assert_eq!(state.usages(1), vec![("a", 1), ("b", 1)]);
        assert_eq!(state.schema(0), None);
        assert_eq!(state.schema(2), Some(SCHEMA2));
    }

    #[test]
    fn subjects_versions_and_ids_follow_confluent() {
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        let mut c = Raw::connect(reg.addr); // one keep-alive connection throughout
        assert_eq!(c.call("GET", "/subjects", None), (200, json!([])));
        assert_eq!(
            c.call("POST", "/subjects/t-value/versions", schema_body(SCHEMA)),
            (200, json!({ "id": 1 }))
        );
        assert_eq!(
            c.call("POST", "/subjects/t-value/versions", schema_body(SCHEMA)),
            (200, json!({ "id": 1 }))
        );
        let typed =
            json!({ "schema": SCHEMA2, "schemaType": "AVRO", "references": [], "metadata": null });
        assert_eq!(
            c.call(
                "POST",
                "/subjects/t-value/versions?normalize=false",
                Some(typed)
            ),
            (200, json!({ "id": 2 }))
        );
        assert_eq!(
            c.call("POST", "/subjects/u-value/versions", schema_body(SCHEMA)),
            (200, json!({ "id": 1 }))
        );
        assert_eq!(
            c.call("GET", "/subjects", None),
            (200, json!(["t-value", "u-value"]))
        );
        assert_eq!(
            c.call("GET", "/subjects/t-value/versions", None),
            (200, json!([1, 2]))
        );
        let v2 = json!({ "subject": "t-value", "version": 2, "id": 2, "schema": SCHEMA2 });
        for v in ["2", "latest", "-1"] {
            assert_eq!(
                c.call("GET", &format!("/subjects/t-value/versions/{v}"), None),
                (200, v2.clone())
            );
        }
        let raw: Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(
            c.call("GET", "/subjects/t-value/versions/1/schema", None),
            (200, raw.clone())
        );
        assert_eq!(
            c.call("GET", "/schemas/ids/1", None),
            (200, json!({ "schema": SCHEMA }))
        );
        assert_eq!(c.call("GET", "/schemas/ids/1/schema", None), (200, raw));
        assert_eq!(
            c.call("GET", "/schemas/ids/1/versions", None),
            (
                200,
                json!([{ "subject": "t-value", "version": 1 }, { "subject": "u-value", "version": 1 }])
            )
        );
        assert_eq!(
            c.call("GET", "/schemas/ids/1/subjects", None),
            (200, json!(["t-value", "u-value"]))
        );
        assert_eq!(
            c.call("GET", "/schemas/types", None),
            (200, json!(["AVRO"]))
        );
        let found = json!({ "subject": "t-value", "id": 1, "version": 1, "schema": SCHEMA });
        assert_eq!(
            c.call(
                "POST",
                "/subjects/t-value?normalize=false&deleted=false",
                schema_body(SCHEMA)
            ),
            (200, found)
        );
        assert_eq!(
            c.call("GET", "/config", None),
            (200, json!({ "compatibilityLevel": "BACKWARD" }))
        );
        assert_eq!(
            c.call("PUT", "/config", Some(json!({ "compatibility": "FULL" }))),
            (200, json!({ "compatibility": "FULL" }))
        );
        assert_eq!(
            c.call(
                "PUT",
                "/config/t-value",
                Some(json!({ "compatibility": "none" }))
            ),
            (200, json!({ "compatibility": "NONE" }))
        );
        assert_eq!(
            c.call("DELETE", "/subjects/u-value", None),
            (200, json!([1]))
        );
        assert_eq!(c.call("GET", "/subjects", None), (200, json!(["t-value"])));
        assert_eq!(
            c.call("GET", "/schemas/ids/1", None),
            (200, json!({ "schema": SCHEMA })),
            "IDs outlive subjects"
        );
    }

    #[test]
    fn errors_use_confluent_codes_and_bodies() {
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        let mut c = Raw::connect(reg.addr);
        c.call("POST", "/subjects/t-value/versions", schema_body(SCHEMA));
        assert_eq!(
            c.call("GET", "/schemas/ids/7", None),
            (
                404,
                json!({ "error_code": 40403, "message": "Schema 7 not found" })
            )
        );
        assert_eq!(
            code(c.call("GET", "/schemas/ids/7/versions", None)),
            (404, json!(40403))
        );
        assert_eq!(
            c.call("GET", "/subjects/nope/versions", None),
            (
                404,
                json!({ "error_code": 40401, "message": "Subject 'nope' not found." })
            )
        );
        assert_eq!(
            code(c.call("GET", "/subjects/nope/versions/1", None)),
            (404, json!(40401))
        );
        assert_eq!(
            code(c.call("DELETE", "/subjects/nope", None)),
            (404, json!(40401))
        );
        assert_eq!(
            code(c.call("POST", "/subjects/nope", schema_body(SCHEMA))),
            (404, json!(40401))
        );
        assert_eq!(
            code(c.call("POST", "/subjects/t-value", schema_body(SCHEMA2))),
            (404, json!(40403))
        );
        assert_eq!(
            code(c.call("GET", "/subjects/t-value/versions/7", None)),
            (404, json!(40402))
        );
        assert_eq!(
            code(c.call("GET", "/subjects/t-value/versions/0", None)),
            (422, json!(42202))
        );
        assert_eq!(
            code(c.call("GET", "/subjects/t-value/versions/x", None)),
            (422, json!(42202))
        );
        let (status, body) = c.call("POST", "/subjects/x/versions", schema_body("{bad"));
        assert_eq!((status, &body["error_code"]), (422, &json!(42201)));
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("Invalid schema"),
            "{body}"
        );
        assert_eq!(
            code(c.call(
                "POST",
                "/subjects/x/versions",
                Some(json!({ "schema": "{}", "schemaType": "PROTOBUF" }))
            )),
            (422, json!(42201))
        );
        let refs = json!({ "schema": SCHEMA, "references": [{ "name": "a", "subject": "b", "version": 1 }] });
        assert_eq!(
            code(c.call("POST", "/subjects/x/versions", Some(refs))),
            (422, json!(42201))
        );
        assert_eq!(
            code(c.call(
                "POST",
                "/subjects/x/versions",
                Some(json!({ "nothing": 1 }))
            )),
            (422, json!(42201))
        );
        assert_eq!(
            code(c.call("POST", "/subjects/x/versions", Some(json!({ "schema": 5 })))),
            (422, json!(422))
        );
        assert_eq!(
            code(c.call(
                "PUT",
                "/config",
                Some(json!({ "compatibility": "SOMETIMES" }))
            )),
            (422, json!(42203))
        );
        assert_eq!(
            c.call("GET", "/nowhere", None),
            (
                404,
                json!({ "error_code": 404, "message": "HTTP 404 Not Found" })
            )
        );
        assert_eq!(
            code(c.call("GET", "/schemas/ids/abc", None)),
            (404, json!(404))
        );
        assert_eq!(code(c.call("PATCH", "/subjects", None)), (405, json!(405)));
        assert_eq!(
            c.call("GET", "/subjects", None),
            (200, json!(["t-value"])),
            "nothing was added by the failures"
        );
    }

    #[test]
    fn subject_names_are_percent_decoded() {
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        let mut c = Raw::connect(reg.addr);
        assert_eq!(
            c.call(
                "POST",
                "/subjects/a%2Fb%20%C3%A9/versions",
                schema_body(SCHEMA)
            ),
            (200, json!({ "id": 1 }))
        );
        assert_eq!(c.call("GET", "/subjects", None), (200, json!(["a/b é"])));
        assert_eq!(
            c.call("GET", "/subjects/a%2fb%20%c3%a9/versions", None),
            (200, json!([1]))
        );
        assert_eq!(
            code(c.call("GET", "/subjects/a%zz/versions", None)),
            (400, json!(400))
        );
        assert_eq!(
            code(c.call("GET", "/subjects/%FF/versions", None)),
            (400, json!(400))
        );
    }

    #[test]
    fn request_content_types_follow_confluent() {
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        let body = json!({ "schema": SCHEMA }).to_string();
        let types = [
            "application/vnd.schemaregistry.v1+json",
            "application/vnd.schemaregistry+json",
            "application/json; charset=utf-8",
            "application/octet-stream",
        ];
        for (content_type, status) in types
            .iter()
            .map(|t| (Some(*t), 200))
            .chain([(None, 200), (Some("text/plain"), 415)])
        {
            let mut c = Raw::connect(reg.addr);
            let header = content_type
                .map(|t| format!("Content-Type: {t}\r\n"))
                .unwrap_or_default();
            c.send(format!("POST /subjects/s/versions HTTP/1.1\r\nAccept: text/html\r\n{header}Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
            assert_eq!(c.response().unwrap().0, status, "{content_type:?}");
        }
    }

    #[test]
    fn keep_alive_pipelining_expect_continue_and_close() {
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        let mut c = Raw::connect(reg.addr);
        c.send(b"GET /schemas/types HTTP/1.1\r\n\r\nGET /subjects HTTP/1.1\r\n\r\n");
        assert_eq!(c.response().unwrap().2, r#"["AVRO"]"#);
        assert_eq!(c.response().unwrap().2, "[]");
        let body = json!({ "schema": SCHEMA }).to_string();
        c.send(format!("POST /subjects/s/versions HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
        let mut interim = [0u8; 25];
        c.stream.read_exact(&mut interim).unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        c.send(body.as_bytes());
        assert_eq!(c.response().unwrap().2, r#"{"id":1}"#);
        c.send(b"GET /subjects HTTP/1.1\r\nConnection: close\r\n\r\n");
        let (status, headers, _) = c.response().unwrap();
        assert_eq!(status, 200);
        assert!(headers.contains(&("connection".into(), "close".into())));
        assert!(c.closed());
        let mut old = Raw::connect(reg.addr);
        old.send(b"GET /subjects HTTP/1.0\r\n\r\n");
        assert_eq!(old.response().unwrap().0, 200);
        assert!(old.closed(), "HTTP/1.0 closes");
    }

    #[test]
    fn malformed_requests_get_400_and_the_server_carries_on() {
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        let cases: [(&[u8], u16); 8] = [
            (b"NOT HTTP AT ALL\r\n\r\n", 400),
            (
                b"GET /subjects HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
                400,
            ),
            (
                b"GET /subjects HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (b"GET /subjects HTTP/1.1\r\nBad Header\r\n\r\n", 400),
            (b"GET /subjects HTTP/1.1\r\nX: \xff\r\n\r\n", 400),
            (
                b"POST /subjects/s/versions HTTP/1.1\r\nContent-Length: 5\r\n\r\n{bad}",
                400,
            ),
            (
                b"POST /subjects/s/versions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                411,
            ),
            (
                b"POST /subjects/s/versions HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
                413,
            ),
        ];
        for (request, status) in cases {
            let mut c = Raw::connect(reg.addr);
            c.send(request);
            let (got, _, body) = c
                .response()
                .unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(request)));
            assert_eq!(
                got,
                status,
                "{:?}: {body}",
                String::from_utf8_lossy(request)
            );
            assert_eq!(
                serde_json::from_str::<Value>(&body).unwrap()["error_code"],
                json!(status)
            );
        }
        let mut c = Raw::connect(reg.addr);
        c.send(format!("GET /subjects HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD)).as_bytes());
        assert_eq!(c.response().unwrap().0, 431);
        for garbage in [
            &b"\x00\x01\x02\r\n\r\n"[..],
            b"\r\n\r\n\r\n",
            b"GET\r\n\r\n",
            b"G E T / HTTP/9.9\r\n\r\n",
            b" / HTTP/1.1\r\n\r\n",
        ] {
            let mut c = Raw::connect(reg.addr);
            c.send(garbage);
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
            let _ = c.response();
        }
        assert_eq!(
            Raw::connect(reg.addr).call("GET", "/subjects", None),
            (200, json!([])),
            "still serving"
        );
    }

    #[test]
    fn basic_auth_is_enforced_when_configured() {
        let reg = spawn("127.0.0.1:0", None, Some(("ann".into(), "pw".into()))).unwrap();
        let mut c = Raw::connect(reg.addr);
        c.send(b"GET /subjects HTTP/1.1\r\n\r\n");
        let (status, headers, body) = c.response().unwrap();
        assert_eq!(
            (status, body.as_str()),
            (401, r#"{"error_code":401,"message":"Unauthorized"}"#)
        );
        assert!(headers.iter().any(|(n, _)| n == "www-authenticate"));
        let wrong = base64::engine::general_purpose::STANDARD.encode("ann:nope");
        c.send(
            format!("GET /subjects HTTP/1.1\r\nAuthorization: Basic {wrong}\r\n\r\n").as_bytes(),
        );
        assert_eq!(c.response().unwrap().0, 401);
        let right = base64::engine::general_purpose::STANDARD.encode("ann:pw");
        c.send(
            format!("GET /subjects HTTP/1.1\r\nAuthorization: basic {right}\r\n\r\n").as_bytes(),
        );
        assert_eq!(c.response().unwrap().0, 200);
    }

    fn temp_path(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("push-cache-registry-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("state/registry.json")
    }

    #[test]
    fn state_survives_a_restart_with_a_data_file() {
        let path = temp_path("restart");
        let reg = spawn("127.0.0.1:0", Some(path.clone()), None).unwrap();
        let addr = reg.addr;
        let mut c = Raw::connect(addr);
        c.call("POST", "/subjects/t-value/versions", schema_body(SCHEMA));
        c.call("POST", "/subjects/t-value/versions", schema_body(SCHEMA2));
        c.call("POST", "/subjects/u-value/versions", schema_body(SCHEMA));
        c.call("DELETE", "/subjects/u-value", None);
        reg.stop();
        assert!(!path.with_file_name("registry.json.tmp").exists());
        let reg = spawn(&addr.to_string(), Some(path.clone()), None)
            .expect("the address is free again after stop()");
        let mut c = Raw::connect(reg.addr);
        assert_eq!(
            c.call("GET", "/schemas/ids/2", None),
            (200, json!({ "schema": SCHEMA2 }))
        );
        assert_eq!(c.call("GET", "/subjects", None), (200, json!(["t-value"])));
        assert_eq!(
            c.call("GET", "/subjects/t-value/versions", None),
            (200, json!([1, 2]))
        );
        assert_eq!(
            c.call("POST", "/subjects/v-value/versions", schema_body(SCHEMA2)),
            (200, json!({ "id": 2 }))
        );
        let third = r#"{"type":"record","name":"U","fields":[]}"#;
        assert_eq!(
            c.call("POST", "/subjects/v-value/versions", schema_body(third)),
            (200, json!({ "id": 3 }))
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn a_broken_data_file_is_refused_with_advice() {
        let path = temp_path("broken");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        for (contents, fails) in [
            ("{", true),
            (r#"{"schemas":["{bad"],"subjects":{}}"#, true),
            (r#"{"schemas":[],"subjects":{"s":[1]}}"#, true),
            ("", false),
        ] {
            std::fs::write(&path, contents).unwrap();
            match spawn("127.0.0.1:0", Some(path.clone()), None) {
                Err(e) => assert!(
                    fails
                        && e.kind() == io::ErrorKind::InvalidData
                        && e.to_string().contains("fix or delete"),
                    "{contents}: {e}"
                ),
                Ok(_) => assert!(!fails, "{contents} was accepted"),
            }
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn a_busy_address_is_reported_with_advice() {
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        let e = spawn(&reg.addr.to_string(), None, None)
            .err()
            .expect("the address is taken");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("--listen"), "{e}");
    }

    #[test]
    fn dropping_the_handle_stops_the_listener() {
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        let addr = reg.addr;
        let mut open = Raw::connect(addr);
        assert_eq!(open.call("GET", "/subjects", None).0, 200);
        drop(reg);
        assert!(
            TcpStream::connect(addr).is_err(),
            "nothing listens any more"
        );
        assert!(open.closed(), "open connections end too");
    }

    #[test]
    fn client_and_server_agree() {
        use crate::kafka::registry_client::{RegistryClient, RegistryError};
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        let client = RegistryClient::new(&format!("http://{}", reg.addr)).unwrap();
        let id = client.register("t-value", SCHEMA).unwrap();
        assert_eq!(client.schema_text(id).unwrap(), SCHEMA);
        assert!(matches!(
            client.schema_text(id + 1),
            Err(RegistryError::NotFound { .. })
        ));
    }

    #[test]
    fn confluent_python_client_works_unchanged() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/registry_compat.py");
        let probe = std::process::Command::new("python3")
            .args(["-c", "import confluent_kafka.schema_registry"])
            .output();
        if !probe.is_ok_and(|o| o.status.success()) {
            eprintln!("skipped: python3 with confluent_kafka is not installed (pip install confluent-kafka to run this check)");
            return;
        }
        let plain = spawn("127.0.0.1:0", None, None).unwrap();
        let guarded = spawn("127.0.0.1:0", None, Some(("ann".into(), "p@ss".into()))).unwrap();
        for url in [
            format!("http://{}", plain.addr),
            format!("http://ann:p%40ss@{}", guarded.addr),
        ] {
            let out = std::process::Command::new("python3")
                .arg(script)
                .arg(&url)
                .output()
                .unwrap();
            let text = format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success(),
                "registry_compat.py {url} failed:\n{text}"
            );
            eprint!("{text}");
        }
    }
}
