//! Protobuf values in Confluent's wire format -> JSON by the proto3 JSON mapping.
//!
//! A registered Protobuf schema is a `.proto` file: as source text (what a
//! Confluent registry serves), or as a base64 `FileDescriptorProto` (what
//! Confluent's serializers register). Its imports are the schema's
//! `references`, fetched from the registry by the caller; the well-known
//! `google/protobuf/*` files are built in. The file is compiled once per
//! schema ID with `protox` into `prost-reflect` descriptors, so any message
//! of any version is decoded without a redeploy.
//!
//! After the 5-byte header a message starts with its *message indexes*: the
//! path to the message within the file (`[0]` the first top-level message,
//! `[1, 0]` the first message nested in the second), written as zig-zag
//! varints, the count first, and `[0]` shortened to a single 0 byte. The
//! message bytes follow. They are written out with the canonical JSON
//! mapping: lowerCamelCase field names, 64-bit integers as strings, enums by
//! name, well-known types in their special forms, fields holding their
//! default value left out.
//!
//! Values take the fast path of `proto_json` (wire bytes straight to JSON)
//! when their message type and bytes allow it; otherwise, and for keys, the
//! message is decoded into a `DynamicMessage` and serialized by
//! `prost-reflect`'s serde mapping. Both write the same bytes.

use super::non_finite::NonFinite;
use super::proto_json::Plans;
use super::{DecodeError, MAX_BODY};
use crate::store::value::StoredValue;
use base64::Engine;
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor, SerializeOptions, Value,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use std::collections::HashMap;

/// The name the registered file is compiled under (its imports keep theirs).
const ROOT_FILE: &str = "push-cache/registered-schema.proto";
/// Deepest message nesting the indexes may name.
const MAX_INDEXES: i64 = 64;

/// A Protobuf schema (one `.proto` file and its imports), compiled.
#[derive(Debug)]
pub struct ProtoSchema {
    file: FileDescriptor,
    /// The file's first message, named by the indexes `[0]` (the usual case).
    first: Option<Message0>,
    /// Fast-path tables for every message type the file reaches.
    plans: Plans,
}

/// A message with what decoding needs about it, worked out once.
#[derive(Debug, Clone)]
struct Message0 {
    desc: MessageDescriptor,
    record_type: String,
    /// The top-level integer field whose JSON name is `updatedAt`, if any.
    updated_at: Option<FieldDescriptor>,
    /// The message's fast-path table, when it has one.
    fast: Option<usize>,
}

impl Message0 {
    fn new(desc: MessageDescriptor, plans: &Plans) -> Message0 {
        let record_type = desc.name().to_ascii_lowercase();
        let updated_at = desc.fields().find(|f| f.json_name() == "updatedAt" && is_integer(f));
        let fast = plans.fast_index(&desc);
        Message0 { desc, record_type, updated_at, fast }
    }
}

fn is_integer(field: &FieldDescriptor) -> bool {
    use Kind::*;
    let integer = matches!(
        field.kind(),
        Int64 | Sint64 | Sfixed64 | Uint64 | Fixed64 | Int32 | Sint32 | Sfixed32 | Uint32 | Fixed32
    );
    integer && !field.is_list() && !field.is_map()
}

