//! Writes through Kafka: on a route with `writes: kafka`, POST, PUT and
//! DELETE are produced to the route's topic (DELETE as a tombstone) instead
//! of changing the cache, and answered only once the record is applied on
//! the shard that owns its key, so a GET right after sees it
//! (read-your-writes). The answer carries `Kafka-Position:
//! {topic}/{partition}/{offset}` and the body as the cache now serves it.
//!
//! The cache is checked before producing (POST of a present key is 409,
//! DELETE of an absent one 404); that check is not atomic against other
//! writers of the same key, which Kafka orders but this process cannot see
//! in advance. Encoding and producing run on the `kafka-writer` thread
//! (`kafka::produce`); the shard only awaits a oneshot and then parks on its
//! applied position (`runtime::applied`), so it never blocks.

use super::min_offset;
use super::router::Target;
use super::store_failed;
use super::write_body::{key_of, matching_key, parse_object};
use super::Api;
use crate::http::encode_path_segment;
use crate::http::request::{Method, Request};
use crate::http::response::{self, Framing};
use crate::kafka::produce::{KafkaWriter, Position};
use crate::positions::MinPosition;
use crate::store::Store;
use serde_json::Value;
use std::time::Duration;

/// Serves `req` when it is a write on a `writes: kafka` route: `Some(status)`
/// when answered, `None` for every other request.
pub async fn intercept(
    api: &Api,
    target: &Target<'_>,
    req: &Request<'_>,
    framing: Framing,
    out: &mut Vec<u8>,
) -> Option<u16> {
    let route = target.route()?;
    let topic = api.shared.write_topics.get(route)?.as_deref()?;
    if !matches!(req.method, Method::Post | Method::Put | Method::Delete) {
        return None;
    }
    let Some(writer) = &api.shared.writer else {
        response::error(out, 503, "the Kafka writer is not running; retry", framing);
        return Some(503);
    };
    let w = Write { api, route, topic, writer, framing };
    Some(match (target, req.method) {
        (Target::Collection { .. }, Method::Post) => w.post(req.body, out).await,
        (Target::Item { key, .. }, Method::Put) => w.put(key, req.body, out).await,
        (Target::Item { key, .. }, Method::Delete) => w.delete(key, out).await,
        _ => return None,
    })
}

/// One write on a `writes: kafka` route.
struct Write<'a> {
    api: &'a Api,
    route: usize,
    topic: &'a str,
    writer: &'a KafkaWriter,
    framing: Framing,
}

/// A stored entry, copied out: its ETag and body.
type Stored = Option<(Vec<u8>, Vec<u8>)>;

