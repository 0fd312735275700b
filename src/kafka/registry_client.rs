//! A blocking client for Confluent Schema Registry's REST API, used from the
//! Kafka consumer thread to fetch writer schemas by ID and by
//! tools to register schemas.
//!
//! Why it looks like this:
//! - It speaks only Confluent's documented v1 API (`GET /schemas/ids/{id}`,
//!   `POST /subjects/{subject}/versions`, the `application/vnd.schemaregistry`
//!   media types and `{"error_code","message"}` error bodies), so it works
//!   unchanged against a real Confluent registry and the bundled one.
//! - It is blocking: the consumer thread is a plain thread that must wait for
//!   the schema anyway; no async runtime is needed around it.
//! - Errors say what the caller should do. [`RegistryError::is_retryable`]
//!   separates "the registry may answer later" (connect errors, timeouts, 5xx,
//!   429: wait with backoff, never skip a record) from definite answers (the ID
//!   is unknown: skip the record; the request is refused: fix the setup).
//! - Credentials in the URL (`http://user:password@host`) are removed from it
//!   and sent as HTTP basic auth, as Confluent's own clients do, so they never
//!   show up in error messages or logs.

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// What we accept back, in Confluent's order of preference.
pub const ACCEPT: &str =
    "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json, application/json";
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
const TIMEOUT: Duration = Duration::from_secs(5);
/// Confluent's error codes for "subject not found", "version not found"
/// and "schema not found".
const SUBJECT_NOT_FOUND: i64 = 40401;
const VERSION_NOT_FOUND: i64 = 40402;
const SCHEMA_NOT_FOUND: i64 = 40403;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "schema ID {id} is not in the schema registry: the record was written with a schema registered \
         in another registry, or kafka.schema_registry_url points at the wrong one"
    )]
    NotFound { id: u32 },
    #[error("schema registry unreachable: {0}; check that it is running and that kafka.schema_registry_url is right (this is retried)")]
    Unreachable(String),
    #[error("schema registry refused the request with HTTP {status}: {message}; {hint}", hint = status_hint(*.status))]
    Rejected { status: u16, message: String },
    #[error("bad schema registry URL `{0}`: expected http(s)://[user:password@]host[:port][/base/path]")]
    BadUrl(String),
}

impl RegistryError {
    /// True when the registry may answer later (connect errors, timeouts,
    /// 5xx, 429): wait and retry instead of giving up on the record.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RegistryError::Unreachable(_))
    }
}

/// What to check for a refused request, by HTTP status.
fn status_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => "check the user:password in the schema registry URL",
        404 => "check the base path of the schema registry URL",
        409 => "the schema is not compatible with the subject's earlier versions",
        422 => "the schema is not valid Avro",
        _ => "see the schema registry's logs",
    }
}

/// A schema registry at one base URL. `Send + Sync`; cheap to share.
pub struct RegistryClient {
    http: reqwest::blocking::Client,
    /// Base URL without credentials or trailing slash.
    base: String,
    /// `Basic ...` header value, when the URL carried credentials.
    auth: Option<String>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient").field("base", &self.base).field("basic_auth", &self.auth.is_some()).finish()
    }
}

impl RegistryClient {
    /// A client for `url` (`http(s)://[user:password@]host[:port][/base/path]`).
    /// Credentials are stripped from the URL and sent as HTTP basic auth.
    /// Every request times out after 5 s.
    pub fn new(url: &str) -> Result<RegistryClient, RegistryError> {
        let (base, auth) = split_credentials(url)?;
        let http = reqwest::blocking::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build()
            .map_err(|e| RegistryError::Unreachable(format!("cannot set up the HTTP client: {e}")))?;
        Ok(RegistryClient { http, base, auth })
    }

    /// The schema text (the `schema` string) registered under global `id`.
    pub fn schema_text(&self, id: u32) -> Result<String, RegistryError> {
        self.schema_by_id(id).map(|s| s.schema)
    }

    /// The schema registered under global `id`, with its type and references.
    pub fn schema_by_id(&self, id: u32) -> Result<Registered, RegistryError> {
        let answer = self.send(self.http.get(format!("{}/schemas/ids/{id}", self.base)))?;
        match answer.status {
            200 => answer.json::<Registered>(),
            404 if answer.error_code() == Some(SCHEMA_NOT_FOUND) => Err(RegistryError::NotFound { id }),
            _ => Err(answer.rejected()),
        }
    }