impl ProtoSchema {
    /// Compiles `text` with its imports: `references` are (import path,
    /// schema text) pairs, each text source or a base64 descriptor.
    pub fn parse(text: &str, references: &[(String, String)]) -> Result<ProtoSchema, DecodeError> {
        let mut files: HashMap<String, String> = references.iter().cloned().collect();
        files.insert(ROOT_FILE.to_string(), text.to_string());
        let mut resolver = ChainFileResolver::new();
        resolver.add(RegistryFiles { files });
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true);
        compiler
            .open_file(ROOT_FILE)
            .map_err(|e| DecodeError::BadSchema(format!("Protobuf schema does not compile: {e}")))?;
        let pool: DescriptorPool = compiler.descriptor_pool();
        let file =
            pool.get_file_by_name(ROOT_FILE).ok_or_else(|| DecodeError::BadSchema("Protobuf file lost".into()))?;
        let plans = Plans::new(file.messages());
        let first = file.messages().next().map(|desc| Message0::new(desc, &plans));
        Ok(ProtoSchema { file, first, plans })
    }

    /// The message named by `indexes`, walking the file's messages.
    fn message(&self, indexes: &[i64]) -> Result<Message0, DecodeError> {
        if indexes == [0] {
            return self.first.clone().ok_or_else(|| DecodeError::UnknownMessage(indexes.to_vec()));
        }
        let unknown = || DecodeError::UnknownMessage(indexes.to_vec());
        let position = |i: i64| usize::try_from(i).map_err(|_| unknown());
        let (&top, nested) = indexes.split_first().ok_or_else(unknown)?;
        let mut desc = self.file.messages().nth(position(top)?).ok_or_else(unknown)?;
        for &i in nested {
            let child = desc.child_messages().nth(position(i)?);
            desc = child.ok_or_else(unknown)?;
        }
        Ok(Message0::new(desc, &self.plans))
    }

    /// Decodes a value (indexes and message) into its record type, its JSON
    /// body and its ETag (`updatedAt` when an integer field has that name).
    pub fn decode_value(&self, datum: &[u8]) -> Result<(String, StoredValue), DecodeError> {
        self.decode_value_fast(datum).unwrap_or_else(|| self.decode_value_reflect(datum))
    }

    /// `decode_value` by the fast path alone (public for the fuzz target);
    /// `None` when it gives up and the message needs `decode_value_reflect`.
    pub fn decode_value_fast(&self, datum: &[u8]) -> Option<Result<(String, StoredValue), DecodeError>> {
        let (indexes, bytes) = read_indexes(datum).ok()?;
        let kind = self.message(&indexes).ok()?;
        let mut body = Vec::with_capacity(bytes.len() * 2 + 16);
        let watch = kind.updated_at.as_ref().map_or(0, FieldDescriptor::number);
        let updated_at = self.plans.write(kind.fast?, bytes, &mut body, watch)?;
        if body.len() > MAX_BODY {
            return Some(Err(DecodeError::TooLarge));
        }
        Some(Ok((kind.record_type, StoredValue::new(body, updated_at))))
    }

    /// `decode_value` always through a `DynamicMessage`: the path taken when
    /// the fast one gives up, and the reference the fast one is tested against.
    pub fn decode_value_reflect(&self, datum: &[u8]) -> Result<(String, StoredValue), DecodeError> {
        let (kind, message, body) = self.decode(datum, true)?;
        let updated_at = kind.updated_at.as_ref().and_then(|field| updated_at(&message, field));
        Ok((kind.record_type, StoredValue::new(body, updated_at)))
    }

    /// Decodes a key: every field is written, defaults included, so a key
    /// message of one field always yields that field.
    pub fn decode_key(&self, datum: &[u8]) -> Result<Vec<u8>, DecodeError> {
        self.decode(datum, false).map(|(_, _, body)| body)
    }

    fn decode(&self, datum: &[u8], skip_defaults: bool) -> Result<(Message0, DynamicMessage, Vec<u8>), DecodeError> {
        let (indexes, bytes) = read_indexes(datum)?;
        let message = self.message(&indexes)?;
        let decoded =
            DynamicMessage::decode(message.desc.clone(), bytes).map_err(|e| DecodeError::BadProtobuf(e.to_string()))?;
        let mut body = Vec::with_capacity(bytes.len() * 2 + 16);
        let options = SerializeOptions::new().skip_default_fields(skip_defaults);
        let mut serializer = serde_json::Serializer::new(&mut body);
        decoded
            .serialize_with_options(NonFinite(&mut serializer), &options)
            .map_err(|e| DecodeError::BadProtobuf(e.to_string()))?;
        if body.len() > MAX_BODY {
            return Err(DecodeError::TooLarge);
        }
        Ok((message, decoded, body))
    }
}

/// The value of the integer field `field` (the top-level `updatedAt`), when
/// the message has it (a default-valued proto3 field is not in the body).
fn updated_at(message: &DynamicMessage, field: &FieldDescriptor) -> Option<i64> {
    if !message.has_field(field) {
        return None;
    }
    match message.get_field(field).as_ref() {
        Value::I64(v) => Some(*v),
        Value::I32(v) => Some(i64::from(*v)),
        Value::U32(v) => Some(i64::from(*v)),
        Value::U64(v) => i64::try_from(*v).ok(),
        _ => None,
    }
}

/// Splits the message indexes off a datum: zig-zag varints, the count
/// first; a count of 0 means `[0]`.
pub fn read_indexes(datum: &[u8]) -> Result<(Vec<i64>, &[u8]), DecodeError> {
    let mut rest = datum;
    let count = read_zigzag(&mut rest)?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    if !(1..=MAX_INDEXES).contains(&count) {
        return Err(DecodeError::BadProtobuf(format!("message index count {count}")));
    }
    let mut indexes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        indexes.push(read_zigzag(&mut rest)?);
    }
    Ok((indexes, rest))
}

