//! The registry's REST API: Confluent's v1 routes, each turning a request
//! into a read or a change of the `State` and the state's answer or error
//! into Confluent's JSON body and error codes.
//!
//! Served: `GET /`, `/schemas/types`, `/schemas/ids/{id}` (`?format=serialized`
//! gives a Protobuf schema as its base64 descriptor), `/schemas/ids/{id}/schema`,
//! `/versions`, `/subjects`; `GET /subjects`; `POST /subjects/{s}` (lookup);
//! `DELETE /subjects/{s}`; `GET`/`POST /subjects/{s}/versions`;
//! `GET`/`DELETE /subjects/{s}/versions/{v}`, `GET .../schema`, `.../referencedby`;
//! `GET`/`PUT /config[/{s}]`; `GET /mode[/{s}]`. Query parameters this
//! registry has no use for (`normalize`, `deleted`, `subject`, paging) are
//! accepted and ignored. Optional HTTP basic auth lets tests prove that
//! clients send credentials.

use super::schema::{self, SchemaType};
use super::state::{Candidate, Reference, RegistryError, State, StoredSchema};
use crate::http::request::{percent_decode, query_pairs, Method};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// Request body types Confluent accepts (octet-stream: what ad hoc clients
/// send when they name none; it is read as JSON).
const REQUEST_TYPES: [&str; 4] =
    [CONTENT_TYPE, "application/vnd.schemaregistry+json", "application/json", "application/octet-stream"];
const COMPATIBILITY_LEVELS: [&str; 7] =
    ["NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"];

/// What the API needs from one HTTP request.
pub struct Request<'a> {
    pub method: Method,
    /// The request target: path and query, or an absolute URL.
    pub target: &'a [u8],
    pub content_type: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
}

/// An answer: status and body (always sent with our content type).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

fn ok(value: Value) -> Reply {
    Reply { status: 200, body: value.to_string().into_bytes() }
}

/// A Confluent error body: `{"error_code": ..., "message": ...}`.
pub fn error(status: u16, code: i64, message: impl AsRef<str>) -> Reply {
    Reply { status, ..ok(json!({ "error_code": code, "message": message.as_ref() })) }
}

impl From<RegistryError> for Reply {
    fn from(e: RegistryError) -> Reply {
        let (status, code) = e.status_and_code();
        error(status, code, e.to_string())
    }
}

fn not_found() -> Reply {
    error(404, 404, "HTTP 404 Not Found")
}

fn method_not_allowed() -> Reply {
    error(405, 405, "HTTP 405 Method Not Allowed")
}

/// Runs the handler registered for `method`, or answers 405.
fn on(method: Method, handlers: &[(Method, &dyn Fn() -> Reply)]) -> Reply {
    handlers.iter().find(|(m, _)| *m == method).map_or_else(method_not_allowed, |(_, handler)| handler())
}

/// The registry's state, where it is saved, and who may call.
pub struct Api {
    state: Mutex<State>,
    data: Option<PathBuf>,
    /// `user:password` every request must carry, if any.
    auth: Option<String>,
}

