//! Key listings of a route: `GET {route}?limit=&offset=&filter=&after=`,
//! a JSON array of keys in ascending order. A page comes with a `Link` to
//! the next one; without a limit the array is streamed. The keys come from
//! `store::listing`, a bounded slice of each part of the store at a time.

use super::router::Route;
use super::{store_failed, Api};
use crate::http::encode_path_segment;
use crate::http::request::{percent_decode, query_pairs};
use crate::http::response::{self, ResponseWriter};
use crate::store::listing::Lister;
use crate::store::{Store, StoreError};

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
pub async fn list(api: &Api, route: usize, query: &[u8], res: &mut ResponseWriter<'_>) -> u16 {
    let framing = res.framing();
    let q = match parse_list_query(query) {
        Ok(q) => q,
        Err(reason) => {
            response::error(res.buf(), 400, &reason, framing);
            return 400;
        }
    };
    let r = &api.shared.router.routes[route];
    let store = api.store(r.store);
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
    fn list_query() {
        assert_eq!(parse_list_query(b"").unwrap(), ListQuery::default());
        let q = parse_list_query(b"limit=10&offset=5&filter=acct%2D1+x").unwrap();
        assert_eq!(q, ListQuery { limit: Some(10), offset: 5, filter: "acct-1 x".into(), after: None });
        assert_eq!(parse_list_query(b"after=a%2Fb").unwrap().after.as_deref(), Some("a/b"));
        assert!(parse_list_query(b"limit=ten").is_err());
        assert!(parse_list_query(b"offset=-1").is_err());
    }
}