fn read_zigzag(bytes: &mut &[u8]) -> Result<i64, DecodeError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) =
            bytes.split_first().ok_or_else(|| DecodeError::BadProtobuf("message indexes end early".into()))?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
        }
    }
    Err(DecodeError::BadProtobuf("message index varint too long".into()))
}

/// Writes message indexes as Confluent's serializers do (tools and tests).
pub fn encode_indexes(indexes: &[i64]) -> Vec<u8> {
    let mut out = Vec::new();
    if indexes == [0] {
        out.push(0);
        return out;
    }
    for v in std::iter::once(indexes.len() as i64).chain(indexes.iter().copied()) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }
    out
}

/// The registered file and its references, by import path.
struct RegistryFiles {
    files: HashMap<String, String>,
}

impl FileResolver for RegistryFiles {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        let Some(text) = self.files.get(name) else {
            return Err(protox::Error::file_not_found(name));
        };
        match descriptor_from_base64(text) {
            Some(mut proto) => {
                proto.name = Some(name.to_string());
                Ok(File::from_file_descriptor_proto(proto))
            }
            None => File::from_source(name, text),
        }
    }
}

/// A schema registered as a base64 `FileDescriptorProto`, as Confluent's
/// serializers send it; `None` for `.proto` source text.
fn descriptor_from_base64(text: &str) -> Option<prost_types::FileDescriptorProto> {
    let text = text.trim();
    if text.is_empty() || text.contains(char::is_whitespace) {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).ok()?;
    prost_types::FileDescriptorProto::decode(bytes.as_slice()).ok()
}

