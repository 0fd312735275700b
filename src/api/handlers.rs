//! The store handlers: GET/HEAD/POST/PUT/DELETE on a route, and where a
//! request goes (to these, the key listing, the operational endpoints or a
//! write through Kafka).
//!
//! Every store is reached through one interface (`store::Store`): an
//! in-memory store reads this shard's keys in place and sends the others to
//! their owners over the mesh; a Redis store goes through its I/O thread.
//! The handlers neither know nor ask which kind they hold.

use super::router::{Miss, Route, Target};
use super::write_body::{key_of, matching_key, parse_object};
use super::{list, min_offset, ops, store_failed, write_through, Api};
use crate::http::encode_path_segment;
use crate::http::request::{Method, Request};
use crate::http::response::{self, Framing, ResponseWriter};
use crate::store::entry::Entry;
use crate::store::projection::project_object;
use crate::store::value::StoredValue;
use crate::store::Store;
use serde_json::{Map, Value};

/// What was answered, for the metrics.
pub struct Answer {
    pub status: u16,
    pub label: u16,
}

/// Answers `req` through `res`.
pub async fn handle(api: &Api, req: &Request<'_>, res: &mut ResponseWriter<'_>) -> Answer {
    let framing = res.framing();
    let (target, label) = match route(api, req, framing, res.buf()) {
        Ok(routed) => routed,
        Err(refused) => return refused,
    };
    if let Some(status) = min_offset::gate(api, &target, req, framing, res.buf()).await {
        return Answer { status, label };
    }
    if let Some(status) = write_through::intercept(api, &target, req, framing, res.buf()).await {
        return Answer { status, label };
    }
    let status = match target {
        Target::Item { route, key } => match req.method {
            Method::Delete => delete(api, route, &key, framing, res.buf()).await,
            Method::Put => put(api, route, &key, req.body, framing, res.buf()).await,
            _ => get(api, route, &key, req.if_none_match, framing, res.buf()).await,
        },
        Target::Collection { route, query } => match req.method {
            Method::Post => post(api, route, req.body, framing, res.buf()).await,
            _ => list::list(api, route, query, res).await,
        },
        Target::Live => ops::live(res.buf(), framing),
        Target::Ready => ops::ready(api, res.buf(), framing),
        Target::Metrics => ops::metrics(api, res.buf(), framing).await,
        Target::StatusPage => super::status::page(res.buf(), framing),
        Target::Status => super::status::status(api, res.buf(), framing).await,
        Target::Offsets => ops::offsets(api, res.buf(), framing),
    };
    Answer { status, label }
}

/// Resolves `req`'s target and its metrics label, or writes the refusal
/// (400 bad key, 404, 405, 401) to `out`. Needs no body, so it also tells
/// whether a request waiting for `100 Continue` may proceed.
pub fn route<'r>(
    api: &Api,
    req: &Request<'r>,
    framing: Framing,
    out: &mut Vec<u8>,
) -> Result<(Target<'r>, u16), Answer> {
    let shared = &api.shared;
    let target = match shared.router.resolve(req.target) {
        Ok(t) => t,
        Err(Miss::NotFound) => return Err(answer(out, 404, "no such path", shared.unmatched_label(), framing)),
        Err(Miss::BadKey) => {
            return Err(answer(out, 400, "key must be percent-encoded UTF-8", shared.unmatched_label(), framing))
        }
    };
    let label = target.route().map_or(shared.ops_label(), |r| r as u16);
    if !target.allows(req.method) {
        response::error_with(out, 405, "method not allowed", &[("Allow", target.allowed().as_bytes())], framing);
        return Err(Answer { status: 405, label });
    }
    if matches!(req.method, Method::Post | Method::Put | Method::Delete) && !authorized(api, req.authorization) {
        let extra: &[(&str, &[u8])] = &[("WWW-Authenticate", b"Bearer")];
        response::error_with(out, 401, "missing or wrong bearer token", extra, framing);
        return Err(Answer { status: 401, label });
    }
    Ok((target, label))
}

fn answer(out: &mut Vec<u8>, status: u16, reason: &str, label: u16, framing: Framing) -> Answer {
    response::error(out, status, reason, framing);
    Answer { status, label }
}

