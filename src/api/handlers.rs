//! The store handlers: GET/HEAD/POST/DELETE on a route and the key listing.
//!
//! A key's owner is decided by `runtime::shard::owner_of`. When this shard
//! owns it the entry is read in place and copied straight into the output
//! buffer; otherwise the request goes to the owner over the mesh and the
//! entry it sends back is written the same way, so clients cannot tell.

use super::router::{Miss, Route, Target};
use super::{ops, Api};
use crate::http::request::{percent_decode, query_pairs, Method};
use crate::http::response::{self, Framing};
use crate::runtime::mesh::{Reply, Request as MeshRequest};
use crate::runtime::shard::owner_of;
use crate::store::entry::Entry;
use crate::store::redis::{decode_value, encode_value, Op, Outcome};
use crate::store::value::StoredValue;

/// A parsed request, borrowing the connection's buffers.
pub struct Request<'a> {
    pub method: Method,
    pub target: &'a [u8],
    pub if_none_match: Option<&'a [u8]>,
    pub authorization: Option<&'a [u8]>,
    pub body: &'a [u8],
}

/// What was answered, for the metrics.
pub struct Answer {
    pub status: u16,
    pub label: u16,
}

/// Answers `req` into `out`.
pub async fn handle(api: &Api, req: &Request<'_>, framing: Framing, out: &mut Vec<u8>) -> Answer {
    let shared = &api.shared;
    let target = match shared.router.resolve(req.target) {
        Ok(t) => t,
        Err(Miss::NotFound) => return answer(out, 404, "no such path", shared.unmatched_label(), framing),
        Err(Miss::BadKey) => return answer(out, 400, "key must be percent-encoded UTF-8", shared.unmatched_label(), framing),
    };
    let label = match &target {
        Target::Item { route, .. } | Target::Collection { route, .. } => *route as u16,
        _ => shared.ops_label(),
    };
    if !target.allows(req.method) {
        response::error_with(out, 405, "method not allowed", &[("Allow", target.allowed().as_bytes())], framing);
        return Answer { status: 405, label };
    }
    if matches!(req.method, Method::Post | Method::Delete) && !authorized(api, req.authorization) {
        let extra: &[(&str, &[u8])] = &[("WWW-Authenticate", b"Bearer")];
        response::error_with(out, 401, "missing or wrong bearer token", extra, framing);
        return Answer { status: 401, label };
    }
    let status = match target {
        Target::Item { route, key } => match req.method {
            Method::Delete => delete(api, route, &key, framing, out).await,
            _ => get(api, route, &key, req.if_none_match, framing, out).await,
        },
        Target::Collection { route, query } => match req.method {
            Method::Post => post(api, route, req.body, framing, out).await,
            _ => list(api, route, query, framing, out).await,
        },
        Target::Live => ops::live(out, framing),
        Target::Ready => ops::ready(api, out, framing),
        Target::Metrics => ops::metrics(api, out, framing).await,
    };
    Answer { status, label }
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
    let store = api.shared.router.routes[route].store;
    let r = &api.shared.router.routes[route];
    if let Some(redis) = api.shared.redis_for(store) {
        return match redis.call(store, Op::Get(key.as_bytes().to_vec())).await {
            Ok(Outcome::Value(v)) => {
                let entry = v.and_then(|v| decode_value(key.as_bytes(), &v));
                write_entry(r, entry.as_ref(), inm, framing, out)
            }
            Ok(_) => store_failed(out, framing, "unexpected reply"),
            Err(e) => store_failed(out, framing, &e.to_string()),
        };
    }
    let owner = owner_of(key.as_bytes(), api.shard.count);
    if owner == api.shard.id {
        return api.shard.with_entry(store, key.as_bytes(), |e| write_entry(r, e, inm, framing, out));
    }
    api.shard.metrics.borrow_mut().forwarded += 1;
    match api.mesh.call(owner, MeshRequest::Get { store, key: key.as_bytes().into() }).await {
        Ok(Reply::Entry(e)) => write_entry(r, e.as_ref(), inm, framing, out),
        _ => unavailable(out, framing),
    }
}

/// 503 naming the store problem; the client may retry.
fn store_failed(out: &mut Vec<u8>, framing: Framing, reason: &str) -> u16 {
    response::error_with(out, 503, reason, &[("Retry-After", b"1")], framing);
    503
}

fn unavailable(out: &mut Vec<u8>, framing: Framing) -> u16 {
    response::error(out, 503, "shard unavailable, the server is shutting down; retry", framing);
    503
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
    response::headers(out, &[("ETag", &etag)]);
    response::finish(out, framing, Some(entry.body()));
    200
}

/// `If-None-Match` uses weak comparison: `W/` prefixes are ignored, `*`
/// matches any current entity.
pub fn etag_matches(header: &[u8], etag: &[u8]) -> bool {
    header.split(|b| *b == b',').map(<[u8]>::trim_ascii).any(|candidate| {
        candidate == b"*" || candidate.strip_prefix(b"W/").unwrap_or(candidate) == etag
    })
}

