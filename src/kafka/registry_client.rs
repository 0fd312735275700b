//! A blocking client for Confluent's Schema Registry REST API, used from the
//! consumer thread. It speaks only the documented API (`GET
//! /schemas/ids/{id}`, `POST /subjects/{subject}/versions`, Confluent error
//! bodies), so it works unchanged against a real registry and the local one.

use base64::Engine;
use serde::Deserialize;
use std::time::Duration;

const ACCEPT: &str = "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json, application/json";
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema {id} not found in the registry (was it registered?)")]
    NotFound { id: u32 },
    #[error("schema registry unreachable: {0} (is it running? check kafka.schema_registry_url)")]
    Unreachable(String),
    #[error("schema registry refused the request with {status}: {message}")]
    Rejected { status: u16, message: String },
    #[error("invalid schema registry URL `{0}`: expected http(s)://[user:password@]host:port[/path]")]
    BadUrl(String),
}

impl RegistryError {
    /// Worth retrying: the registry may answer later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RegistryError::Unreachable(_))
    }
}

/// Confluent's error body.
#[derive(Deserialize)]
struct ErrorBody {
    error_code: Option<i64>,
    message: Option<String>,
}

pub struct RegistryClient {
    http: reqwest::blocking::Client,
    base: String,
    auth: Option<String>,
}

impl RegistryClient {
    /// `url` may carry `user:password@`; they are sent as HTTP basic auth.
    pub fn new(url: &str) -> Result<RegistryClient, RegistryError> {
        let (base, auth) = split_credentials(url)?;
        let http = reqwest::blocking::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build()
            .map_err(|e| RegistryError::Unreachable(e.to_string()))?;
        Ok(RegistryClient { http, base, auth })
    }

    /// The schema text registered under `id`.
    pub fn schema_text(&self, id: u32) -> Result<String, RegistryError> {
        #[derive(Deserialize)]
        struct SchemaById {
            schema: String,
        }
        let resp = self.send(self.http.get(format!("{}/schemas/ids/{id}", self.base)))?;
        match resp.status().as_u16() {
            200 => resp.json::<SchemaById>().map(|s| s.schema).map_err(|e| RegistryError::Rejected { status: 200, message: e.to_string() }),
            404 => Err(RegistryError::NotFound { id }),
            _ => Err(error_of(resp)),
        }
    }

    /// Registers `schema_json` under `subject`; returns its global ID.
    pub fn register(&self, subject: &str, schema_json: &str) -> Result<u32, RegistryError> {
        #[derive(Deserialize)]
        struct Registered {
            id: u32,
        }
        let body = serde_json::json!({ "schema": schema_json }).to_string();
        let url = format!("{}/subjects/{}/versions", self.base, encode_segment(subject));
        let resp = self.send(self.http.post(url).header("Content-Type", CONTENT_TYPE).body(body))?;
        match resp.status().as_u16() {
            200 => resp.json::<Registered>().map(|r| r.id).map_err(|e| RegistryError::Rejected { status: 200, message: e.to_string() }),
            _ => Err(error_of(resp)),
        }
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Result<reqwest::blocking::Response, RegistryError> {
        let mut req = req.header("Accept", ACCEPT);
        if let Some(auth) = &self.auth {
            req = req.header("Authorization", auth);
        }
        let resp = req.send().map_err(|e| RegistryError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        if status >= 500 || status == 429 {
            return Err(RegistryError::Unreachable(format!("HTTP {status}")));
        }
        Ok(resp)
    }
}

fn error_of(resp: reqwest::blocking::Response) -> RegistryError {
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    let message = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(ErrorBody { error_code: Some(code), message: Some(m) }) => format!("{m} (error code {code})"),
        _ => text,
    };
    RegistryError::Rejected { status, message }
}

/// `http://user:pass@host/p` -> (`http://host/p`, `Basic ...`).
fn split_credentials(url: &str) -> Result<(String, Option<String>), RegistryError> {
    let bad = || RegistryError::BadUrl(redact(url));
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() {
        return Err(bad());
    }
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (auth, host) = match authority.rsplit_once('@') {
        Some((creds, host)) => {
            let (user, pass) = creds.split_once(':').unwrap_or((creds, ""));
            let (user, pass) = (percent_decode(user), percent_decode(pass));
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            (Some(format!("Basic {token}")), host)
        }
        None => (None, authority),
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((format!("{scheme}://{host}{}", path.trim_end_matches('/')), auth))
}

fn percent_decode(s: &str) -> String {
    crate::http::request::percent_decode(s.as_bytes(), false).unwrap_or_else(|| s.to_string())
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::server;

    #[test]
    fn credentials_are_split_from_the_url() {
        let (base, auth) = split_credentials("http://u%40x:p%3Ass@host:8081/base/").unwrap();
        assert_eq!(base, "http://host:8081/base");
        let expected = base64::engine::general_purpose::STANDARD.encode("u@x:p:ss");
        assert_eq!(auth.unwrap(), format!("Basic {expected}"));
        assert_eq!(split_credentials("https://h").unwrap(), ("https://h".into(), None));
        assert!(split_credentials("ftp://h").is_err());
        assert!(split_credentials("http://").is_err());
        assert!(!RegistryError::BadUrl(redact("http://u:secret@h")).to_string().contains("secret"));
    }

    const SCHEMA: &str = r#"{"type":"record","name":"T","fields":[{"name":"a","type":"string"}]}"#;

    #[test]
    fn register_fetch_and_not_found_against_the_local_registry() {
        let reg = server::spawn("127.0.0.1:0", None, None).unwrap();
        let client = RegistryClient::new(&format!("http://{}", reg.addr)).unwrap();
        let id = client.register("t-value", SCHEMA).unwrap();
        assert_eq!(client.register("other-value", SCHEMA).unwrap(), id, "same schema, same id");
        let text = client.schema_text(id).unwrap();
        assert_eq!(apache_avro::Schema::parse_str(&text).unwrap(), apache_avro::Schema::parse_str(SCHEMA).unwrap());
        assert!(matches!(client.schema_text(999), Err(RegistryError::NotFound { id: 999 })));
        let bad = client.register("t-value", "{not a schema").unwrap_err();
        assert!(matches!(&bad, RegistryError::Rejected { status: 422, .. }), "{bad}");
    }

    #[test]
    fn basic_auth_from_the_url_is_sent() {
        let reg = server::spawn("127.0.0.1:0", None, Some(("ann".into(), "pw".into()))).unwrap();
        let without = RegistryClient::new(&format!("http://{}", reg.addr)).unwrap();
        assert!(matches!(without.register("s", SCHEMA), Err(RegistryError::Rejected { status: 401, .. })));
        let with = RegistryClient::new(&format!("http://ann:pw@{}", reg.addr)).unwrap();
        let id = with.register("s", SCHEMA).unwrap();
        assert!(with.schema_text(id).is_ok());
    }

    #[test]
    fn unreachable_registry_is_retryable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = RegistryClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let e = client.schema_text(1).unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert!(!RegistryError::NotFound { id: 1 }.is_retryable());
    }
}