/// `Authorization: Bearer <admin_token>`, when a token is configured.
fn authorized(api: &Api, header: Option<&[u8]>) -> bool {
    let Some(token) = &api.shared.admin_token else { return true };
    let Some(value) = header else { return false };
    if value.len() < 7 || !value[..7].eq_ignore_ascii_case(b"Bearer ") {
        return false;
    }
    constant_time_eq(value[7..].trim_ascii(), token.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn get(api: &Api, route: usize, key: &str, inm: Option<&[u8]>, framing: Framing, out: &mut Vec<u8>) -> u16 {
    let r = &api.shared.router.routes[route];
    match api.store(r.store).read(key, |e| write_entry(r, e, inm, framing, out)).await {
        Ok(status) => status,
        Err(e) => store_failed(out, framing, &e),
    }
}

fn bad_request(out: &mut Vec<u8>, framing: Framing, reason: &str) -> u16 {
    response::error(out, 400, reason, framing);
    400
}

/// 200 with the stored body, 304 when `If-None-Match` matches, or 404.
pub fn write_entry(r: &Route, entry: Option<&Entry>, inm: Option<&[u8]>, framing: Framing, out: &mut Vec<u8>) -> u16 {
    let Some(entry) = entry else {
        response::json(out, 404, &[], br#"{"error":"key not found"}"#, framing);
        return 404;
    };
    let etag = entry.etag();
    if inm.is_some_and(|v| etag_matches(v, &etag)) {
        response::status_line(out, 304);
        out.extend_from_slice(&r.cache_control);
        response::headers(out, &[("ETag", &etag)]);
        response::finish(out, framing, None);
        return 304;
    }
    out.extend_from_slice(&r.ok_prefix);
    if !entry.is_compressed() {
        response::headers(out, &[("ETag", &etag)]);
        response::finish(out, framing, Some(entry.body()));
        return 200;
    }
    // A compressed body: Content-Length is the uncompressed length, and the
    // body is decompressed straight into `out` (HEAD skips that).
    let start = out.len();
    let mut digits = itoa::Buffer::new();
    let length = digits.format(entry.raw_len()).as_bytes();
    response::headers(out, &[("ETag", &etag), ("Content-Length", length)]);
    response::finish(out, framing, None);
    if !framing.head_only {
        if let Err(e) = entry.write_body(out) {
            out.truncate(start - r.ok_prefix.len());
            response::error(out, 500, &e.to_string(), framing);
            return 500;
        }
    }
    200
}

/// `If-None-Match` uses weak comparison: `W/` prefixes are ignored, `*`
/// matches any current entity.
pub fn etag_matches(header: &[u8], etag: &[u8]) -> bool {
    header
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .any(|candidate| candidate == b"*" || candidate.strip_prefix(b"W/").unwrap_or(candidate) == etag)
}

async fn delete(api: &Api, route: usize, key: &str, framing: Framing, out: &mut Vec<u8>) -> u16 {
    let store = api.shared.router.routes[route].store;
    match api.store(store).remove(key).await {
        Ok(Some(e)) => match e.raw_body() {
            Ok(body) => {
                response::json(out, 200, &[("ETag", &e.etag())], &body, framing);
                200
            }
            Err(error) => {
                response::error(out, 500, &error.to_string(), framing);
                500
            }
        },
        Ok(None) => {
            response::json(out, 404, &[], br#"{"error":"key not found"}"#, framing);
            404
        }
        Err(e) => store_failed(out, framing, &e),
    }
}

async fn post(api: &Api, route: usize, body: &[u8], framing: Framing, out: &mut Vec<u8>) -> u16 {
    let r = &api.shared.router.routes[route];
    let (key, value) = match parse_object(body).and_then(|o| key_of(o, &r.key_field)) {
        Ok((key, object)) => (key, stored_value(r, object)),
        Err(reason) => return bad_request(out, framing, &reason),
    };
    let Ok(entry) = Entry::new(&key, &value) else { return bad_request(out, framing, "key too long") };
    match api.store(r.store).insert_new(entry).await {
        Ok(true) => {
            let location = format!("{}/{}", r.full_path, encode_path_segment(&key));
            let extra: &[(&str, &[u8])] = &[("ETag", &value.etag), ("Location", location.as_bytes())];
            response::json(out, 201, extra, &value.body, framing);
            201
        }
        Ok(false) => {
            response::error(out, 409, "key already exists; DELETE it first or PUT to replace it", framing);
            409
        }
        Err(e) => store_failed(out, framing, &e),
    }
}

/// Stores the body under the path's key whether or not it exists: 201 when
/// it was absent, 200 when it replaced a value.
async fn put(api: &Api, route: usize, key: &str, body: &[u8], framing: Framing, out: &mut Vec<u8>) -> u16 {
    let r = &api.shared.router.routes[route];
    let object = match parse_object(body).and_then(|o| matching_key(o, &r.key_field, key)) {
        Ok(o) => o,
        Err(reason) => return bad_request(out, framing, &reason),
    };
    let value = stored_value(r, object);
    let Ok(entry) = Entry::new(key, &value) else { return bad_request(out, framing, "key too long") };
    match api.store(r.store).upsert(entry).await {
        Ok(replaced) => {
            let status = if replaced { 200 } else { 201 };
            let location = format!("{}/{}", r.full_path, encode_path_segment(key));
            let mut extra: Vec<(&str, &[u8])> = vec![("ETag", &value.etag)];
            if !replaced {
                extra.push(("Location", location.as_bytes()));
            }
            response::json(out, status, &extra, &value.body, framing);
            status
        }
        Err(e) => store_failed(out, framing, &e),
    }
}

/// The value stored for a write: the object as sent, or only the store's
/// `fields` when it has a projection.
fn stored_value(r: &Route, object: Map<String, Value>) -> StoredValue {
    if r.fields.is_empty() {
        StoredValue::from_json(&Value::Object(object))
    } else {
        project_object(object, &r.fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_comparison() {
        assert!(etag_matches(b"\"5\"", b"\"5\""));
        assert!(etag_matches(b"W/\"5\"", b"\"5\""));
        assert!(etag_matches(b"\"1\", \"5\"", b"\"5\""));
        assert!(etag_matches(b"*", b"\"5\""));
        assert!(!etag_matches(b"\"6\"", b"\"5\""));
        assert!(!etag_matches(b"5", b"\"5\""));
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
