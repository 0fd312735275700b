//! Message keys written with a schema (Kafka Connect, ksqlDB, Confluent's
//! serializers on the key) -> the cache key text, the way those tools show
//! them: a primitive is its text (a string as it is, a number in decimal), a
//! record or message of one field is that field's text, and one of several
//! fields is its compact JSON.
//!
//! Whether a key is framed at all is the caller's call (`kafka.key_format`,
//! and whether the registry knows the ID): this module only turns a key
//! datum and its schema into text.

use super::{avro, json, DecodeError, ParsedSchema};
use serde_json::Value;

/// The cache key for a framed key datum (the bytes after the 5-byte header).
pub fn decode_key(schema: &ParsedSchema, datum: &[u8]) -> Result<String, DecodeError> {
    let json = match schema {
        ParsedSchema::Avro(s) => avro::decode_any(s, datum)?,
        ParsedSchema::Protobuf(s) => s.decode_key(datum)?,
        ParsedSchema::Json(_) => json::decode_any(datum)?,
    };
    key_text(&json)
}

/// The text of a key's JSON: primitives as text, a one-field object as its
/// field, anything else as compact JSON.
pub fn key_text(json: &[u8]) -> Result<String, DecodeError> {
    let value: Value = serde_json::from_slice(json).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let value = match value {
        Value::Object(fields) if fields.len() == 1 => fields.into_iter().next().map(|(_, v)| v).unwrap_or(Value::Null),
        Value::Object(_) | Value::Array(_) => return Ok(String::from_utf8_lossy(json).into_owned()),
        other => other,
    };
    Ok(match value {
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        nested => nested.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{SchemaSource, SchemaType};
    use super::*;
    use apache_avro::types::Value as Avro;

    fn avro(schema: &str, value: Avro) -> String {
        let parsed = ParsedSchema::compile(&SchemaSource {
            schema_type: SchemaType::Avro,
            text: schema.into(),
            references: vec![],
        })
        .unwrap();
        let ParsedSchema::Avro(s) = &parsed else { unreachable!() };
        #[allow(deprecated)]
        let datum = apache_avro::to_avro_datum(s.schema(), value).unwrap();
        decode_key(&parsed, &datum).unwrap()
    }

    #[test]
    fn avro_keys_as_connect_shows_them() {
        assert_eq!(avro(r#""string""#, Avro::String("acct-1".into())), "acct-1");
        assert_eq!(avro(r#""long""#, Avro::Long(-42)), "-42");
        assert_eq!(avro(r#""int""#, Avro::Int(7)), "7");
        let one = r#"{"type":"record","name":"K","fields":[{"name":"id","type":"long"}]}"#;
        assert_eq!(avro(one, Avro::Record(vec![("id".into(), Avro::Long(9))])), "9");
        let two = r#"{"type":"record","name":"K","fields":[{"name":"a","type":"string"},{"name":"b","type":"int"}]}"#;
        let value = Avro::Record(vec![("a".into(), Avro::String("x\"y".into())), ("b".into(), Avro::Int(2))]);
        assert_eq!(avro(two, value), r#"{"a":"x\"y","b":2}"#);
    }

    #[test]
    fn json_keys() {
        let parsed = ParsedSchema::compile(&SchemaSource {
            schema_type: SchemaType::Json,
            text: "{}".into(),
            references: vec![],
        })
        .unwrap();
        assert_eq!(decode_key(&parsed, b"\"k\"").unwrap(), "k");
        assert_eq!(decode_key(&parsed, b"{\"id\": 12}").unwrap(), "12");
        assert_eq!(decode_key(&parsed, b"{\"a\": 1, \"b\": [true]}").unwrap(), r#"{"a":1,"b":[true]}"#);
        assert!(decode_key(&parsed, b"{").is_err());
    }

    #[test]
    fn protobuf_keys_keep_default_fields() {
        let text = "syntax = \"proto3\";\nmessage Key { int64 id = 1; }\n";
        let parsed = ParsedSchema::compile(&SchemaSource {
            schema_type: SchemaType::Protobuf,
            text: text.into(),
            references: vec![],
        })
        .unwrap();
        assert_eq!(decode_key(&parsed, &[0, 0x08, 0x05]).unwrap(), "5");
        assert_eq!(decode_key(&parsed, &[0]).unwrap(), "0", "a default-valued field is still the key");
    }
}
