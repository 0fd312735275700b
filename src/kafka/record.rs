//! One Kafka message in, one decoded record (or the reason it is skipped)
//! out. This is the single place where a message's key and value are turned
//! into what the stores keep; every consumer loop (the in-memory stores'
//! consumer, each Redis store's feed) calls it and then only routes.
//!
//! The decoder owns the schema cache, so a writer schema is fetched once per
//! ID for the life of the decoder, and an unreachable registry is waited out
//! (never a skip): see `schemas`.
//!
//! Values are Avro, Protobuf or JSON Schema in Confluent's wire format, told
//! apart by the registry's answer for their schema ID. Keys are text, or
//! (under `kafka.key_format: auto`) framed the same way with a schema the
//! registry knows, then decoded to text by `decode::key`. A key that only
//! looks framed (byte 0 and an ID the registry does not know, or bytes its
//! schema cannot read) is taken as its text, as under `key_format: string`.

use super::decode::key::decode_key;
use super::decode::{parse_frame, ParsedSchema};
use super::registry_client::RegistryError;
use super::schemas::{SchemaCache, SchemaError};
use super::stats::Counters;
use crate::config::KeyFormat;
use crate::store::value::StoredValue;
use rdkafka::message::Message;
use std::sync::Arc;

/// Where a message sits in its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record's Kafka timestamp (ms since the epoch), when it has one.
    pub timestamp_ms: Option<i64>,
}

impl Origin {
    pub fn of(msg: &impl Message) -> Origin {
        Origin {
            topic: msg.topic().to_string(),
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp_ms: msg.timestamp().to_millis(),
        }
    }
}

/// What a message means for the stores.
#[derive(Debug)]
pub enum Decoded {
    /// The latest value of `key`, of record type `record_type`.
    Upsert { key: String, record_type: String, value: StoredValue },
    /// A null value: `key` is removed from the stores the topic feeds.
    Tombstone { key: String },
}

/// Why a message was not decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum NotDecoded {
    /// Unusable: skip it and count it under this reason.
    Skip(&'static str),
    /// The consumer was asked to stop while waiting for the registry.
    Stopped,
}

/// Decodes messages with writer schemas from the registry.
pub struct RecordDecoder {
    schemas: SchemaCache,
    key_format: KeyFormat,
}

impl RecordDecoder {
    /// A decoder that reads keys as `kafka.key_format: auto` says.
    pub fn new(schemas: SchemaCache) -> RecordDecoder {
        RecordDecoder { schemas, key_format: KeyFormat::Auto }
    }

    /// Reads keys as `key_format` says (`kafka.key_format`).
    pub fn with_key_format(mut self, key_format: KeyFormat) -> RecordDecoder {
        self.key_format = key_format;
        self
    }

    /// Decodes `msg`. `stop` and `waiting` are passed to the schema cache:
    /// a registry outage blocks here, retried, until it answers or `stop()`.
    pub fn decode(
        &mut self,
        msg: &impl Message,
        counters: &mut Counters,
        stop: &dyn Fn() -> bool,
        waiting: &mut dyn FnMut(Option<&RegistryError>, &mut Counters),
    ) -> Result<Decoded, NotDecoded> {
        self.decode_parts(msg.key(), msg.payload(), counters, stop, waiting)
    }

    /// Decodes a message given as its key and value bytes (tools that read
    /// a topic without a consumer, tests).
    pub fn decode_parts(
        &mut self,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        counters: &mut Counters,
        stop: &dyn Fn() -> bool,
        waiting: &mut dyn FnMut(Option<&RegistryError>, &mut Counters),
    ) -> Result<Decoded, NotDecoded> {
        let key = self.key(key.ok_or(NotDecoded::Skip("missing_key"))?, counters, stop, waiting)?;
        let Some(payload) = payload else { return Ok(Decoded::Tombstone { key }) };
        let (id, datum) = parse_frame(payload).map_err(|e| NotDecoded::Skip(e.reason()))?;
        let schema = self.schema(id, counters, stop, waiting)?;
        let (record_type, value) = schema.decode_value(datum).map_err(|e| NotDecoded::Skip(e.reason()))?;
        Ok(Decoded::Upsert { key, record_type, value })
    }

    fn schema(
        &mut self,
        id: u32,
        counters: &mut Counters,
        stop: &dyn Fn() -> bool,
        waiting: &mut dyn FnMut(Option<&RegistryError>, &mut Counters),
    ) -> Result<Arc<ParsedSchema>, NotDecoded> {
        match self.schemas.get(id, counters, stop, waiting) {
            Ok(s) => Ok(s),
            Err(SchemaError::Unknown(_)) => Err(NotDecoded::Skip("unknown_schema")),
            Err(SchemaError::Unusable { .. }) => Err(NotDecoded::Skip("bad_schema")),
            Err(SchemaError::Stopped) => Err(NotDecoded::Stopped),
        }
    }

