//! Protobuf and JSON Schema values (`kafka::decode::protobuf`, `json`) and
//! schema-framed keys (`kafka::decode::key`) over arbitrary payloads, as they
//! come off a topic. A poison record must be an error, never a panic, a hang
//! or a huge allocation, and whatever decodes must be valid JSON, since the
//! bytes are served as is.
//!
//! The Protobuf schema has nested and repeated messages, a map, an enum, a
//! oneof, packed scalars of every width and well-known types; the second
//! (`PLAIN`) has no maps and no well-known types but `Timestamp` and
//! `Duration`, so it takes the fast path
//! (wire bytes straight to JSON), which must write exactly what the
//! `DynamicMessage` path writes, or give up. The first payload byte picks the
//! schema, the rest is what follows the 5-byte header (message indexes, then
//! the message, for Protobuf).
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_cache::kafka::decode::key::decode_key;
use push_cache::kafka::decode::protobuf::ProtoSchema;
use push_cache::kafka::decode::{ParsedSchema, SchemaSource, SchemaType};
use std::sync::OnceLock;

const PROTO: &str = r#"syntax = "proto3";
package fuzz;
import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/any.proto";
message Everything {
  string id = 1;
  int64 updated_at = 2;
  repeated sint32 small = 3;
  repeated fixed64 wide = 4;
  repeated double ratios = 5;
  bytes raw = 6;
  Colour colour = 7;
  map<string, Everything> children = 8;
  oneof choice { string text = 9; uint64 count = 10; }
  google.protobuf.Timestamp at = 11;
  google.protobuf.Duration wait = 12;
  google.protobuf.Struct extra = 13;
  google.protobuf.Int64Value maybe = 14;
  google.protobuf.Any any = 15;
  repeated Nested nested = 16;
  float f = 17;
  bool flag = 18;
  enum Colour { RED = 0; GREEN = 1; }
  message Nested { Everything inner = 1; sfixed32 n = 2; }
}
message Key { string id = 1; }
"#;

const PLAIN: &str = r#"syntax = "proto3";
package fuzz;
import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
message Plain {
  string id = 1;
  int64 updated_at = 2;
  repeated sint32 small = 3;
  repeated fixed64 wide = 4;
  repeated double ratios = 5;
  bytes raw = 6;
  Colour colour = 7;
  repeated Plain children = 8;
  oneof choice { string text = 9; uint64 count = 10; Inner boxed = 11; }
  optional int32 maybe = 12;
  repeated Colour colours = 13;
  float f = 17;
  bool flag = 18;
  sint64 s64 = 19;
  sfixed32 sf32 = 20;
  uint32 u32 = 21;
  repeated string names = 22;
  google.protobuf.Timestamp at = 23;
  repeated google.protobuf.Duration waits = 24;
  enum Colour { RED = 0; GREEN = 1; }
  message Inner { Plain inner = 1; sfixed32 n = 2; }
}
"#;

fn schemas() -> &'static [ParsedSchema] {
    static SCHEMAS: OnceLock<Vec<ParsedSchema>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let source = |schema_type, text: &str| SchemaSource {
            schema_type,
            text: text.into(),
            references: vec![],
        };
        [
            source(SchemaType::Protobuf, PROTO),
            source(SchemaType::Json, r#"{"title":"fuzz.Thing","type":"object"}"#),
            source(SchemaType::Protobuf, PLAIN),
        ]
        .iter()
        .map(|s| ParsedSchema::compile(s).expect("the fuzz schemas are valid"))
        .collect()
    })
}

fuzz_target!(|payload: &[u8]| {
    let Some((&pick, datum)) = payload.split_first() else {
        return;
    };
    let schema = &schemas()[usize::from(pick) % schemas().len()];
    if let Ok((_, value)) = schema.decode_value(datum) {
        assert_json(&value.body);
        assert!(value.etag.starts_with(b"\"") && value.etag.ends_with(b"\"") && value.etag.len() >= 2);
    }
    let _ = decode_key(schema, datum);
    if let ParsedSchema::Protobuf(proto) = schema {
        same_as_reflect(proto, datum);
    }
});

/// The fast path against `DynamicMessage`: byte for byte when it answers;
/// otherwise `decode_value` is the reflect path, equal up to map order
/// (a `DynamicMessage` keeps maps in a `HashMap`).
fn same_as_reflect(proto: &ProtoSchema, datum: &[u8]) {
    let slow = proto.decode_value_reflect(datum);
    match (proto.decode_value_fast(datum), &slow) {
        (Some(Ok(fast)), Ok(slow)) => assert!(
            fast == *slow,
            "fast path differs:\nfast {}\nslow {}",
            String::from_utf8_lossy(&fast.1.body),
            String::from_utf8_lossy(&slow.1.body)
        ),
        (Some(Err(e)), Ok(_)) => panic!("fast path refused what the reflect path took: {e}"),
        (Some(Ok(_)), Err(e)) => panic!("fast path took what the reflect path refused: {e}"),
        (Some(Err(_)), Err(_)) => {}
        (None, _) => match (proto.decode_value(datum), slow) {
            (Ok(a), Ok(b)) => {
                let parse = |body: &[u8]| serde_json::from_slice::<serde_json::Value>(body).unwrap();
                assert_eq!((a.0, parse(&a.1.body)), (b.0, parse(&b.1.body)));
            }
            (Err(_), Err(_)) => {}
            (a, b) => panic!("decode_value {a:?}, reflect {b:?}"),
        },
    }
}

/// Whatever decodes is served as is, so it must be JSON text. A number
/// beyond f64 (`1e400`, kept as written) is valid JSON that serde_json's
/// `Value` cannot hold: then the grammar alone is checked (`IgnoredAny`)
/// and the text must be UTF-8 (the decoder checks string escapes itself).
fn assert_json(body: &[u8]) {
    let Err(e) = serde_json::from_slice::<serde_json::Value>(body) else { return };
    let text = String::from_utf8_lossy(body);
    assert!(e.to_string().starts_with("number out of range"), "decoded body is not JSON ({e}): {text}");
    assert!(std::str::from_utf8(body).is_ok(), "decoded body is not UTF-8: {text}");
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        panic!("decoded body is not JSON ({e}): {text}");
    }
}
