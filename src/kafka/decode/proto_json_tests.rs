//! The fast path (`proto_json`) against `prost-reflect` (`decode_value_reflect`):
//! seeded random messages of every field kind, encoded by `DynamicMessage`,
//! then also merged, reordered, truncated and flipped on the wire; both paths
//! must agree byte for byte, or both refuse.

use super::*;
use crate::kafka::decode::test_rng::Rng;
use prost_reflect::{MapKey, ReflectMessage};

const PROTO: &str = r#"
syntax = "proto3";
package diff;
import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
message All {
  double d = 1; float f = 2; int32 i32 = 3; int64 i64 = 4; uint32 u32 = 5; uint64 u64 = 6;
  sint32 s32 = 7; sint64 s64 = 8; fixed32 fx32 = 9; fixed64 fx64 = 10; sfixed32 sf32 = 11; sfixed64 sf64 = 12;
  bool b = 13; string s = 14; bytes by = 15; Colour colour = 16; Inner inner = 17;
  repeated double rd = 18; repeated int32 ri32 = 19; repeated sint64 rs64 = 20; repeated fixed32 rfx32 = 21;
  repeated bool rb = 22; repeated string rs = 23; repeated bytes rby = 24; repeated Colour rcolour = 25;
  repeated Inner rinner = 26; repeated uint64 ru64 = 27 [packed = false]; repeated float rf = 36;
  oneof choice { string text = 28; uint64 count = 29; Inner boxed = 30; }
  optional int32 maybe = 31; optional string maybe_s = 32;
  int64 updated_at = 33;
  string odd_name = 34 [json_name = "odd\"Name"];
  All child = 35;
  uint32 far = 1000;
  enum Colour { RED = 0; GREEN = 1; BLUE = 2; }
  message Inner { string text = 1; sint64 n = 2; All back = 3; }
}
message WithMap { map<string, int32> m = 1; string s = 2; }
message WithTime {
  int32 n = 1; google.protobuf.Timestamp at = 2; repeated google.protobuf.Duration waits = 3; Inner inner = 4;
  message Inner { google.protobuf.Timestamp at = 1; }
}
message Proto2Like { string s = 1; }
"#;

const PROTO2: &str = r#"
syntax = "proto2";
package diff2;
message Two {
  optional int32 a = 1; optional string s = 2 [default = "x"]; repeated int64 r = 3;
  repeated sint32 p = 4 [packed = true]; optional Colour c = 5 [default = BLUE]; optional Two child = 6;
  required bool flag = 7; optional double d = 8; optional uint64 updated_at = 9; repeated Colour cs = 10;
  enum Colour { RED = 1; BLUE = 2; }
}
"#;

