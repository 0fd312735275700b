//! Projections: a store configured with `fields: [a, b]` keeps only those
//! top-level fields of each record, cut once when the record is stored (by
//! ingest, POST or PUT), so reads serve the smaller body as stored. The ETag
//! is computed on what is kept: `"{updatedAt}"` when `updatedAt` is kept,
//! else the hash of the kept body.

use super::value::StoredValue;
use serde_json::{Map, Value};

/// The value with only `fields` of its top-level object, in the record's
/// own field order. A body that is not a JSON object has no fields to pick
/// and is kept as it is.
pub fn project(value: &StoredValue, fields: &[String]) -> StoredValue {
    match serde_json::from_slice::<Map<String, Value>>(&value.body) {
        Ok(object) => project_object(object, fields),
        Err(_) => value.clone(),
    }
}

/// Keeps `fields` of `object` and builds the stored value from them.
pub fn project_object(mut object: Map<String, Value>, fields: &[String]) -> StoredValue {
    object.retain(|name, _| fields.iter().any(|f| f == name));
    StoredValue::from_json(&Value::Object(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_the_named_fields_in_record_order() {
        let v = StoredValue::new(br#"{"accountId":"a1","name":"N","phone":"1","updatedAt":7}"#.to_vec(), Some(7));
        let p = project(&v, &fields(&["name", "accountId", "missing"]));
        assert_eq!(&p.body[..], br#"{"accountId":"a1","name":"N"}"#);
        assert_eq!(p.etag, StoredValue::new(p.body.to_vec(), None).etag, "no updatedAt kept: the body hash");
        let with_time = project(&v, &fields(&["accountId", "updatedAt"]));
        assert_eq!(
            (&with_time.body[..], &with_time.etag[..]),
            (&br#"{"accountId":"a1","updatedAt":7}"#[..], &b"\"7\""[..])
        );
    }

    #[test]
    fn a_non_object_is_kept() {
        let v = StoredValue::new(b"\"text\"".to_vec(), None);
        assert_eq!(project(&v, &fields(&["a"])), v);
    }
}
