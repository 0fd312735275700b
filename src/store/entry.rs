//! One cached key as a shard keeps it: key, ETag and JSON body in a single
//! reference-counted allocation.
//!
//! One allocation per key keeps resident memory close to the raw bytes of the
//! keys and bodies, and lets the owner hand an entry to another shard (a
//! forwarded GET) by bumping a reference count instead of copying the body.

use super::value::StoredValue;
use std::sync::Arc;

/// Layout: `[key_len: u32 LE][etag_len: u16 LE][key][etag][body]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry(Arc<[u8]>);

const HEADER: usize = 6;

/// A key or ETag too long for the entry layout.
#[derive(Debug, thiserror::Error)]
#[error("key of {0} bytes is too long to cache (the limit is 4 GiB for keys and 64 KiB for ETags)")]
pub struct TooLong(pub usize);

impl Entry {
    pub fn new(key: &str, value: &StoredValue) -> Result<Entry, TooLong> {
        Entry::from_parts(key.as_bytes(), &value.etag, &value.body)
    }

    pub fn from_parts(key: &[u8], etag: &[u8], body: &[u8]) -> Result<Entry, TooLong> {
        let klen = u32::try_from(key.len()).map_err(|_| TooLong(key.len()))?;
        let elen = u16::try_from(etag.len()).map_err(|_| TooLong(etag.len()))?;
        let mut buf = Vec::with_capacity(HEADER + key.len() + etag.len() + body.len());
        buf.extend_from_slice(&klen.to_le_bytes());
        buf.extend_from_slice(&elen.to_le_bytes());
        buf.extend_from_slice(key);
        buf.extend_from_slice(etag);
        buf.extend_from_slice(body);
        Ok(Entry(Arc::from(buf)))
    }

    fn key_len(&self) -> usize {
        u32::from_le_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]) as usize
    }

    fn etag_len(&self) -> usize {
        u16::from_le_bytes([self.0[4], self.0[5]]) as usize
    }

    pub fn key(&self) -> &[u8] {
        &self.0[HEADER..HEADER + self.key_len()]
    }

    /// The key as text; keys are checked to be UTF-8 before they are stored.
    pub fn key_str(&self) -> &str {
        std::str::from_utf8(self.key()).unwrap_or("")
    }

    /// The ETag header value, quotes included.
    pub fn etag(&self) -> &[u8] {
        let start = HEADER + self.key_len();
        &self.0[start..start + self.etag_len()]
    }

    /// The JSON body, exactly as served.
    pub fn body(&self) -> &[u8] {
        &self.0[HEADER + self.key_len() + self.etag_len()..]
    }

    /// Heap bytes this entry holds (for the per-store byte gauges).
    pub fn weight(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let v = StoredValue::new(br#"{"a":1}"#.to_vec(), Some(9));
        let e = Entry::new("acct-1", &v).unwrap();
        assert_eq!(e.key(), b"acct-1");
        assert_eq!(e.key_str(), "acct-1");
        assert_eq!(e.etag(), b"\"9\"");
        assert_eq!(e.body(), br#"{"a":1}"#);
        assert_eq!(e.weight(), 6 + 6 + 3 + 7);
    }

    #[test]
    fn empty_body_and_key() {
        let e = Entry::from_parts(b"", b"", b"").unwrap();
        assert!(e.key().is_empty() && e.etag().is_empty() && e.body().is_empty());
    }
}
