//! The stored value: the exact JSON body a GET returns, plus its ETag.
//!
//! A value is serialised once, on the write path (Kafka ingest or POST), so the
//! read path only copies bytes. `Bytes` makes handing a value to another shard
//! a reference-count bump rather than a copy.

use bytes::Bytes;

/// What a shard keeps per key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredValue {
    /// The JSON body served by `GET`, byte for byte.
    pub body: Bytes,
    /// The ETag header value, quotes included (`"1700000500042"`).
    pub etag: Bytes,
}

impl StoredValue {
    /// Builds a value from its JSON body. The ETag is `"{updatedAt}"` when the
    /// caller knows the record's `updatedAt`, else a strong hash of the body.
    pub fn new(body: Vec<u8>, updated_at: Option<i64>) -> Self {
        let etag = match updated_at {
            Some(ts) => format!("\"{ts}\""),
            None => format!("\"{:016x}\"", body_hash(&body)),
        };
        StoredValue { body: Bytes::from(body), etag: Bytes::from(etag) }
    }

    /// Builds a value from a JSON object, taking `updatedAt` from it when it is
    /// an integer. Used by POST, whose body arrives as JSON text.
    pub fn from_json(value: &serde_json::Value) -> Self {
        let updated_at = value.get("updatedAt").and_then(serde_json::Value::as_i64);
        let body = serde_json::to_vec(value).expect("serialising a serde_json::Value cannot fail");
        StoredValue::new(body, updated_at)
    }
}

/// FNV-1a, 64 bits: stable across processes and versions, so every instance
/// hands out the same ETag for the same body.
fn body_hash(body: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_from_updated_at() {
        let v = StoredValue::new(b"{}".to_vec(), Some(42));
        assert_eq!(&v.etag[..], b"\"42\"");
    }

    #[test]
    fn etag_hash_is_stable_and_body_dependent() {
        let a = StoredValue::new(b"{\"a\":1}".to_vec(), None);
        let b = StoredValue::new(b"{\"a\":1}".to_vec(), None);
        let c = StoredValue::new(b"{\"a\":2}".to_vec(), None);
        assert_eq!(a.etag, b.etag);
        assert_ne!(a.etag, c.etag);
        assert_eq!(a.etag.len(), 18);
    }

    #[test]
    fn from_json_reads_updated_at() {
        let v = StoredValue::from_json(&serde_json::json!({"accountId": "x", "updatedAt": 7}));
        assert_eq!(&v.etag[..], b"\"7\"");
        assert_eq!(&v.body[..], br#"{"accountId":"x","updatedAt":7}"#);
    }
}