    /// The newest version of `subject`: its global ID and the schema with
    /// its type and references; `None` when the registry has no such subject.
    pub fn latest(&self, subject: &str) -> Result<Option<(u32, Registered)>, RegistryError> {
        #[derive(Deserialize)]
        struct Version {
            id: u32,
            #[serde(flatten)]
            schema: Registered,
        }
        let subject = crate::http::encode_path_segment(subject);
        let answer = self.send(self.http.get(format!("{}/subjects/{subject}/versions/latest", self.base)))?;
        match answer.status {
            200 => answer.json::<Version>().map(|v| Some((v.id, v.schema))),
            404 if matches!(answer.error_code(), Some(SUBJECT_NOT_FOUND | VERSION_NOT_FOUND)) => Ok(None),
            _ => Err(answer.rejected()),
        }
    }

    /// Version `version` of `subject` (how a schema names its references).
    pub fn schema_by_version(&self, subject: &str, version: i64) -> Result<Registered, RegistryError> {
        let url = format!("{}/subjects/{}/versions/{version}", self.base, crate::http::encode_path_segment(subject));
        let answer = self.send(self.http.get(url))?;
        match answer.status {
            200 => answer.json::<Registered>(),
            _ => Err(answer.rejected()),
        }
    }

    /// Registers `schema_json` (Avro) under `subject`; returns its global ID.
    /// Registering the same schema again returns the same ID.
    pub fn register(&self, subject: &str, schema_json: &str) -> Result<u32, RegistryError> {
        #[derive(Deserialize)]
        struct Registered {
            id: u32,
        }
        let url = format!("{}/subjects/{}/versions", self.base, crate::http::encode_path_segment(subject));
        let body = serde_json::json!({ "schema": schema_json }).to_string();
        let answer = self.send(self.http.post(url).header("Content-Type", CONTENT_TYPE).body(body))?;
        match answer.status {
            200 => answer.json::<Registered>().map(|r| r.id),
            _ => Err(answer.rejected()),
        }
    }

    /// Sends with our Accept and auth headers and reads the whole answer.
    /// Transport failures, 5xx and 429 come back as `Unreachable`.
    fn send(&self, request: reqwest::blocking::RequestBuilder) -> Result<Answer, RegistryError> {
        let mut request = request.header("Accept", ACCEPT);
        if let Some(auth) = &self.auth {
            request = request.header("Authorization", auth);
        }
        let response = request.send().map_err(|e| RegistryError::Unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response.text().map_err(|e| RegistryError::Unreachable(format!("reading the answer: {e}")))?;
        let answer = Answer { status, body };
        if status >= 500 || status == 429 {
            return Err(RegistryError::Unreachable(format!("HTTP {status} from {}: {}", self.base, answer.message())));
        }
        Ok(answer)
    }
}

/// A schema as the registry serves it (`schemaType` absent means Avro).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    pub schema: String,
    #[serde(default)]
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Vec<Reference>,
}

/// A schema's reference to another: the name it is known by inside the
/// schema (a Protobuf import path, an Avro type name), and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Reference {
    pub name: String,
    pub subject: String,
    pub version: i64,
}

/// A complete HTTP answer from the registry.
struct Answer {
    status: u16,
    body: String,
}

/// Confluent's error body.
#[derive(Deserialize)]
struct ErrorBody {
    error_code: Option<i64>,
    message: Option<String>,
}

impl Answer {
    fn json<T: DeserializeOwned>(&self) -> Result<T, RegistryError> {
        serde_json::from_str(&self.body).map_err(|e| RegistryError::Rejected {
            status: self.status,
            message: format!("unexpected answer ({e}): {}", truncate(&self.body)),
        })
    }

    fn error_code(&self) -> Option<i64> {
        serde_json::from_str::<ErrorBody>(&self.body).ok()?.error_code
    }

    /// The registry's own words: Confluent's message and code, or the body.
    fn message(&self) -> String {
        match serde_json::from_str::<ErrorBody>(&self.body) {
            Ok(ErrorBody { error_code: Some(code), message: Some(m) }) => format!("{m} (error code {code})"),
            Ok(ErrorBody { message: Some(m), .. }) => m,
            _ => truncate(&self.body),
        }
    }

    fn rejected(&self) -> RegistryError {
        RegistryError::Rejected { status: self.status, message: self.message() }
    }
}