fn value(rng: &mut Rng, kind: &Kind, depth: usize) -> Value {
    match kind {
        Kind::Double => Value::F64(rng.float()),
        Kind::Float => Value::F32(rng.float() as f32),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(rng.u64() as i32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(rng.u64() as i64),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(rng.u64() as u32),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(rng.u64()),
        Kind::Bool => Value::Bool(rng.chance(50)),
        Kind::String => Value::String(rng.string()),
        Kind::Bytes => Value::Bytes(rng.bytes().into()),
        Kind::Enum(_) => Value::EnumNumber(rng.pick(&[0, 1, 2, 7, -3])),
        Kind::Message(m) => Value::Message(message(rng, m, depth + 1)),
    }
}

fn message(rng: &mut Rng, desc: &MessageDescriptor, depth: usize) -> DynamicMessage {
    let mut m = DynamicMessage::new(desc.clone());
    if desc.full_name() == "google.protobuf.Timestamp" {
        m.set_field_by_name("seconds", Value::I64(rng.pick(&[0, 1, -1, 1_700_000_000, 253_402_300_799, i64::MAX])));
        m.set_field_by_name("nanos", Value::I32(rng.pick(&[0, 1, 500_000_000, 999_999_999, -1])));
        return m;
    }
    if desc.full_name() == "google.protobuf.Duration" {
        let seconds = rng.pick(&[0, 1, -1, 315_576_000_000, 315_576_000_001, i64::MIN]);
        m.set_field_by_name("seconds", Value::I64(seconds));
        m.set_field_by_name("nanos", Value::I32(rng.pick(&[0, 1, -500_000_000, 999_999_999, 1_000_000_000])));
        return m;
    }
    for field in desc.fields() {
        let nested = matches!(field.kind(), Kind::Message(_));
        if !rng.chance(if nested && depth > 2 { 0 } else { 60 }) {
            continue;
        }
        let kind = field.kind();
        let v = if field.is_map() {
            let Kind::Message(entry) = &kind else { unreachable!() };
            let value_kind = entry.map_entry_value_field().kind();
            let map =
                (0..rng.below(4)).map(|_| (MapKey::String(rng.string()), value(rng, &value_kind, depth))).collect();
            Value::Map(map)
        } else if field.is_list() {
            Value::List((0..rng.below(5)).map(|_| value(rng, &kind, depth)).collect())
        } else {
            value(rng, &kind, depth)
        };
        m.set_field(&field, v);
    }
    m
}

/// The message's fields each encoded on their own (in number order).
fn field_pieces(m: &DynamicMessage) -> Vec<Vec<u8>> {
    m.fields()
        .map(|(field, v)| {
            let mut one = DynamicMessage::new(m.descriptor());
            one.set_field(&field, v.clone());
            one.encode_to_vec()
        })
        .filter(|piece| !piece.is_empty())
        .collect()
}

/// Wire variants of a message: as encoded, merged with another, fields
/// shuffled, truncated, one byte changed.
fn variants(rng: &mut Rng, m: &DynamicMessage, other: &DynamicMessage) -> Vec<Vec<u8>> {
    let canonical = m.encode_to_vec();
    let mut merged = canonical.clone();
    merged.extend_from_slice(&other.encode_to_vec());
    let mut pieces = field_pieces(m);
    for i in (1..pieces.len()).rev() {
        pieces.swap(i, rng.below(i + 1));
    }
    let mut out = vec![canonical.clone(), merged, pieces.concat()];
    if !canonical.is_empty() {
        out.push(canonical[..rng.below(canonical.len())].to_vec());
        let mut flipped = canonical.clone();
        let at = rng.below(flipped.len());
        flipped[at] ^= 1 << rng.below(8);
        out.push(flipped);
    }
    out
}

/// Both paths on one datum: the same body, ETag and record type, or both errors.
fn compare(schema: &ProtoSchema, datum: &[u8], maps: bool) {
    let fast = schema.decode_value(datum);
    let slow = schema.decode_value_reflect(datum);
    match (fast, slow) {
        (Ok((kind_a, a)), Ok((kind_b, b))) if maps => {
            let parse = |body: &[u8]| serde_json::from_slice::<serde_json::Value>(body).unwrap();
            assert_eq!((kind_a, parse(&a.body)), (kind_b, parse(&b.body)), "{datum:?}");
        }
        (Ok(a), Ok(b)) => assert_eq!(
            a,
            b,
            "{datum:?}\nfast {}\nslow {}",
            String::from_utf8_lossy(&a.1.body),
            String::from_utf8_lossy(&b.1.body)
        ),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("{datum:?}: fast {a:?}, slow {b:?}"),
    }
}

/// Whether a `WithTime` holds a time out of the JSON mapping's range (which
/// the fast path leaves to the slow one and its error).
fn has_bad_time(m: &DynamicMessage) -> bool {
    let bad_at = |v: &Value| {
        let seconds = v.as_message().map(|t| t.get_field_by_name("seconds").unwrap().as_i64().unwrap());
        !(-62_135_596_800..=253_402_300_799).contains(&seconds.unwrap_or(0))
    };
    let bad_wait = |v: &Value| {
        let t = v.as_message().unwrap();
        let seconds = t.get_field_by_name("seconds").unwrap().as_i64().unwrap();
        let nanos = t.get_field_by_name("nanos").unwrap().as_i32().unwrap();
        seconds.unsigned_abs() > 315_576_000_000 || nanos.unsigned_abs() > 999_999_999
    };
    let field = |name: &str| m.descriptor().get_field_by_name(name).filter(|f| m.has_field(f)).map(|f| m.get_field(&f));
    let inner_at = field("inner").and_then(|v| {
        let inner = v.as_message()?.clone();
        let at = inner.descriptor().get_field_by_name("at")?;
        inner.has_field(&at).then(|| bad_at(&inner.get_field(&at)))
    });
    field("at").is_some_and(|v| bad_at(&v))
        || inner_at.unwrap_or(false)
        || field("waits").is_some_and(|v| v.as_list().unwrap().iter().any(bad_wait))
}

#[test]
fn fast_path_writes_what_prost_reflect_writes() {
    let schema = ProtoSchema::parse(PROTO, &[]).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut fast_taken = 0;
    let rounds = 3000;
    for round in 0..rounds {
        let index = if round % 4 == 3 { rng.below(4) as i64 } else { 0 };
        let desc = schema.file.messages().nth(index as usize).unwrap();
        let m = message(&mut rng, &desc, 0);
        let other = message(&mut rng, &desc, 0);
        for (i, wire) in variants(&mut rng, &m, &other).into_iter().enumerate() {
            let mut datum = encode_indexes(&[index]);
            datum.extend_from_slice(&wire);
            if (index == 0 || index == 2) && i == 0 && !has_bad_time(&m) {
                assert!(schema.decode_value_fast(&datum).is_some(), "{m:?}");
                fast_taken += 1;
            }
            compare(&schema, &datum, index == 1);
        }
    }
    assert!(fast_taken > rounds / 2);
}

#[test]
fn proto2_presence_and_closed_enums_alike() {
    let schema = ProtoSchema::parse(PROTO2, &[]).unwrap();
    let desc = schema.file.messages().next().unwrap();
    assert!(schema.message(&[0]).unwrap().fast.is_some());
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for _ in 0..1000 {
        let m = message(&mut rng, &desc, 0);
        let other = message(&mut rng, &desc, 0);
        for wire in variants(&mut rng, &m, &other) {
            compare(&schema, &[&[0][..], &wire].concat(), false);
        }
    }
}

#[test]
fn only_plain_messages_are_planned_fast() {
    let schema = ProtoSchema::parse(PROTO, &[]).unwrap();
    let fast: Vec<bool> = (0..4).map(|i| schema.message(&[i]).unwrap().fast.is_some()).collect();
    assert_eq!(fast, [true, false, true, true], "All, WithMap (a map), WithTime (a Timestamp), Proto2Like");
}

#[test]
fn fast_path_edge_cases() {
    let schema = ProtoSchema::parse(PROTO, &[]).unwrap();
    let cases: &[&[u8]] = &[
        &[],
        &[0x08, 0x00],                               // d with a varint: wrong wire type
        &[0x18, 0x00],                               // i32 = 0 on the wire: left out
        &[0x18, 0x01, 0x18, 0x02],                   // a singular field twice: the last wins
        &[0x20, 0x01, 0x18, 0x02],                   // out of order
        &[0xe2, 0x01, 0x01, b'a', 0xe8, 0x01, 0x05], // oneof text then count: count wins
        &[0x72, 0x02, 0xc3, 0x28],                   // s: invalid UTF-8
        &[0x9a, 0x01, 0x00, 0x9a, 0x01, 0x01, 0x08], // ri32 packed, empty then one
        &[0xb0, 0x01, 0x01, 0x9a, 0x01, 0x01, 0x08], // rb then ri32: out of order
        &[0x98, 0x01, 0x01, 0x9a, 0x01, 0x01, 0x08], // ri32 unpacked then packed
        &[0x98, 0x01, 0x01, 0x98, 0x01, 0x02],       // ri32 unpacked twice
        &[0x9a, 0x01, 0x02, 0x01],                   // packed run longer than the message
        &[0xf8, 0x07, 0x05],                         // an unknown field (127)
        &[0x0b, 0x0c],                               // d in group encoding
        &[0xa3, 0x06, 0xa4, 0x06],                   // an unknown group (100)
        &[0xa2, 0x06, 0x01],                         // an unknown length past the end
        &[0x8a, 0x01, 0x00, 0x8a, 0x01, 0x00],       // inner twice: merged
        &[0xc0, 0x3e, 0x80, 0x80, 0x80, 0x80, 0x10], // far = 2^32: 0 as u32
        &[0x80, 0x02, 0x01],                         // field 32 = maybe_s with a varint
        &[0xf8, 0x01, 0x00],                         // maybe (optional) = 0: written
        &[0x0f],                                     // wire type 7
        &[0xff, 0xff, 0xff, 0xff, 0x1f, 0x00],       // a key above u32
    ];
    for case in cases {
        let mut datum = vec![0];
        datum.extend_from_slice(case);
        compare(&schema, &datum, false);
    }
    let mut deep = Vec::new();
    for _ in 0..200 {
        let mut outer = vec![0x9a, 0x02];
        prost::encoding::encode_varint(deep.len() as u64, &mut outer);
        outer.extend_from_slice(&deep);
        deep = outer;
    }
    compare(&schema, &[&[0][..], &deep].concat(), false);
}

#[test]
fn confluent_test_bill_takes_the_fast_path() {
    // The `Bill` of tests/confluent_formats.py: an imported message, a
    // Timestamp, a repeated nested message and an enum.
    let money = "syntax = \"proto3\";\npackage shared;\nmessage Money { string currency = 1; int64 units = 2; int32 nanos = 3; }\n";
    let bill = r#"syntax = "proto3";
package acme;
import "shared/money.proto";
import "google/protobuf/timestamp.proto";
message Bill {
  string account_id = 1; int32 year = 2; shared.Money total = 3; repeated Payment payments = 4; Status status = 5;
  google.protobuf.Timestamp issued_at = 6; int64 updated_at = 7;
  message Payment { string method = 1; double amount = 2; }
  enum Status { UNKNOWN = 0; OPEN = 1; PAID = 2; }
}
"#;
    let schema = ProtoSchema::parse(bill, &[("shared/money.proto".into(), money.into())]).unwrap();
    assert!(schema.message(&[0]).unwrap().fast.is_some());
    let mut rng = Rng(7);
    let desc = schema.file.messages().next().unwrap();
    for _ in 0..300 {
        let m = message(&mut rng, &desc, 0);
        let datum = [&[0][..], &m.encode_to_vec()].concat();
        let good_time = !m.has_field_by_name("issued_at")
            || (-62_135_596_800..=253_402_300_799).contains(
                &m.get_field_by_name("issued_at")
                    .unwrap()
                    .as_message()
                    .unwrap()
                    .get_field_by_name("seconds")
                    .unwrap()
                    .as_i64()
                    .unwrap(),
            );
        assert_eq!(schema.decode_value_fast(&datum).is_some(), good_time);
        compare(&schema, &datum, false);
    }
}
