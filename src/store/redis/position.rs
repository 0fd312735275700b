//! Where a Redis store's feed stands, kept in Redis next to the data it
//! covers: one hash per store, `{prefix}:\xffpush-cache:offsets` (without a
//! prefix: `\xffpush-cache:offsets`).
//!
//! The byte 0xFF never occurs in UTF-8, and every cache key is UTF-8 (Kafka
//! keys that are not are skipped; HTTP keys are percent-decoded UTF-8), so
//! this key can never be a cache key, whatever the topic holds. It is one
//! key, so in a cluster it lives in one slot on one node.
//!
//! Fields:
//! - `{topic}/{partition}` -> the next offset to apply (everything below it
//!   is in Redis). A topic name cannot contain `/`.
//! - `fed:{topic}` -> `1` once a record of a type the store accepts came
//!   from that topic: tombstones on that topic then delete from the store,
//!   also after a restart that resumes past those records. A topic name
//!   cannot contain `:`.

use std::collections::{BTreeMap, BTreeSet};

const OFFSETS: &[u8] = b"\xffpush-cache:offsets";
const FED: &str = "fed:";

/// The Redis key of a store's position hash.
pub fn offsets_key(prefix: Option<&str>) -> Vec<u8> {
    match prefix {
        Some(p) => [p.as_bytes(), b":", OFFSETS].concat(),
        None => OFFSETS.to_vec(),
    }
}

pub fn offset_field(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

pub fn fed_field(topic: &str) -> String {
    format!("{FED}{topic}")
}

/// A store's position as read back from Redis.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoredPosition {
    /// (topic, partition) -> next offset to apply.
    pub offsets: BTreeMap<(String, i32), i64>,
    /// Topics whose tombstones delete from this store.
    pub fed_topics: BTreeSet<String>,
}

impl StoredPosition {
    /// Reads the hash's fields; fields it does not know are logged and ignored.
    pub fn parse(fields: Vec<(Vec<u8>, Vec<u8>)>) -> StoredPosition {
        let mut position = StoredPosition::default();
        for (field, value) in fields {
            let (field, value) = (String::from_utf8_lossy(&field), String::from_utf8_lossy(&value));
            if let Some(topic) = field.strip_prefix(FED) {
                position.fed_topics.insert(topic.to_string());
                continue;
            }
            let parsed = field
                .rsplit_once('/')
                .and_then(|(t, p)| Some((t.to_string(), p.parse::<i32>().ok()?, value.parse::<i64>().ok()?)));
            match parsed {
                Some((topic, partition, next)) => {
                    position.offsets.insert((topic, partition), next);
                }
                None => tracing::warn!(%field, %value, "ignoring an unknown field in a Redis store's position hash"),
            }
        }
        position
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_cannot_be_a_cache_key_and_fields_round_trip() {
        let key = offsets_key(Some("cust"));
        assert!(key.starts_with(b"cust:") && std::str::from_utf8(&key).is_err());
        assert!(std::str::from_utf8(&offsets_key(None)).is_err());
        let fields = vec![
            (offset_field("customers", 1).into_bytes(), b"42".to_vec()),
            (fed_field("customers").into_bytes(), b"1".to_vec()),
            (b"junk".to_vec(), b"x".to_vec()),
        ];
        let p = StoredPosition::parse(fields);
        assert_eq!(p.offsets, BTreeMap::from([(("customers".to_string(), 1), 42)]));
        assert_eq!(p.fed_topics, BTreeSet::from(["customers".to_string()]));
    }
}