async fn delete(api: &Api, route: usize, key: &str, framing: Framing, out: &mut Vec<u8>) -> u16 {
    let store = api.shared.router.routes[route].store;
    let removed = match api.shared.redis_for(store) {
        Some(redis) => match redis.call(store, Op::Remove(key.as_bytes().to_vec())).await {
            Ok(Outcome::Value(v)) => Ok(Reply::Entry(v.and_then(|v| decode_value(key.as_bytes(), &v)))),
            Ok(_) => return store_failed(out, framing, "unexpected reply"),
            Err(e) => return store_failed(out, framing, &e.to_string()),
        },
        None => api.mesh.call(owner_of(key.as_bytes(), api.shard.count), MeshRequest::Remove { store, key: key.as_bytes().into() }).await,
    };
    match removed {
        Ok(Reply::Entry(Some(e))) => {
            response::json(out, 200, &[("ETag", &e.etag())], e.body(), framing);
            200
        }
        Ok(Reply::Entry(None)) => {
            response::json(out, 404, &[], br#"{"error":"key not found"}"#, framing);
            404
        }
        _ => unavailable(out, framing),
    }
}

async fn post(api: &Api, route: usize, body: &[u8], framing: Framing, out: &mut Vec<u8>) -> u16 {
    let r = &api.shared.router.routes[route];
    let (key, value) = match parse_post(body, &r.key_field) {
        Ok(kv) => kv,
        Err(reason) => {
            response::error(out, 400, &reason, framing);
            return 400;
        }
    };
    let Ok(entry) = Entry::new(&key, &value) else {
        response::error(out, 400, "key too long", framing);
        return 400;
    };
    let inserted = match api.shared.redis_for(r.store) {
        Some(redis) => match redis.call(r.store, Op::InsertNew(key.as_bytes().to_vec(), encode_value(&value.etag, &value.body))).await {
            Ok(Outcome::Inserted(done)) => Ok(Reply::Inserted(done)),
            Ok(_) => return store_failed(out, framing, "unexpected reply"),
            Err(e) => return store_failed(out, framing, &e.to_string()),
        },
        None => api.mesh.call(owner_of(key.as_bytes(), api.shard.count), MeshRequest::InsertNew { store: r.store, entry }).await,
    };
    match inserted {
        Ok(Reply::Inserted(true)) => {
            let location = format!("{}/{}", r.full_path, crate::http::encode_path_segment(&key));
            let extra: &[(&str, &[u8])] = &[("ETag", &value.etag), ("Location", location.as_bytes())];
            response::json(out, 201, extra, &value.body, framing);
            201
        }
        Ok(Reply::Inserted(false)) => {
            response::error(out, 409, "key already exists; DELETE it first to replace it", framing);
            409
        }
        _ => unavailable(out, framing),
    }
}

/// The key (the route's `key_field`, a string or a number) and the stored value.
fn parse_post(body: &[u8], key_field: &str) -> Result<(String, StoredValue), String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    if !value.is_object() {
        return Err("body must be a JSON object".into());
    }
    let key = match value.get(key_field) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => return Err(format!("missing key field `{key_field}` (a non-empty string)")),
    };
    Ok((key, StoredValue::from_json(&value)))
}

/// Listing options of `GET {route}?limit=&offset=&filter=`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: Option<usize>,
    pub offset: usize,
    pub filter: String,
}

pub fn parse_list_query(query: &[u8]) -> Result<ListQuery, String> {
    let mut q = ListQuery::default();
    for (name, raw) in query_pairs(query) {
        let value = percent_decode(raw, true).ok_or_else(|| format!("bad encoding in `{}`", String::from_utf8_lossy(name)))?;
        match name {
            b"limit" => q.limit = Some(value.parse().map_err(|_| "limit must be a non-negative integer".to_string())?),
            b"offset" => q.offset = value.parse().map_err(|_| "offset must be a non-negative integer".to_string())?,
            b"filter" => q.filter = value,
            _ => {}
        }
    }
    Ok(q)
}

async fn list(api: &Api, route: usize, query: &[u8], framing: Framing, out: &mut Vec<u8>) -> u16 {
    let q = match parse_list_query(query) {
        Ok(q) => q,
        Err(reason) => {
            response::error(out, 400, &reason, framing);
            return 400;
        }
    };
    let store = api.shared.router.routes[route].store;
    let mut keys = match api.shared.redis_for(store) {
        Some(redis) => match redis.call(store, Op::Keys(q.filter.clone())).await {
            Ok(Outcome::Keys(k)) => k,
            Ok(_) => return store_failed(out, framing, "unexpected reply"),
            Err(e) => return store_failed(out, framing, &e.to_string()),
        },
        None => {
            let Ok(replies) = api.mesh.call_all(|| MeshRequest::Keys { store, filter: q.filter.clone() }).await else {
                return unavailable(out, framing);
            };
            replies.into_iter().flat_map(|r| if let Reply::Keys(k) = r { k } else { Vec::new() }).collect::<Vec<String>>()
        }
    };
    keys.sort_unstable();
    let page: Vec<&String> = keys.iter().skip(q.offset).take(q.limit.unwrap_or(usize::MAX)).collect();
    let body = serde_json::to_vec(&page).unwrap_or_default();
    response::json(out, 200, &[], &body, framing);
    200
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
        assert_eq!(q, ListQuery { limit: Some(10), offset: 5, filter: "acct-1 x".into() });
        assert!(parse_list_query(b"limit=ten").is_err());
        assert!(parse_list_query(b"offset=-1").is_err());
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
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