    /// The cache key: a framed key decoded with its schema (under `auto`),
    /// else the key's UTF-8 text.
    fn key(
        &mut self,
        raw: &[u8],
        counters: &mut Counters,
        stop: &dyn Fn() -> bool,
        waiting: &mut dyn FnMut(Option<&RegistryError>, &mut Counters),
    ) -> Result<String, NotDecoded> {
        if self.key_format == KeyFormat::Auto {
            if let Ok((id, datum)) = parse_frame(raw) {
                match self.schema(id, counters, stop, waiting) {
                    Ok(schema) => {
                        if let Ok(text) = decode_key(&schema, datum) {
                            return Ok(text);
                        }
                    }
                    Err(NotDecoded::Stopped) => return Err(NotDecoded::Stopped),
                    Err(NotDecoded::Skip(_)) => {}
                }
            }
        }
        match std::str::from_utf8(raw) {
            Ok(text) => Ok(text.to_string()),
            Err(_) => Err(NotDecoded::Skip("key_not_utf8")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::decode::encode_frame;
    use crate::kafka::registry_client::RegistryClient;
    use crate::registry::server;

    const VALUE: &str =
        r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[{"name":"n","type":"long"}]}"#;

    struct Setup {
        _registry: server::RegistryHandle,
        decoder: RecordDecoder,
        key_id: u32,
        value_id: u32,
        counters: Counters,
    }

    fn setup(key_format: KeyFormat) -> Setup {
        let registry = server::spawn("127.0.0.1:0", None, None).unwrap();
        let client = RegistryClient::new(&format!("http://{}", registry.addr)).unwrap();
        let key_id = client.register("t-key", r#""string""#).unwrap();
        let value_id = client.register("t-value", VALUE).unwrap();
        let decoder = RecordDecoder::new(SchemaCache::new(client)).with_key_format(key_format);
        Setup { _registry: registry, decoder, key_id, value_id, counters: Counters::default() }
    }

    impl Setup {
        fn decode(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<Decoded, NotDecoded> {
            self.decoder.decode_parts(Some(key), value, &mut self.counters, &|| false, &mut |_, _| {})
        }

        fn key_of(&mut self, key: &[u8]) -> String {
            match self.decode(key, Some(&encode_frame(self.value_id, &[14]))) {
                Ok(Decoded::Upsert { key, record_type, value }) => {
                    assert_eq!((record_type.as_str(), &value.body[..]), ("customer", &br#"{"n":7}"#[..]));
                    key
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// An Avro string datum: zig-zag length, then the bytes.
    fn avro_string(s: &str) -> Vec<u8> {
        let mut out = vec![(s.len() as u8) << 1];
        out.extend_from_slice(s.as_bytes());
        out
    }

    #[test]
    fn framed_keys_are_decoded_with_their_schema() {
        let mut s = setup(KeyFormat::Auto);
        let framed = encode_frame(s.key_id, &avro_string("acct-1"));
        assert_eq!(s.key_of(&framed), "acct-1");
        assert_eq!(s.key_of(b"plain-key"), "plain-key");
        match s.decode(&framed, None) {
            Ok(Decoded::Tombstone { key }) => assert_eq!(key, "acct-1", "a tombstone's framed key is decoded too"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keys_that_only_look_framed_stay_text_and_the_miss_is_remembered() {
        let mut s = setup(KeyFormat::Auto);
        let lookalike = b"\0\0\0\x7f\x7fabc";
        assert_eq!(s.key_of(lookalike).as_bytes(), lookalike);
        let fetches = s.counters.schema_fetches;
        assert_eq!(s.key_of(lookalike).as_bytes(), lookalike);
        assert_eq!(s.counters.schema_fetches, fetches, "a 404 is not asked again at once");
        // A known key schema whose datum does not fit it: the bytes, as text.
        let misfit = encode_frame(s.key_id, b"\x7f");
        assert_eq!(s.key_of(&misfit).as_bytes(), &misfit[..]);
        assert_eq!(s.decode(b"\0\0\0\x7f\x7f\xff", None).unwrap_err(), NotDecoded::Skip("key_not_utf8"));
    }

    #[test]
    fn key_format_string_takes_every_key_as_text() {
        let mut s = setup(KeyFormat::String);
        let framed = encode_frame(s.key_id, &avro_string("acct-1"));
        assert_eq!(s.key_of(&framed).as_bytes(), &framed[..]);
    }

    #[test]
    fn values_of_unusable_schemas_are_skipped_by_reason() {
        let mut s = setup(KeyFormat::Auto);
        let key_id = s.key_id;
        assert_eq!(
            s.decode(b"k", Some(&encode_frame(key_id, &avro_string("x")))).unwrap_err(),
            NotDecoded::Skip("not_a_record")
        );
        assert_eq!(s.decode(b"k", Some(&encode_frame(9999, &[]))).unwrap_err(), NotDecoded::Skip("unknown_schema"));
        assert_eq!(s.decode(b"k", Some(&[1, 0])).unwrap_err(), NotDecoded::Skip("bad_magic"));
    }
}
