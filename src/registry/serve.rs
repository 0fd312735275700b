//! The registry as a process: binding the listen address, serving HTTP/1.1
//! through the crate's one HTTP implementation (`http::connection` with the
//! [`Handler`] below) on one glommio executor thread, and stopping.
//!
//! The connection loop owns framing, keep-alive, pipelining,
//! `Expect: 100-continue`, Content-Length and chunked bodies, limits and
//! timeouts. A request it refuses before routing (malformed head, too large,
//! unsupported coding) gets its standard JSON error (`{"error": "..."}`),
//! because the `Handler` trait does not shape those answers; everything that
//! reaches the handler is answered in Confluent's error body. The state sits
//! behind the API's lock: this is a dev tool and requests are rare. Stopping
//! (drop or `stop()`) closes the listener and every open connection before it
//! returns, so a stopped registry answers nothing more.

use super::api::{self, Api, Reply, Request};
use super::state::State;
use crate::config::Limits;
use crate::http::connection;
use crate::http::deadline::{Registration, TimedStream};
use crate::http::request::Request as HttpRequest;
use crate::http::response;
use crate::http::{Handler, ResponseWriter};
use glommio::{LocalExecutorBuilder, Placement};
use std::cell::Cell;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 8 * 1024 * 1024;
/// An idle keep-alive connection is closed after this long.
const IDLE: Duration = Duration::from_secs(60);
/// Memory glommio locks for its I/O buffers; the registry needs little.
const IO_MEMORY: usize = 512 * 1024;
/// How long a stopping registry waits for its connections to close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A registry serving on a background thread. Dropping it, or `stop()`,
/// closes the listener and open connections and frees the address.
pub struct RegistryHandle {
    pub addr: SocketAddr,
    /// Dropped to stop: every waiting receiver then sees the channel closed.
    stop: Option<flume::Sender<()>>,
    thread: Option<glommio::ExecutorJoinHandle<()>>,
}

impl RegistryHandle {
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RegistryHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds `listen` (port 0: any free port) and serves on a background thread.
/// `data`: the state file, loaded now and written on every change.
/// `basic_auth`: the (user, password) every request must carry.
pub fn spawn(listen: &str, data: Option<PathBuf>, basic_auth: Option<(String, String)>) -> io::Result<RegistryHandle> {
    let state = match &data {
        Some(path) => State::load(path)?,
        None => State::default(),
    };
    // Bound here, not by glommio (which sets SO_REUSEPORT), so that a busy
    // address is an error at once.
    let listener = TcpListener::bind(listen).map_err(|e| {
        let hint = "pick another --listen address (port 0: any free port)";
        io::Error::new(e.kind(), format!("schema registry cannot listen on {listen}: {e}; {hint}"))
    })?;
    let addr = listener.local_addr()?;
    let auth = basic_auth.map(|(user, password)| format!("{user}:{password}"));
    let api = Api::new(state, data, auth);
    let (stop_tx, stop_rx) = flume::bounded::<()>(1);
    let thread = LocalExecutorBuilder::new(Placement::Unbound)
        .name("schema-registry")
        .io_memory(IO_MEMORY)
        .spawn(move || serve(listener, api, stop_rx))
        .map_err(|e| io::Error::other(format!("schema registry cannot start its executor thread: {e}")))?;
    tracing::debug!(%addr, "schema registry started");
    Ok(RegistryHandle { addr, stop: Some(stop_tx), thread: Some(thread) })
}

/// Serves in the foreground until the process ends (the CLI command).
pub fn run(listen: &str, data: Option<PathBuf>) -> io::Result<()> {
    let mut handle = spawn(listen, data, None)?;
    eprintln!("schema registry listening on http://{}", handle.addr);
    match handle.thread.take().map(glommio::ExecutorJoinHandle::join) {
        Some(Err(_)) => Err(io::Error::other("the schema registry's executor thread died; see the log above")),
        _ => Ok(()),
    }
}

/// The executor's main task: accepts until `stop` closes, then ends every
/// connection and returns.
async fn serve(listener: TcpListener, api: Api, stop: flume::Receiver<()>) {
    let fd = listener.into_raw_fd();
    // SAFETY: the descriptor comes from a bound, listening socket we own.
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(fd) };
    let limits = Limits {
        header_bytes: MAX_HEAD,
        body_bytes: MAX_BODY,
        idle_timeout_ms: IDLE.as_millis() as u64,
        ..Limits::default()
    };
    let registry = Rc::new(Registry { api, limits, stopping: Cell::new(false), open: Cell::new(0) });
    let stopped = async {
        let _ = stop.recv_async().await;
    };
    futures_lite::future::or(accept_loop(&listener, &registry, &stop), stopped).await;
    // An accept in flight in io_uring keeps the socket listening after its
    // descriptor is closed; shutting it down stops it now.
    // SAFETY: `fd` is the listener's descriptor, still open (dropped below).
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    drop(listener);
    registry.stopping.set(true);
    let deadline = Instant::now() + CLOSE_WAIT;
    while registry.open.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

async fn accept_loop(listener: &glommio::net::TcpListener, registry: &Rc<Registry>, stop: &flume::Receiver<()>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let (registry, stop) = (Rc::clone(registry), stop.clone());
                registry.open.set(registry.open.get() + 1);
                glommio::spawn_local(async move {
                    serve_until_stopped(stream, &registry, &stop).await;
                    registry.open.set(registry.open.get() - 1);
                })
                .detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "schema registry cannot accept a connection; retrying in 10 ms");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serves one connection until it ends or the registry stops; then the
/// socket is shut down at once (a read in flight in io_uring would otherwise
/// keep it open after the descriptor is closed).
async fn serve_until_stopped(stream: glommio::net::TcpStream, registry: &Registry, stop: &flume::Receiver<()>) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(registry.limits.idle_timeout()));
    let mut stream = TimedStream { stream, deadline: Registration::new() };
    let served = async {
        connection::serve(&mut stream, registry).await;
        false
    };
    let stopped = async {
        let _ = stop.recv_async().await;
        true
    };
    if futures_lite::future::or(served, stopped).await {
        let _ = stream.stream.shutdown(std::net::Shutdown::Both).await;
    }
}