fn truncate(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

/// `http://user:pass@host/p/` -> (`http://host/p`, `Some("Basic ...")`).
fn split_credentials(url: &str) -> Result<(String, Option<String>), RegistryError> {
    let bad = || RegistryError::BadUrl(redact(url));
    let mut parsed = reqwest::Url::parse(url.trim()).map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    let auth = basic_auth(parsed.username(), parsed.password());
    parsed.set_username("").map_err(|_| bad())?;
    parsed.set_password(None).map_err(|_| bad())?;
    parsed.set_query(None);
    parsed.set_fragment(None);
    Ok((parsed.as_str().trim_end_matches('/').to_string(), auth))
}

/// The `Authorization` value for percent-encoded URL credentials.
fn basic_auth(user: &str, password: Option<&str>) -> Option<String> {
    if user.is_empty() && password.is_none() {
        return None;
    }
    let pair = format!("{}:{}", percent_decode(user), percent_decode(password.unwrap_or("")));
    Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))
}

/// Decodes `%XX`; anything else (including a stray `%`) stays as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL with any `user:password@` replaced by `***@`, for messages.
fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    match url[start..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..start], &url[start + at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::server;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener};
    use std::sync::mpsc;

    const SCHEMA: &str = r#"{"type":"record","name":"T","namespace":"t","fields":[{"name":"a","type":"string"}]}"#;

    #[test]
    fn credentials_are_taken_out_of_the_url() {
        let (base, auth) = split_credentials("http://u%40x:p%3Ass@host:8081/base/").unwrap();
        assert_eq!(base, "http://host:8081/base");
        let expected = base64::engine::general_purpose::STANDARD.encode("u@x:p:ss");
        assert_eq!(auth.unwrap(), format!("Basic {expected}"));
        assert_eq!(split_credentials("https://h").unwrap(), ("https://h".to_string(), None));
        assert_eq!(
            split_credentials("http://key@h:1/").unwrap().1.unwrap(),
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("key:"))
        );
    }

    #[test]
    fn bad_urls_are_refused_without_showing_the_password() {
        for url in ["ftp://h", "http://", "host:8081", "", "http://u:secret@"] {
            assert!(matches!(RegistryClient::new(url), Err(RegistryError::BadUrl(_))), "{url}");
        }
        let e = RegistryClient::new("http://u:secret@").unwrap_err().to_string();
        assert!(!e.contains("secret") && e.contains("***@"), "{e}");
        assert_eq!(redact("http://a:b@h/x@y"), "http://***@h/x@y");
    }

    #[test]
    fn subjects_are_one_encoded_path_segment() {
        assert_eq!(crate::http::encode_path_segment("orders-value"), "orders-value");
        assert_eq!(crate::http::encode_path_segment("a/b c%"), "a%2Fb%20c%25");
        assert_eq!(percent_decode("a%2Fb%zz%"), "a/b%zz%");
    }

    #[test]
    fn only_unreachable_is_retryable_and_messages_say_what_to_do() {
        assert!(RegistryError::Unreachable("x".into()).is_retryable());
        assert!(!RegistryError::NotFound { id: 1 }.is_retryable());
        assert!(!RegistryError::Rejected { status: 401, message: "m".into() }.is_retryable());
        assert!(!RegistryError::BadUrl("u".into()).is_retryable());
        let e = RegistryError::Rejected { status: 401, message: "Unauthorized".into() }.to_string();
        assert!(e.contains("user:password"), "{e}");
    }

    #[test]
    fn client_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<RegistryClient>();
    }

    #[test]
    fn registers_and_fetches_against_the_bundled_registry() {
        let reg = server::spawn("127.0.0.1:0", None, None).unwrap();
        let client = RegistryClient::new(&format!("http://{}", reg.addr)).unwrap();
        let id = client.register("t-value", SCHEMA).unwrap();
        assert_eq!(id, 1, "IDs start at 1");
        assert_eq!(client.register("t-value", SCHEMA).unwrap(), id, "same schema, same ID");
        assert_eq!(client.register("other/value", SCHEMA).unwrap(), id, "IDs are global");
        assert_eq!(client.schema_text(id).unwrap(), SCHEMA);
        assert!(matches!(client.schema_text(999), Err(RegistryError::NotFound { id: 999 })));
        let bad = client.register("t-value", "{not a schema").unwrap_err();
        assert!(matches!(&bad, RegistryError::Rejected { status: 422, message } if message.contains("42201")), "{bad}");
    }

    #[test]
    fn a_wrong_base_path_is_rejected_not_not_found() {
        let reg = server::spawn("127.0.0.1:0", None, None).unwrap();
        let client = RegistryClient::new(&format!("http://{}/wrong/path", reg.addr)).unwrap();
        let e = client.schema_text(1).unwrap_err();
        assert!(matches!(&e, RegistryError::Rejected { status: 404, .. }), "{e}");
    }

    #[test]
    fn basic_auth_from_the_url_is_sent() {
        let reg = server::spawn("127.0.0.1:0", None, Some(("ann".into(), "p@ss:w".into()))).unwrap();
        let without = RegistryClient::new(&format!("http://{}", reg.addr)).unwrap();
        let e = without.register("s", SCHEMA).unwrap_err();
        assert!(matches!(&e, RegistryError::Rejected { status: 401, .. }), "{e}");
        assert!(!e.is_retryable());
        let with = RegistryClient::new(&format!("http://ann:p%40ss%3Aw@{}", reg.addr)).unwrap();
        let id = with.register("s", SCHEMA).unwrap();
        assert_eq!(with.schema_text(id).unwrap(), SCHEMA);
    }

    #[test]
    fn unreachable_registry_is_retryable() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = RegistryClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let e = client.schema_text(1).unwrap_err();
        assert!(matches!(e, RegistryError::Unreachable(_)) && e.is_retryable(), "{e}");
    }

    /// Answers one request with `status` and `body`; hands back the request head.
    fn canned(status: &'static str, body: &'static str) -> (SocketAddr, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = tx.send(read_request(&mut s));
            let head = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(head.as_bytes()).and_then(|()| s.write_all(body.as_bytes()));
        });
        (addr, rx)
    }

    /// One whole request (head and Content-Length body) as text.
    fn read_request(s: &mut std::net::TcpStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end].lines().find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
                });
                if buf.len() >= end + 4 + length.unwrap_or(0) {
                    return text;
                }
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return text,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    #[test]
    fn server_errors_and_throttling_are_retryable() {
        for status in ["500 Internal Server Error", "503 Service Unavailable", "429 Too Many Requests"] {
            let (addr, _) = canned(status, r#"{"error_code":50001,"message":"backend down"}"#);
            let e = RegistryClient::new(&format!("http://{addr}")).unwrap().schema_text(1).unwrap_err();
            assert!(e.is_retryable() && e.to_string().contains("backend down"), "{status}: {e}");
        }
    }

    #[test]
    fn confluent_not_found_body_means_not_found() {
        let (addr, head) = canned("404 Not Found", r#"{"error_code":40403,"message":"Schema not found"}"#);
        let e = RegistryClient::new(&format!("http://u:pw@{addr}")).unwrap().schema_text(7).unwrap_err();
        assert!(matches!(e, RegistryError::NotFound { id: 7 }), "{e}");
        let head = head.recv().unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /schemas/ids/7 http/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("accept: {ACCEPT}\r\n").to_ascii_lowercase()), "{head}");
        let auth = base64::engine::general_purpose::STANDARD.encode("u:pw").to_ascii_lowercase();
        assert!(head.contains(&format!("authorization: basic {auth}\r\n")), "{head}");
    }

    #[test]
    fn register_posts_to_the_subject_under_the_base_path() {
        let (addr, head) = canned("200 OK", r#"{"id":42}"#);
        let client = RegistryClient::new(&format!("http://{addr}/sr/")).unwrap();
        assert_eq!(client.register("a/b", SCHEMA).unwrap(), 42);
        let request = head.recv().unwrap();
        assert!(request.starts_with("POST /sr/subjects/a%2Fb/versions HTTP/1.1\r\n"), "{request}");
        assert!(
            request.to_ascii_lowercase().contains("content-type: application/vnd.schemaregistry.v1+json\r\n"),
            "{request}"
        );
        let body: serde_json::Value = serde_json::from_str(request.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body, serde_json::json!({ "schema": SCHEMA }));
    }

    #[test]
    fn a_garbled_success_is_rejected() {
        let (addr, _) = canned("200 OK", "<html>proxy</html>");
        let e = RegistryClient::new(&format!("http://{addr}")).unwrap().schema_text(1).unwrap_err();
        assert!(matches!(&e, RegistryError::Rejected { status: 200, message } if message.contains("proxy")), "{e}");
    }

    #[test]
    fn a_registry_that_never_answers_times_out_as_unreachable() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = RegistryClient::new(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let started = std::time::Instant::now();
        let e = client.schema_text(1).unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
        drop(listener);
    }
}