#[cfg(test)]
#[path = "proto_json_tests.rs"]
mod proto_json_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const PROTO: &str = r#"
syntax = "proto3";
package com.acme;
import "google/protobuf/timestamp.proto";
message Customer {
  string account_id = 1;
  string name = 2;
  int64 updated_at = 3;
  Status status = 4;
  google.protobuf.Timestamp seen = 5;
  repeated double scores = 6;
  enum Status { UNKNOWN = 0; ACTIVE = 1; }
  message Note { string text = 1; }
}
message Other { int32 n = 1; }
"#;

    fn framed(indexes: &[i64], message: &DynamicMessage) -> Vec<u8> {
        let mut out = encode_indexes(indexes);
        out.extend_from_slice(&message.encode_to_vec());
        out
    }

    #[test]
    fn indexes_round_trip_as_confluent_writes_them() {
        assert_eq!(encode_indexes(&[0]), vec![0]);
        assert_eq!(encode_indexes(&[1]), vec![2, 2]);
        assert_eq!(encode_indexes(&[0, 1]), vec![4, 0, 2]);
        for idx in [vec![0], vec![1], vec![0, 1], vec![3, 200, 0]] {
            let mut bytes = encode_indexes(&idx);
            bytes.push(9);
            assert_eq!(read_indexes(&bytes).unwrap(), (idx.clone(), &[9u8][..]));
        }
        assert!(read_indexes(&[]).is_err());
        assert!(read_indexes(&[0x80]).is_err());
        assert!(read_indexes(&[1]).is_err(), "negative count");
        assert!(read_indexes(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1]).is_err());
    }

    #[test]
    fn customer_by_the_proto3_json_mapping() {
        let schema = ProtoSchema::parse(PROTO, &[]).unwrap();
        let desc = schema.file.messages().next().unwrap();
        let mut m = DynamicMessage::new(desc.clone());
        m.set_field_by_name("account_id", Value::String("acct-1".into()));
        m.set_field_by_name("name", Value::String("Ann \"A\"".into()));
        m.set_field_by_name("updated_at", Value::I64(1_700_000_500_000));
        m.set_field_by_name("status", Value::EnumNumber(1));
        let ts = DynamicMessage::decode(
            desc.parent_pool().get_message_by_name("google.protobuf.Timestamp").unwrap(),
            &prost_types::Timestamp { seconds: 1, nanos: 500_000_000 }.encode_to_vec()[..],
        )
        .unwrap();
        m.set_field_by_name("seen", Value::Message(ts));
        m.set_field_by_name("scores", Value::List(vec![Value::F64(1.5), Value::F64(100.0)]));
        let (kind, value) = schema.decode_value(&framed(&[0], &m)).unwrap();
        assert_eq!(kind, "customer");
        assert_eq!(
            std::str::from_utf8(&value.body).unwrap(),
            r#"{"accountId":"acct-1","name":"Ann \"A\"","updatedAt":"1700000500000","status":"ACTIVE","seen":"1970-01-01T00:00:01.500Z","scores":[1.5,100.0]}"#
        );
        assert_eq!(&value.etag[..], b"\"1700000500000\"");
    }

    #[test]
    fn nested_and_second_messages_by_their_indexes() {
        let schema = ProtoSchema::parse(PROTO, &[]).unwrap();
        let other = schema.file.messages().nth(1).unwrap();
        let mut m = DynamicMessage::new(other);
        m.set_field_by_name("n", Value::I32(7));
        let (kind, value) = schema.decode_value(&framed(&[1], &m)).unwrap();
        assert_eq!((kind.as_str(), &value.body[..]), ("other", &br#"{"n":7}"#[..]));
        let note = schema.file.messages().next().unwrap().child_messages().next().unwrap();
        let mut m = DynamicMessage::new(note);
        m.set_field_by_name("text", Value::String("hi".into()));
        let (kind, _) = schema.decode_value(&framed(&[0, 0], &m)).unwrap();
        assert_eq!(kind, "note");
        assert!(matches!(schema.decode_value(&framed(&[2], &m)), Err(DecodeError::UnknownMessage(_))));
        assert!(matches!(schema.decode_value(&framed(&[0, 5], &m)), Err(DecodeError::UnknownMessage(_))));
    }

    #[test]
    fn imports_come_from_references_as_text_or_base64() {
        let shared = "syntax = \"proto3\";\npackage shared;\nmessage Money { string currency = 1; int64 units = 2; }\n";
        let main = "syntax = \"proto3\";\nimport \"shared/money.proto\";\nmessage Bill { shared.Money total = 1; }\n";
        let as_text = ProtoSchema::parse(main, &[("shared/money.proto".into(), shared.into())]).unwrap();
        let compiled = ProtoSchema::parse(shared, &[]).unwrap();
        let b64 =
            base64::engine::general_purpose::STANDARD.encode(compiled.file.file_descriptor_proto().encode_to_vec());
        let as_b64 = ProtoSchema::parse(main, &[("shared/money.proto".into(), b64)]).unwrap();
        for schema in [as_text, as_b64] {
            let bill = schema.file.messages().next().unwrap();
            let money = bill.parent_pool().get_message_by_name("shared.Money").unwrap();
            let mut total = DynamicMessage::new(money);
            total.set_field_by_name("units", Value::I64(12));
            let mut m = DynamicMessage::new(bill);
            m.set_field_by_name("total", Value::Message(total));
            let (_, value) = schema.decode_value(&framed(&[0], &m)).unwrap();
            assert_eq!(&value.body[..], br#"{"total":{"units":"12"}}"#);
        }
        let missing = ProtoSchema::parse(main, &[]).unwrap_err();
        assert!(matches!(missing, DecodeError::BadSchema(_)), "{missing}");
    }

    /// The proto3 JSON mapping writes a non-finite `FloatValue` or
    /// `DoubleValue` as a string, as it does a plain float field.
    #[test]
    fn non_finite_wrappers_are_strings_not_null() {
        let proto = r#"syntax = "proto3";
import "google/protobuf/wrappers.proto";
message Reading { google.protobuf.DoubleValue d = 1; google.protobuf.FloatValue f = 2; double plain = 3; }
"#;
        let schema = ProtoSchema::parse(proto, &[]).unwrap();
        let desc = schema.file.messages().next().unwrap();
        let pool = desc.parent_pool().clone();
        let wrapper = |name: &str, value: Value| {
            let mut w = DynamicMessage::new(pool.get_message_by_name(name).unwrap());
            w.set_field_by_name("value", value);
            Value::Message(w)
        };
        let mut m = DynamicMessage::new(desc);
        m.set_field_by_name("d", wrapper("google.protobuf.DoubleValue", Value::F64(f64::NAN)));
        m.set_field_by_name("f", wrapper("google.protobuf.FloatValue", Value::F32(f32::NEG_INFINITY)));
        m.set_field_by_name("plain", Value::F64(f64::INFINITY));
        let (_, value) = schema.decode_value(&framed(&[0], &m)).unwrap();
        assert_eq!(&value.body[..], br#"{"d":"NaN","f":"-Infinity","plain":"Infinity"}"#);
    }

    #[test]
    fn bad_messages_are_errors_not_panics() {
        let schema = ProtoSchema::parse(PROTO, &[]).unwrap();
        for datum in [&[][..], &[0, 0x0a, 0x05, b'a'], &[0, 0xff], &[0, 0x08, 0x80, 0x80]] {
            assert!(schema.decode_value(datum).is_err(), "{datum:?}");
        }
        assert!(matches!(ProtoSchema::parse("message {", &[]), Err(DecodeError::BadSchema(_))));
    }
}
