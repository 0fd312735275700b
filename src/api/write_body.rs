//! The JSON body of a write (POST, PUT) on a route: one object, and the key
//! it names in the route's `key_field`. Shared by the cache-only handlers
//! and the writes that go through Kafka (`write_through`).

use serde_json::{Map, Value};

/// The request body as a JSON object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, String> {
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
pub fn key_of(object: Map<String, Value>, key_field: &str) -> Result<(String, Map<String, Value>), String> {
    match key_text(&object, key_field) {
        Some(key) => Ok((key, object)),
        None => Err(format!("missing key field `{key_field}` (a non-empty string)")),
    }
}

/// A PUT body may omit the key field; when it has one it must name the path's key.
pub fn matching_key(object: Map<String, Value>, key_field: &str, key: &str) -> Result<Map<String, Value>, String> {
    match object.get(key_field).map(|_| key_text(&object, key_field)) {
        Some(Some(named)) if named != key => {
            Err(format!("body's `{key_field}` is `{named}` but the path names `{key}`; they must agree"))
        }
        Some(None) => Err(format!("`{key_field}` must be a non-empty string or a number")),
        _ => Ok(object),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::value::StoredValue;

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
}
