//! The store handlers: GET/HEAD/POST/PUT/DELETE on a route and the key
//! listing.
//!
//! Every store is reached through one interface (`store::Store`): an
//! in-memory store reads this shard's keys in place and sends the others to
//! their owners over the mesh; a Redis store goes through its I/O thread.
//! The handlers neither know nor ask which kind they hold.

use super::router::{Miss, Route, Target};
use super::{min_offset, ops, write_through, Api};
use crate::http::encode_path_segment;
use crate::http::request::{percent_decode, query_pairs, Method, Request};
use crate::http::response::{self, Framing, ResponseWriter};
use crate::runtime::mesh::ShardedStore;
use crate::store::entry::Entry;
use crate::store::handle::RedisStore;
use crate::store::listing::Lister;
use crate::store::projection::project_object;
use crate::store::value::StoredValue;
use crate::store::{Store, StoreError, StoreHandle};
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
            _ => list(api, route, query, res).await,
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

/// The store behind `store` (an index in `cache.stores`), whatever its kind:
/// the one place that tells Redis stores from in-memory ones.
pub(super) fn store_of(api: &Api, store: usize) -> StoreHandle<'_, ShardedStore<'_>> {
    match api.shared.redis_for(store) {
        Some(redis) => StoreHandle::Redis(RedisStore { redis, store }),
        None => StoreHandle::Memory(api.mesh.store(store)),
    }
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
    match store_of(api, r.store).read(key, |e| write_entry(r, e, inm, framing, out)).await {
        Ok(status) => status,
        Err(e) => store_failed(out, framing, &e),
    }
}

/// The store's problem, named: 502 for a value it holds that is not ours,
/// else 503 with `Retry-After` (the client may retry).
pub(super) fn store_failed(out: &mut Vec<u8>, framing: Framing, error: &StoreError) -> u16 {
    match error.status() {
        503 => response::error_with(out, 503, &error.to_string(), &[("Retry-After", b"1")], framing),
        status => response::error(out, status, &error.to_string(), framing),
    }
    error.status()
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
    match store_of(api, store).remove(key).await {
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
    match store_of(api, r.store).insert_new(entry).await {
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
    match store_of(api, r.store).upsert(entry).await {
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

/// The request body as a JSON object.
pub(super) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))? {
        Value::Object(o) => Ok(o),
        _ => Err("body must be a JSON object".into()),
    }
}

/// The key field's text: a non-empty string, or a number.
fn key_text(object: &Map<String, Value>, key_field: &str) -> Option<String> {
    match object.get(key_field) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// The key a POST body names in the route's `key_field`.
pub(super) fn key_of(object: Map<String, Value>, key_field: &str) -> Result<(String, Map<String, Value>), String> {
    match key_text(&object, key_field) {
        Some(key) => Ok((key, object)),
        None => Err(format!("missing key field `{key_field}` (a non-empty string)")),
    }
}

/// A PUT body may omit the key field; when it has one it must name the path's key.
pub(super) fn matching_key(
    object: Map<String, Value>,
    key_field: &str,
    key: &str,
) -> Result<Map<String, Value>, String> {
    match object.get(key_field).map(|_| key_text(&object, key_field)) {
        Some(Some(named)) if named != key => {
            Err(format!("body's `{key_field}` is `{named}` but the path names `{key}`; they must agree"))
        }
        Some(None) => Err(format!("`{key_field}` must be a non-empty string or a number")),
        _ => Ok(object),
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

/// Listing options of `GET {route}?limit=&offset=&filter=&after=`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: Option<usize>,
    pub offset: usize,
    pub filter: String,
    pub after: Option<String>,
}

pub fn parse_list_query(query: &[u8]) -> Result<ListQuery, String> {
    let mut q = ListQuery::default();
    for (name, raw) in query_pairs(query) {
        let value =
            percent_decode(raw, true).ok_or_else(|| format!("bad encoding in `{}`", String::from_utf8_lossy(name)))?;
        match name {
            b"limit" => q.limit = Some(value.parse().map_err(|_| "limit must be a non-negative integer".to_string())?),
            b"offset" => q.offset = value.parse().map_err(|_| "offset must be a non-negative integer".to_string())?,
            b"filter" => q.filter = value,
            b"after" => q.after = Some(value),
            _ => {}
        }
    }
    Ok(q)
}

/// `GET {route}?…`: a JSON array of keys, ascending, merged from the
/// store's parts a bounded slice at a time. A page (`limit`) is answered
/// whole, with a `Link` header naming the next page when the limit cut the
/// list; without a limit the array is streamed in chunks as it is merged,
/// so neither memory nor the shard's time is held by the whole key set.
async fn list(api: &Api, route: usize, query: &[u8], res: &mut ResponseWriter<'_>) -> u16 {
    let framing = res.framing();
    let q = match parse_list_query(query) {
        Ok(q) => q,
        Err(reason) => return bad_request(res.buf(), framing, &reason),
    };
    let r = &api.shared.router.routes[route];
    let store = store_of(api, r.store);
    let want = q.limit.map(|l| q.offset.saturating_add(l).saturating_add(1));
    let mut lister = Lister::new(&store, q.after.clone(), q.filter.clone(), want);
    if q.limit.is_none() {
        return stream_keys(&mut lister, q.offset, res).await;
    }
    match page(&mut lister, &q).await {
        Ok((body, more)) => {
            let link = more.map(|last| next_link(r, &q, &last));
            let extra: Vec<(&str, &[u8])> = link.iter().map(|l| ("Link", l.as_bytes())).collect();
            response::json(res.buf(), 200, &extra, &body, framing);
            200
        }
        Err(e) => store_failed(res.buf(), framing, &e),
    }
}

/// A page's JSON array and, when more keys follow it, its last key.
async fn page<S: Store>(lister: &mut Lister<'_, S>, q: &ListQuery) -> Result<(Vec<u8>, Option<String>), StoreError> {
    skip(lister, q.offset).await?;
    let limit = q.limit.unwrap_or(usize::MAX);
    let mut body = vec![b'['];
    let mut last = None;
    let mut taken = 0;
    while taken < limit {
        let Some(key) = lister.next().await? else { break };
        push_key(&mut body, taken, key.as_str());
        last = Some(key);
        taken += 1;
    }
    body.push(b']');
    let cut = taken > 0 && taken == limit && lister.next().await?.is_some();
    Ok((body, last.filter(|_| cut).map(|k| k.as_str().to_owned())))
}

async fn skip<S: Store>(lister: &mut Lister<'_, S>, offset: usize) -> Result<(), StoreError> {
    for _ in 0..offset {
        if lister.next().await?.is_none() {
            break;
        }
    }
    Ok(())
}

/// Appends `key` as the `index`th element of a JSON array.
fn push_key(out: &mut Vec<u8>, index: usize, key: &str) {
    if index > 0 {
        out.push(b',');
    }
    serde_json::to_writer(&mut *out, key).expect("writing to a Vec cannot fail");
}

/// Bytes of keys buffered before a streamed listing writes them out.
const STREAM_CHUNK: usize = 32 * 1024;

/// Streams every key (after `offset` of them) as one JSON array, a chunk at
/// a time, waiting for the client to take each. The status is settled by
/// the first key: a store that fails before it gets a 503; one that fails
/// later cuts the response short (the connection closes), so a client never
/// takes a partial list for a whole one.
async fn stream_keys<S: Store>(lister: &mut Lister<'_, S>, offset: usize, res: &mut ResponseWriter<'_>) -> u16 {
    let framing = res.framing();
    let first = match skip(lister, offset).await {
        Ok(()) => lister.next().await,
        Err(e) => Err(e),
    };
    let mut next = match first {
        Ok(key) => key,
        Err(e) => return store_failed(res.buf(), framing, &e),
    };
    res.start_stream(200, &[("Content-Type", b"application/json")]);
    res.buf().push(b'[');
    let mut index = 0;
    while let Some(key) = next {
        push_key(res.buf(), index, key.as_str());
        index += 1;
        if res.buf().len() >= STREAM_CHUNK && res.send().await.is_err() {
            return 200;
        }
        next = match lister.next().await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "key listing cut short");
                res.abort();
                return 200;
            }
        };
    }
    res.buf().push(b']');
    200
}