impl Api {
    pub fn new(state: State, data: Option<PathBuf>, auth: Option<String>) -> Api {
        Api { state: Mutex::new(state), data, auth }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Answers from the state, read-only.
    fn read(&self, answer: impl FnOnce(&State) -> Result<Reply, Reply>) -> Reply {
        answer(&self.state()).unwrap_or_else(|e| e)
    }

    /// Applies `change` to a copy of the state and makes the copy the state
    /// once it is saved (if there is a data file).
    fn change<T>(&self, change: impl FnOnce(&mut State) -> Result<T, RegistryError>) -> Result<T, Reply> {
        let mut state = self.state();
        let mut next = state.clone();
        let out = change(&mut next)?;
        if let Some(path) = &self.data {
            next.save(path).map_err(|e| {
                tracing::error!(path = %path.display(), error = %e, "schema registry cannot save its state");
                let message = format!("Error in the backend data store: cannot write {}: {e}", path.display());
                error(500, 50001, message)
            })?;
        }
        *state = next;
        Ok(out)
    }

    pub fn answer(&self, request: &Request) -> Reply {
        if !self.authorized(request.authorization) {
            return error(401, 401, "Unauthorized");
        }
        if !request.body.is_empty() && !acceptable_body_type(request.content_type) {
            return error(415, 415, "HTTP 415 Unsupported Media Type");
        }
        let (path, query) = split_target(request.target);
        let Some(segments) = path_segments(path) else {
            return error(400, 400, "The request path has bad percent-encoding");
        };
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let serialized = query_pairs(query).any(|(k, v)| k == b"format" && v == b"serialized");
        self.route(request.method, &segments, request.body, serialized)
    }

    fn authorized(&self, header: Option<&str>) -> bool {
        match &self.auth {
            None => true,
            Some(expected) => header.and_then(basic_credentials).as_ref() == Some(expected),
        }
    }

    fn route(&self, method: Method, segments: &[&str], body: &[u8], serialized: bool) -> Reply {
        use Method::{Delete, Get, Post, Put};
        match segments {
            [] => on(method, &[(Get, &|| ok(json!({})))]),
            ["schemas", "types"] => on(method, &[(Get, &|| ok(json!(["JSON", "PROTOBUF", "AVRO"])))]),
            ["schemas", "ids", id] => on(method, &[(Get, &|| self.schema_by_id(id, serialized))]),
            ["schemas", "ids", id, "schema"] => on(method, &[(Get, &|| self.raw_schema_by_id(id))]),
            ["schemas", "ids", id, "versions"] => on(method, &[(Get, &|| self.schema_versions(id))]),
            ["schemas", "ids", id, "subjects"] => on(method, &[(Get, &|| self.schema_subjects(id))]),
            ["subjects"] => on(method, &[(Get, &|| self.subjects())]),
            ["subjects", s] => on(method, &[(Post, &|| self.lookup(s, body)), (Delete, &|| self.delete_subject(s))]),
            ["subjects", s, "versions"] => {
                on(method, &[(Get, &|| self.versions(s)), (Post, &|| self.register(s, body))])
            }
            ["subjects", s, "versions", v] => {
                on(method, &[(Get, &|| self.version(s, v, serialized)), (Delete, &|| self.delete_version(s, v))])
            }
            ["subjects", s, "versions", v, "schema"] => on(method, &[(Get, &|| self.raw_version_schema(s, v))]),
            ["subjects", s, "versions", v, "referencedby"] => on(method, &[(Get, &|| self.referenced_by(s, v))]),
            ["config"] | ["config", _] => {
                on(method, &[(Get, &|| ok(json!({ "compatibilityLevel": "BACKWARD" }))), (Put, &|| put_config(body))])
            }
            ["mode"] | ["mode", _] => on(method, &[(Get, &|| ok(json!({ "mode": "READWRITE" })))]),
            _ => not_found(),
        }
    }

    fn schema_by_id(&self, id: &str, serialized: bool) -> Reply {
        self.read(|state| {
            let (_, stored) = schema_entry(state, id)?;
            let mut body = schema_json(stored);
            if serialized {
                body["schema"] = Value::String(serialized_text(state, stored)?);
            }
            Ok(ok(body))
        })
    }

    fn raw_schema_by_id(&self, id: &str) -> Reply {
        self.read(|state| schema_entry(state, id).map(|(_, stored)| raw(&stored.text)))
    }

    fn schema_versions(&self, id: &str) -> Reply {
        self.read(|state| {
            let (id, _) = schema_entry(state, id)?;
            let usages: Vec<Value> =
                state.usages(id).into_iter().map(|(s, v)| json!({ "subject": s, "version": v })).collect();
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
        self.read(|state| Ok(ok(json!(state.subject_names().collect::<Vec<_>>()))))
    }

    fn versions(&self, subject: &str) -> Reply {
        self.read(|state| {
            let numbers: Vec<usize> = state.versions(subject)?.into_iter().map(|(v, _)| v).collect();
            Ok(ok(json!(numbers)))
        })
    }

    fn version(&self, subject: &str, version: &str, serialized: bool) -> Reply {
        self.read(|state| {
            let (number, id) = state.version(subject, version)?;
            let stored = state.schema(id)?;
            let mut body = version_json(subject, number, id, stored);
            if serialized {
                body["schema"] = Value::String(serialized_text(state, stored)?);
            }
            Ok(ok(body))
        })
    }

    fn raw_version_schema(&self, subject: &str, version: &str) -> Reply {
        self.read(|state| {
            let (_, id) = state.version(subject, version)?;
            Ok(raw(&state.schema(id)?.text))
        })
    }

    fn referenced_by(&self, subject: &str, version: &str) -> Reply {
        self.read(|state| {
            let (number, _) = state.version(subject, version)?;
            Ok(ok(json!(state.referenced_by(subject, number))))
        })
    }

    /// Registers under `subject`; an already registered schema keeps its
    /// version and ID.
    fn register(&self, subject: &str, body: &[u8]) -> Reply {
        let schema = match requested_schema(body) {
            Ok(schema) => schema,
            Err(reply) => return reply,
        };
        self.change(|state| {
            let candidate = state.candidate(schema)?;
            Ok(match state.find(subject, &candidate) {
                Some((_, id)) => id,
                None => state.add_version(subject, candidate),
            })
        })
        .map_or_else(|e| e, |id| ok(json!({ "id": id })))
    }

    fn lookup(&self, subject: &str, body: &[u8]) -> Reply {
        self.read(|state| {
            let schema = requested_schema(body)?;
            state.versions(subject)?;
            let candidate: Candidate = state.candidate(schema)?;
            let (version, id) = state.find(subject, &candidate).ok_or(RegistryError::NotRegistered)?;
            Ok(ok(version_json(subject, version, id, state.schema(id)?)))
        })
    }

    fn delete_version(&self, subject: &str, version: &str) -> Reply {
        self.change(|state| state.delete_version(subject, version)).map_or_else(|e| e, |number| ok(json!(number)))
    }

    fn delete_subject(&self, subject: &str) -> Reply {
        self.change(|state| state.delete_subject(subject)).map_or_else(|e| e, |versions| ok(json!(versions)))
    }
}

fn schema_entry<'a>(state: &'a State, id: &str) -> Result<(u32, &'a StoredSchema), Reply> {
    let id: u32 = id.parse().map_err(|_| not_found())?;
    Ok((id, state.schema(id)?))
}

/// A schema text as the body itself (the `/schema` routes).
fn raw(text: &str) -> Reply {
    Reply { status: 200, body: text.as_bytes().to_vec() }
}

/// `schema`, plus `schemaType` unless Avro and `references` unless none,
/// as Confluent writes them.
fn schema_json(stored: &StoredSchema) -> Value {
    let mut body = json!({ "schema": stored.text });
    if stored.kind != SchemaType::Avro {
        body["schemaType"] = json!(stored.kind.as_str());
    }
    if !stored.references.is_empty() {
        body["references"] = json!(stored.references);
    }
    body
}

fn version_json(subject: &str, version: usize, id: u32, stored: &StoredSchema) -> Value {
    let mut body = json!({ "subject": subject, "version": version, "id": id });
    if let (Value::Object(out), Value::Object(schema)) = (&mut body, schema_json(stored)) {
        out.extend(schema);
    }
    body
}

/// `format=serialized`: a Protobuf schema as its base64 `FileDescriptorProto`;
/// other types are served as they are.
fn serialized_text(state: &State, stored: &StoredSchema) -> Result<String, Reply> {
    if stored.kind != SchemaType::Protobuf || schema::is_serialized_protobuf(&stored.text) {
        return Ok(stored.text.clone());
    }
    let dependencies = state.dependencies(&stored.references).map_err(|e| error(500, 50001, e))?;
    schema::protobuf_serialized(&stored.text, &dependencies).map_err(|e| error(500, 50001, e.to_string()))
}

/// The schema in a register or lookup body; its type and references as given.
fn requested_schema(body: &[u8]) -> Result<StoredSchema, Reply> {
    #[derive(Deserialize)]
    struct SchemaRequest {
        schema: Option<String>,
        #[serde(rename = "schemaType")]
        schema_type: Option<String>,
        references: Option<Vec<Reference>>,
    }
    let request: SchemaRequest = parse_body(body)?;
    let kind = match request.schema_type.as_deref() {
        None => SchemaType::Avro,
        Some(name) => SchemaType::parse(name).ok_or_else(|| {
            let message = format!("Invalid schema: unknown schemaType {name}; use AVRO, PROTOBUF or JSON");
            error(422, 42201, message)
        })?,
    };
    let text = request
        .schema
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| error(422, 42201, "Invalid schema: the body has no \"schema\" string"))?;
    Ok(StoredSchema { text, kind, references: request.references.unwrap_or_default() })
}

/// A JSON body: 400 when it is not JSON, 422 when it has the wrong shape.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => error(422, 422, format!("Unprocessable entity: {e}")),
        _ => error(400, 400, format!("The request body is not valid JSON: {e}")),
    })
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
        Some(level) if COMPATIBILITY_LEVELS.contains(&level.as_str()) => ok(json!({ "compatibility": level })),
        _ => {
            let message = format!("Invalid compatibility level. Valid values are {}", COMPATIBILITY_LEVELS.join(", "));
            error(422, 42203, message)
        }
    }
}