/// The API as an HTTP handler, with the executor's bookkeeping.
struct Registry {
    api: Api,
    limits: Limits,
    stopping: Cell<bool>,
    /// Connections still open; a stopping registry waits for them.
    open: Cell<usize>,
}

impl Handler for Registry {
    type Answer = u16;

    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn draining(&self) -> bool {
        self.stopping.get()
    }

    fn precheck(&self, _: &HttpRequest<'_>, _: &mut ResponseWriter<'_>) -> Option<u16> {
        None
    }

    async fn handle(&self, req: &HttpRequest<'_>, res: &mut ResponseWriter<'_>) -> u16 {
        let reply = self.reply(req);
        let framing = res.framing();
        let out = res.buf();
        response::status_line(out, reply.status);
        let mut headers: Vec<(&str, &[u8])> = vec![("Content-Type", api::CONTENT_TYPE.as_bytes())];
        if reply.status == 401 {
            headers.push(("WWW-Authenticate", b"Basic realm=\"schema-registry\""));
        }
        response::headers(out, &headers);
        response::finish(out, framing, Some(&reply.body));
        reply.status
    }

    fn record(&self, req: &HttpRequest<'_>, status: u16, elapsed: Duration) {
        tracing::debug!(
            method = req.method.as_str(),
            target = %String::from_utf8_lossy(req.target),
            status,
            ?elapsed,
            "schema registry request"
        );
    }
}

impl Registry {
    /// The registry's request for an HTTP request, answered.
    fn reply(&self, req: &HttpRequest<'_>) -> Reply {
        let Ok(content_type) = req.content_type.map(std::str::from_utf8).transpose() else {
            return api::error(400, 400, "Malformed HTTP request: the Content-Type header is not UTF-8");
        };
        let request = Request {
            method: req.method,
            target: req.target,
            content_type: content_type.map(str::trim),
            authorization: req.authorization.and_then(|a| std::str::from_utf8(a).ok()),
            body: req.body,
        };
        answer_safely(&self.api, &request)
    }
}