impl Write<'_> {
    fn bad_request(&self, out: &mut Vec<u8>, reason: &str) -> u16 {
        response::error(out, 400, reason, self.framing);
        400
    }

    async fn post(&self, body: &[u8], out: &mut Vec<u8>) -> u16 {
        let key_field = &self.api.shared.router.routes[self.route].key_field;
        let (key, object) = match parse_object(body).and_then(|o| key_of(o, key_field)) {
            Ok(ko) => ko,
            Err(reason) => return self.bad_request(out, &reason),
        };
        match self.stored(&key, out).await {
            Ok(None) => {}
            Ok(Some(_)) => {
                response::error(out, 409, "key already exists; DELETE it first or PUT to replace it", self.framing);
                return 409;
            }
            Err(status) => return status,
        }
        self.produce(&key, Some(Value::Object(object)), 201, None, out).await
    }

    async fn put(&self, key: &str, body: &[u8], out: &mut Vec<u8>) -> u16 {
        let key_field = &self.api.shared.router.routes[self.route].key_field;
        let mut object = match parse_object(body).and_then(|o| matching_key(o, key_field, key)) {
            Ok(o) => o,
            Err(reason) => return self.bad_request(out, &reason),
        };
        // The record in Kafka carries its key field, as any producer's would.
        object.entry(key_field.clone()).or_insert_with(|| Value::String(key.to_string()));
        let status = match self.stored(key, out).await {
            Ok(Some(_)) => 200,
            Ok(None) => 201,
            Err(status) => return status,
        };
        self.produce(key, Some(Value::Object(object)), status, None, out).await
    }

    async fn delete(&self, key: &str, out: &mut Vec<u8>) -> u16 {
        match self.stored(key, out).await {
            Ok(Some(removed)) => self.produce(key, None, 200, Some(removed), out).await,
            Ok(None) => {
                response::json(out, 404, &[], br#"{"error":"key not found"}"#, self.framing);
                404
            }
            Err(status) => status,
        }
    }

    /// What the cache holds for `key`, or the status of the failure answered.
    async fn stored(&self, key: &str, out: &mut Vec<u8>) -> Result<Stored, u16> {
        let store = self.api.shared.router.routes[self.route].store;
        let read = |e: Option<&crate::store::entry::Entry>| e.map(|e| (e.etag().to_vec(), e.body().to_vec()));
        self.api.store(store).read(key, read).await.map_err(|e| store_failed(out, self.framing, &e))
    }

    /// Produces, waits until the owner applied the record, then answers
    /// `status` with the body as stored (or `removed`, for a DELETE).
    async fn produce(&self, key: &str, body: Option<Value>, status: u16, removed: Stored, out: &mut Vec<u8>) -> u16 {
        let position = match self.writer.write(self.topic, key, body).await {
            Ok(p) => p,
            Err(e) => {
                response::error(out, e.status(), &e.to_string(), self.framing);
                return e.status();
            }
        };
        let header = format!("{}/{}/{}", position.topic, position.partition, position.offset);
        if let Some(status) = self.wait_applied(key, &position, &header, out).await {
            return status;
        }
        let is_delete = removed.is_some();
        let shown = match removed {
            Some(r) => Some(r),
            None => match self.stored(key, out).await {
                Ok(s) => s,
                Err(status) => return status,
            },
        };
        let Some((etag, stored)) = shown else {
            let reason = format!(
                "written to Kafka at {header} and applied, but the store does not hold the key: its `schemas` \
                 may exclude this record type, or another writer deleted it"
            );
            response::error_with(out, 500, &reason, &[("Kafka-Position", header.as_bytes())], self.framing);
            return 500;
        };
        let location = format!("{}/{}", self.api.shared.router.routes[self.route].full_path, encode_path_segment(key));
        let mut extra: Vec<(&str, &[u8])> = vec![("Kafka-Position", header.as_bytes()), ("ETag", &etag)];
        if status == 201 && !is_delete {
            extra.push(("Location", location.as_bytes()));
        }
        response::json(out, status, &extra, &stored, self.framing);
        status
    }

    /// Parks until the key's owner applied `position`: `Some(status)` when
    /// it answered instead (504 when that took longer than the write timeout).
    async fn wait_applied(&self, key: &str, position: &Position, header: &str, out: &mut Vec<u8>) -> Option<u16> {
        let api = self.api;
        let min =
            vec![MinPosition { topic: position.topic.clone(), partition: position.partition, offset: position.offset }];
        let wait: Duration = api.shared.limits.write_timeout();
        let extra: &[(&str, &[u8])] = &[("Kafka-Position", header.as_bytes())];
        let store = api.shared.router.routes[self.route].store;
        match min_offset::wait_visible(api, store, Some(key), min, wait).await {
            Ok(Ok(())) => None,
            Ok(Err(_)) => {
                let reason = format!(
                    "written to Kafka at {header} but not applied within {} ms; \
                     GET with min_offset={header} to read it",
                    wait.as_millis()
                );
                response::error_with(out, 504, &reason, extra, self.framing);
                Some(504)
            }
            Err(_) => {
                response::error_with(out, 503, "shard unavailable, the server is shutting down", extra, self.framing);
                Some(503)
            }
        }
    }
}