/// `user:password` from an `Authorization: Basic ...` value.
fn basic_credentials(header: &str) -> Option<String> {
    let (scheme, token) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

fn acceptable_body_type(content_type: Option<&str>) -> bool {
    let Some(value) = content_type else {
        return true;
    };
    let media = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    REQUEST_TYPES.contains(&media.as_str())
}

/// Path and query of a target in origin form or absolute form (fragment dropped).
fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    let target = match target.windows(3).position(|w| w == b"://") {
        Some(i) => {
            let rest = &target[i + 3..];
            rest.iter().position(|b| *b == b'/').map_or(&b"/"[..], |j| &rest[j..])
        }
        None => target,
    };
    let target = target.split(|b| *b == b'#').next().unwrap_or_default();
    crate::http::request::split_target(target)
}

/// The decoded, non-empty segments of a path; `None` for bad percent-encoding.
fn path_segments(path: &[u8]) -> Option<Vec<String>> {
    path.split(|b| *b == b'/').filter(|s| !s.is_empty()).map(|s| percent_decode(s, false)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(api: &Api, method: Method, target: &str, body: Value) -> (u16, Value) {
        let body = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
        let request =
            Request { method, target: target.as_bytes(), content_type: None, authorization: None, body: &body };
        let reply = api.answer(&request);
        let text = String::from_utf8(reply.body).unwrap();
        (reply.status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    const MONEY: &str = "syntax = \"proto3\";\npackage acme;\nmessage Money { int64 cents = 1; }\n";
    const BILL: &str = "syntax = \"proto3\";\npackage acme;\nimport \"acme/money.proto\";\n\
                        message Bill { string id = 1; acme.Money total = 2; }\n";

    #[test]
    fn protobuf_with_an_import_is_stored_and_served_with_type_and_references() {
        let api = Api::new(State::default(), None, None);
        let money = json!({ "schema": MONEY, "schemaType": "PROTOBUF" });
        assert_eq!(call(&api, Method::Post, "/subjects/money/versions", money), (200, json!({ "id": 1 })));
        let reference = json!([{ "name": "acme/money.proto", "subject": "money", "version": 1 }]);
        let bill = json!({ "schema": BILL, "schemaType": "PROTOBUF", "references": reference });
        assert_eq!(call(&api, Method::Post, "/subjects/bill/versions", bill.clone()), (200, json!({ "id": 2 })));
        let served = json!({ "schema": BILL, "schemaType": "PROTOBUF", "references": reference });
        assert_eq!(call(&api, Method::Get, "/schemas/ids/2?subject=bill", Value::Null), (200, served));
        let (_, version) = call(&api, Method::Get, "/subjects/bill/versions/latest", Value::Null);
        assert_eq!((version["id"].clone(), version["references"].clone()), (json!(2), reference));
        assert_eq!(call(&api, Method::Post, "/subjects/bill?normalize=false", bill).1["version"], 1);
        assert_eq!(call(&api, Method::Get, "/subjects/money/versions/1/referencedby", Value::Null), (200, json!([2])));
        let (status, body) = call(&api, Method::Get, "/schemas/ids/2?format=serialized", Value::Null);
        assert_eq!(status, 200);
        let descriptor = body["schema"].as_str().unwrap();
        assert!(schema::is_serialized_protobuf(descriptor), "{descriptor}");
        let (_, money) =
            call(&api, Method::Get, "/subjects/money/versions/1?deleted=true&format=serialized", Value::Null);
        assert!(schema::is_serialized_protobuf(money["schema"].as_str().unwrap()));
        let (status, refused) = call(&api, Method::Delete, "/subjects/money", Value::Null);
        assert_eq!((status, refused["error_code"].clone()), (422, json!(42206)));
    }

    #[test]
    fn bad_references_and_bad_schemas_are_42201() {
        let api = Api::new(State::default(), None, None);
        let dangling = json!({ "schema": BILL, "schemaType": "PROTOBUF",
                               "references": [{ "name": "acme/money.proto", "subject": "money", "version": 1 }] });
        let (status, body) = call(&api, Method::Post, "/subjects/bill/versions", dangling);
        assert_eq!((status, body["error_code"].clone()), (422, json!(42201)));
        assert!(body["message"].as_str().unwrap().contains("'money' version 1"), "{body}");
        let unimported = json!({ "schema": BILL, "schemaType": "PROTOBUF" });
        let (status, body) = call(&api, Method::Post, "/subjects/bill/versions", unimported);
        assert_eq!((status, body["error_code"].clone()), (422, json!(42201)));
        assert!(body["message"].as_str().unwrap().contains("acme/money.proto"), "{body}");
        let json_array = json!({ "schema": "[1]", "schemaType": "JSON" });
        assert_eq!(call(&api, Method::Post, "/subjects/j/versions", json_array).1["error_code"], 42201);
        let unknown = json!({ "schema": "{}", "schemaType": "XML" });
        assert_eq!(call(&api, Method::Post, "/subjects/j/versions", unknown).1["error_code"], 42201);
        assert_eq!(call(&api, Method::Get, "/subjects", Value::Null), (200, json!([])));
    }

    #[test]
    fn json_schema_and_avro_types_are_served_as_confluent_does() {
        let api = Api::new(State::default(), None, None);
        let schema = r#"{"type":"object","title":"Ticket","properties":{"id":{"type":"string"}}}"#;
        let json_schema = json!({ "schema": schema, "schemaType": "JSON" });
        assert_eq!(call(&api, Method::Post, "/subjects/t/versions", json_schema), (200, json!({ "id": 1 })));
        let as_avro = json!({ "schema": r#"{"type":"record","name":"T","fields":[]}"# });
        assert_eq!(call(&api, Method::Post, "/subjects/t/versions", as_avro), (200, json!({ "id": 2 })));
        assert_eq!(
            call(&api, Method::Get, "/schemas/ids/1", Value::Null),
            (200, json!({ "schema": schema, "schemaType": "JSON" }))
        );
        let avro = call(&api, Method::Get, "/schemas/ids/2", Value::Null).1;
        assert!(avro.get("schemaType").is_none() && avro.get("references").is_none(), "{avro}");
        assert_eq!(call(&api, Method::Get, "/mode", Value::Null), (200, json!({ "mode": "READWRITE" })));
    }
}