/// `<{path}?limit=L&after=LAST[&filter=F]>; rel="next"`.
fn next_link(r: &Route, q: &ListQuery, last: &str) -> String {
    let mut link = format!("<{}?limit={}&after={}", r.full_path, q.limit.unwrap_or(0), encode_path_segment(last));
    if !q.filter.is_empty() {
        link.push_str("&filter=");
        link.push_str(&encode_path_segment(&q.filter));
    }
    link.push_str(">; rel=\"next\"");
    link
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
    fn list_query() {
        assert_eq!(parse_list_query(b"").unwrap(), ListQuery::default());
        let q = parse_list_query(b"limit=10&offset=5&filter=acct%2D1+x").unwrap();
        assert_eq!(q, ListQuery { limit: Some(10), offset: 5, filter: "acct-1 x".into(), after: None });
        assert_eq!(parse_list_query(b"after=a%2Fb").unwrap().after.as_deref(), Some("a/b"));
        assert!(parse_list_query(b"limit=ten").is_err());
        assert!(parse_list_query(b"offset=-1").is_err());
    }

    fn parse_post(body: &[u8], key_field: &str) -> Result<(String, StoredValue), String> {
        let (key, object) = key_of(parse_object(body)?, key_field)?;
        Ok((key, StoredValue::from_json(&Value::Object(object))))
    }

    #[test]
    fn post_body_rules() {
        let (k, v) = parse_post(br#"{"accountId":"a1","name":"x","updatedAt":5}"#, "accountId").unwrap();
        assert_eq!(k, "a1");
        assert_eq!(&v.etag[..], b"\"5\"");
        assert_eq!(&v.body[..], br#"{"accountId":"a1","name":"x","updatedAt":5}"#);
        assert_eq!(parse_post(br#"{"ticketId":7}"#, "ticketId").unwrap().0, "7");
        assert!(parse_post(b"{", "accountId").unwrap_err().starts_with("invalid JSON"));
        assert!(parse_post(b"[1]", "accountId").is_err());
        assert!(parse_post(br#"{"name":"x"}"#, "accountId").unwrap_err().contains("accountId"));
        assert!(parse_post(br#"{"accountId":""}"#, "accountId").is_err());
    }

    #[test]
    fn put_body_key_must_agree_with_the_path() {
        let object = |s: &[u8]| parse_object(s).unwrap();
        assert!(matching_key(object(br#"{"name":"x"}"#), "accountId", "a1").is_ok());
        assert!(matching_key(object(br#"{"accountId":"a1"}"#), "accountId", "a1").is_ok());
        assert!(matching_key(object(br#"{"accountId":"b"}"#), "accountId", "a1").unwrap_err().contains("`b`"));
        assert!(matching_key(object(br#"{"accountId":[1]}"#), "accountId", "a1").is_err());
        assert!(matching_key(object(br#"{"ticketId":7}"#), "ticketId", "7").is_ok());
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