/// The API's answer; a panic (a bug, perhaps in a schema parser) becomes a
/// 500 for this request only: changes apply to a copy of the state, so the
/// state is untouched and the connection carries on.
fn answer_safely(api: &Api, request: &Request) -> Reply {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| api.answer(request))).unwrap_or_else(|_| {
        tracing::error!("schema registry request handler panicked; answered 500");
        api::error(500, 50001, "Internal error in the schema registry; see its log")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::{json, Value};
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::path::PathBuf;

    const CONTENT_TYPE: &str = api::CONTENT_TYPE;

    const SCHEMA: &str = r#"{"type":"record","name":"T","namespace":"t","fields":[{"name":"a","type":"string"}]}"#;
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
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            Raw { stream, buf: Vec::new() }
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
                        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect();
                    let status = response.code.unwrap();
                    let body_len: usize =
                        headers.iter().find(|(n, _)| n == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
                    if self.buf.len() >= len + body_len {
                        let body = String::from_utf8(self.buf[len..len + body_len].to_vec()).unwrap();
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
            assert!(headers.contains(&("content-type".into(), CONTENT_TYPE.into())), "{headers:?}");
            (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
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
    fn subjects_versions_and_ids_follow_confluent() {
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        let mut c = Raw::connect(reg.addr); // one keep-alive connection throughout
        assert_eq!(c.call("GET", "/subjects", None), (200, json!([])));
        assert_eq!(c.call("POST", "/subjects/t-value/versions", schema_body(SCHEMA)), (200, json!({ "id": 1 })));
        assert_eq!(c.call("POST", "/subjects/t-value/versions", schema_body(SCHEMA)), (200, json!({ "id": 1 })));
        let typed = json!({ "schema": SCHEMA2, "schemaType": "AVRO", "references": [], "metadata": null });
        assert_eq!(
            c.call("POST", "/subjects/t-value/versions?normalize=false", Some(typed)),
            (200, json!({ "id": 2 }))
        );
        assert_eq!(c.call("POST", "/subjects/u-value/versions", schema_body(SCHEMA)), (200, json!({ "id": 1 })));
        assert_eq!(c.call("GET", "/subjects", None), (200, json!(["t-value", "u-value"])));
        assert_eq!(c.call("GET", "/subjects/t-value/versions", None), (200, json!([1, 2])));
        let v2 = json!({ "subject": "t-value", "version": 2, "id": 2, "schema": SCHEMA2 });
        for v in ["2", "latest", "-1"] {
            assert_eq!(c.call("GET", &format!("/subjects/t-value/versions/{v}"), None), (200, v2.clone()));
        }
        let raw: Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(c.call("GET", "/subjects/t-value/versions/1/schema", None), (200, raw.clone()));
        assert_eq!(c.call("GET", "/schemas/ids/1", None), (200, json!({ "schema": SCHEMA })));
        assert_eq!(c.call("GET", "/schemas/ids/1/schema", None), (200, raw));
        assert_eq!(
            c.call("GET", "/schemas/ids/1/versions", None),
            (200, json!([{ "subject": "t-value", "version": 1 }, { "subject": "u-value", "version": 1 }]))
        );
        assert_eq!(c.call("GET", "/schemas/ids/1/subjects", None), (200, json!(["t-value", "u-value"])));
        assert_eq!(c.call("GET", "/schemas/types", None), (200, json!(["JSON", "PROTOBUF", "AVRO"])));
        let found = json!({ "subject": "t-value", "id": 1, "version": 1, "schema": SCHEMA });
        assert_eq!(
            c.call("POST", "/subjects/t-value?normalize=false&deleted=false", schema_body(SCHEMA)),
            (200, found)
        );
        assert_eq!(c.call("GET", "/config", None), (200, json!({ "compatibilityLevel": "BACKWARD" })));
        assert_eq!(
            c.call("PUT", "/config", Some(json!({ "compatibility": "FULL" }))),
            (200, json!({ "compatibility": "FULL" }))
        );
        assert_eq!(
            c.call("PUT", "/config/t-value", Some(json!({ "compatibility": "none" }))),
            (200, json!({ "compatibility": "NONE" }))
        );
        assert_eq!(c.call("DELETE", "/subjects/u-value", None), (200, json!([1])));
        assert_eq!(c.call("GET", "/subjects", None), (200, json!(["t-value"])));
        assert_eq!(c.call("GET", "/schemas/ids/1", None), (200, json!({ "schema": SCHEMA })), "IDs outlive subjects");
    }

    #[test]
    fn errors_use_confluent_codes_and_bodies() {
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        let mut c = Raw::connect(reg.addr);
        c.call("POST", "/subjects/t-value/versions", schema_body(SCHEMA));
        assert_eq!(
            c.call("GET", "/schemas/ids/7", None),
            (404, json!({ "error_code": 40403, "message": "Schema 7 not found" }))
        );
        assert_eq!(code(c.call("GET", "/schemas/ids/7/versions", None)), (404, json!(40403)));
        assert_eq!(
            c.call("GET", "/subjects/nope/versions", None),
            (404, json!({ "error_code": 40401, "message": "Subject 'nope' not found." }))
        );
        assert_eq!(code(c.call("GET", "/subjects/nope/versions/1", None)), (404, json!(40401)));
        assert_eq!(code(c.call("DELETE", "/subjects/nope", None)), (404, json!(40401)));
        assert_eq!(code(c.call("POST", "/subjects/nope", schema_body(SCHEMA))), (404, json!(40401)));
        assert_eq!(code(c.call("POST", "/subjects/t-value", schema_body(SCHEMA2))), (404, json!(40403)));
        assert_eq!(code(c.call("GET", "/subjects/t-value/versions/7", None)), (404, json!(40402)));
        assert_eq!(code(c.call("GET", "/subjects/t-value/versions/0", None)), (422, json!(42202)));
        assert_eq!(code(c.call("GET", "/subjects/t-value/versions/x", None)), (422, json!(42202)));
        let (status, body) = c.call("POST", "/subjects/x/versions", schema_body("{bad"));
        assert_eq!((status, &body["error_code"]), (422, &json!(42201)));
        assert!(body["message"].as_str().unwrap().starts_with("Invalid schema"), "{body}");
        assert_eq!(
            code(c.call("POST", "/subjects/x/versions", Some(json!({ "schema": "{}", "schemaType": "PROTOBUF" })))),
            (422, json!(42201))
        );
        let refs = json!({ "schema": SCHEMA, "references": [{ "name": "a", "subject": "b", "version": 1 }] });
        assert_eq!(code(c.call("POST", "/subjects/x/versions", Some(refs))), (422, json!(42201)));
        assert_eq!(code(c.call("POST", "/subjects/x/versions", Some(json!({ "nothing": 1 })))), (422, json!(42201)));
        assert_eq!(code(c.call("POST", "/subjects/x/versions", Some(json!({ "schema": 5 })))), (422, json!(422)));
        assert_eq!(code(c.call("PUT", "/config", Some(json!({ "compatibility": "SOMETIMES" })))), (422, json!(42203)));
        assert_eq!(
            c.call("GET", "/nowhere", None),
            (404, json!({ "error_code": 404, "message": "HTTP 404 Not Found" }))
        );
        assert_eq!(code(c.call("GET", "/schemas/ids/abc", None)), (404, json!(404)));
        assert_eq!(code(c.call("PATCH", "/subjects", None)), (405, json!(405)));
        assert_eq!(c.call("GET", "/subjects", None), (200, json!(["t-value"])), "nothing was added by the failures");
    }

    #[test]
    fn subject_names_are_percent_decoded() {
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        let mut c = Raw::connect(reg.addr);
        assert_eq!(c.call("POST", "/subjects/a%2Fb%20%C3%A9/versions", schema_body(SCHEMA)), (200, json!({ "id": 1 })));
        assert_eq!(c.call("GET", "/subjects", None), (200, json!(["a/b é"])));
        assert_eq!(c.call("GET", "/subjects/a%2fb%20%c3%a9/versions", None), (200, json!([1])));
        assert_eq!(code(c.call("GET", "/subjects/a%zz/versions", None)), (400, json!(400)));
        assert_eq!(code(c.call("GET", "/subjects/%FF/versions", None)), (400, json!(400)));
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
        for (content_type, status) in
            types.iter().map(|t| (Some(*t), 200)).chain([(None, 200), (Some("text/plain"), 415)])
        {
            let mut c = Raw::connect(reg.addr);
            let header = content_type.map(|t| format!("Content-Type: {t}\r\n")).unwrap_or_default();
            c.send(
                format!(
                    "POST /subjects/s/versions HTTP/1.1\r\nHost: x\r\n\
                 Accept: text/html\r\n{header}Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            assert_eq!(c.response().unwrap().0, status, "{content_type:?}");
        }
    }

    #[test]
    fn keep_alive_pipelining_expect_continue_and_close() {
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        let mut c = Raw::connect(reg.addr);
        c.send(b"GET /schemas/types HTTP/1.1\r\nHost: x\r\n\r\nGET /subjects HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(c.response().unwrap().2, r#"["JSON","PROTOBUF","AVRO"]"#);
        assert_eq!(c.response().unwrap().2, "[]");
        let body = json!({ "schema": SCHEMA }).to_string();
        c.send(
            format!(
                "POST /subjects/s/versions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        let mut interim = [0u8; 25];
        c.stream.read_exact(&mut interim).unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        c.send(body.as_bytes());
        assert_eq!(c.response().unwrap().2, r#"{"id":1}"#);
        c.send(b"GET /subjects HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
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
    fn chunked_bodies_are_read() {
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        let mut c = Raw::connect(reg.addr);
        let body = json!({ "schema": SCHEMA }).to_string();
        let (a, b) = body.split_at(10);
        let chunked = format!("{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len());
        c.send(
            format!(
                "POST /subjects/s/versions HTTP/1.1\r\nHost: x\r\n\
                 Transfer-Encoding: chunked\r\n\r\n{chunked}"
            )
            .as_bytes(),
        );
        assert_eq!(c.response().unwrap().2, r#"{"id":1}"#);
        assert_eq!(c.call("GET", "/subjects", None), (200, json!(["s"])), "the connection carries on");
    }

    #[test]
    fn malformed_requests_get_400_and_the_server_carries_on() {
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        // (request, status, answered by the registry rather than refused by the connection)
        let cases: [(&[u8], u16, bool); 8] = [
            // "ALL" is not a well-formed HTTP version (that would be 505).
            (b"NOT HTTP AT ALL\r\n\r\n", 400, false),
            (b"GET /subjects HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n", 400, false),
            (b"GET /subjects HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, false),
            (b"GET /subjects HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400, false),
            // obs-text is legal in a header value; in Content-Type it cannot be read.
            (
                b"POST /subjects/s/versions HTTP/1.1\r\nHost: x\r\nContent-Type: \xff\r\nContent-Length: 2\r\n\r\n{}",
                400,
                true,
            ),
            (b"POST /subjects/s/versions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{bad}", 400, true),
            (b"POST /subjects/s/versions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, false),
            (b"POST /subjects/s/versions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 413, false),
        ];
        for (request, status, by_registry) in cases {
            let mut c = Raw::connect(reg.addr);
            c.send(request);
            let (got, _, body) =
                c.response().unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(request)));
            assert_eq!(got, status, "{:?}: {body}", String::from_utf8_lossy(request));
            let body: Value = serde_json::from_str(&body).unwrap();
            if by_registry {
                assert_eq!(body["error_code"], json!(status), "the registry's own refusal: {body}");
            } else {
                // Refused by the connection before routing: its standard JSON error.
                assert!(body["error"].is_string(), "{body}");
            }
        }
        let mut c = Raw::connect(reg.addr);
        c.send(b"GET /subjects HTTP/1.1\r\n\r\n");
        assert_eq!(c.response().unwrap().0, 400, "HTTP/1.1 without Host");
        let mut c = Raw::connect(reg.addr);
        c.send(format!("GET /subjects HTTP/1.1\r\nHost: x\r\nX: {}\r\n", "a".repeat(MAX_HEAD)).as_bytes());
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
        assert_eq!(Raw::connect(reg.addr).call("GET", "/subjects", None), (200, json!([])), "still serving");
    }

    #[test]
    fn basic_auth_is_enforced_when_configured() {
        let reg = spawn("127.0.0.1:0", None, Some(("ann".into(), "pw".into()))).unwrap();
        let mut c = Raw::connect(reg.addr);
        c.send(b"GET /subjects HTTP/1.1\r\nHost: x\r\n\r\n");
        let (status, headers, body) = c.response().unwrap();
        assert_eq!((status, body.as_str()), (401, r#"{"error_code":401,"message":"Unauthorized"}"#));
        assert!(headers.iter().any(|(n, _)| n == "www-authenticate"));
        let wrong = base64::engine::general_purpose::STANDARD.encode("ann:nope");
        c.send(format!("GET /subjects HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {wrong}\r\n\r\n").as_bytes());
        assert_eq!(c.response().unwrap().0, 401);
        let right = base64::engine::general_purpose::STANDARD.encode("ann:pw");
        c.send(format!("GET /subjects HTTP/1.1\r\nHost: x\r\nAuthorization: basic {right}\r\n\r\n").as_bytes());
        assert_eq!(c.response().unwrap().0, 200);
    }

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("push-cache-registry-{}-{name}", std::process::id()));
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
        let reg = spawn(&addr.to_string(), Some(path.clone()), None).expect("the address is free again after stop()");
        let mut c = Raw::connect(reg.addr);
        assert_eq!(c.call("GET", "/schemas/ids/2", None), (200, json!({ "schema": SCHEMA2 })));
        assert_eq!(c.call("GET", "/subjects", None), (200, json!(["t-value"])));
        assert_eq!(c.call("GET", "/subjects/t-value/versions", None), (200, json!([1, 2])));
        assert_eq!(c.call("POST", "/subjects/v-value/versions", schema_body(SCHEMA2)), (200, json!({ "id": 2 })));
        let third = r#"{"type":"record","name":"U","fields":[]}"#;
        assert_eq!(c.call("POST", "/subjects/v-value/versions", schema_body(third)), (200, json!({ "id": 3 })));
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
                    fails && e.kind() == io::ErrorKind::InvalidData && e.to_string().contains("fix or delete"),
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
        let e = spawn(&reg.addr.to_string(), None, None).err().expect("the address is taken");
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
        assert!(TcpStream::connect(addr).is_err(), "nothing listens any more");
        assert!(open.closed(), "open connections end too");
    }

    #[test]
    fn client_and_server_agree() {
        use crate::kafka::registry_client::{RegistryClient, RegistryError};
        let reg = spawn("127.0.0.1:0", None, None).unwrap();
        let client = RegistryClient::new(&format!("http://{}", reg.addr)).unwrap();
        let id = client.register("t-value", SCHEMA).unwrap();
        assert_eq!(client.schema_text(id).unwrap(), SCHEMA);
        assert!(matches!(client.schema_text(id + 1), Err(RegistryError::NotFound { .. })));
    }

    #[test]
    fn confluent_python_client_works_unchanged() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/registry_compat.py");
        let probe = std::process::Command::new("python3")
            .args([
                "-c",
                "import confluent_kafka.schema_registry.avro, confluent_kafka.schema_registry.protobuf, \
                          confluent_kafka.schema_registry.json_schema, grpc_tools.protoc",
            ])
            .output();
        if !probe.is_ok_and(|o| o.status.success()) {
            eprintln!(
                "skipped: python3 with confluent_kafka and grpc_tools is not installed \
                 (scripts/install-deps.sh installs them)"
            );
            return;
        }
        let plain = spawn("127.0.0.1:0", None, None).unwrap();
        let guarded = spawn("127.0.0.1:0", None, Some(("ann".into(), "p@ss".into()))).unwrap();
        for url in [format!("http://{}", plain.addr), format!("http://ann:p%40ss@{}", guarded.addr)] {
            let out = std::process::Command::new("python3").arg(script).arg(&url).output().unwrap();
            let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "registry_compat.py {url} failed:\n{text}");
            eprint!("{text}");
        }
    }
}
