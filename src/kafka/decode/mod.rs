//! Confluent wire format in, the JSON body the API serves out.
//!
//! Every framed message starts with byte 0 and a 4-byte big-endian schema ID
//! (`parse_frame`); what follows depends on the schema's type in the
//! registry: an Avro datum (`avro`), Protobuf message indexes and a message
//! (`protobuf`), or JSON text (`json`). `ParsedSchema` is one registered
//! schema compiled for decoding, whatever its type, so the schema cache and
//! the record decoder handle all three alike. Keys framed the same way are
//! turned into cache keys by `key`.
//!
//! The JSON writers shared by the formats (strings, floats, base64) live
//! here so every format escapes and formats numbers the same way.

pub mod avro;
pub mod json;
pub mod key;
mod non_finite;
mod proto_json;
pub mod protobuf;
#[cfg(test)]
mod test_rng;

pub use avro::{decode_datum, WriterSchema, MAX_BODY};

use crate::store::value::StoredValue;
use base64::Engine;
use std::io::Write;

/// Why a record could not be decoded. `reason()` is the metrics label.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("bad magic byte {0} (expected 0, the Confluent wire format)")]
    BadMagic(u8),
    #[error("payload shorter than the 5-byte Confluent header")]
    Truncated,
    #[error("undecodable Avro datum: {0}")]
    Malformed(String),
    #[error("writer schema is not a record: {0}")]
    NotARecord(String),
    #[error("the record's JSON body would exceed {} MiB (arrays of empty items or a schema that multiplies on reuse); fix the producer", MAX_BODY >> 20)]
    TooLarge,
    #[error("undecodable Protobuf message: {0}")]
    BadProtobuf(String),
    #[error("Protobuf message indexes {0:?} name no message of the schema; the producer used another schema")]
    UnknownMessage(Vec<i64>),
    #[error("JSON Schema value is not valid JSON: {0}")]
    NotJson(String),
    #[error("invalid schema: {0}; fix it in the registry")]
    BadSchema(String),
}

impl DecodeError {
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::BadMagic(_) => "bad_magic",
            DecodeError::Truncated => "truncated",
            DecodeError::Malformed(_) => "malformed",
            DecodeError::NotARecord(_) => "not_a_record",
            DecodeError::TooLarge => "too_large",
            DecodeError::BadProtobuf(_) => "malformed",
            DecodeError::UnknownMessage(_) => "unknown_message",
            DecodeError::NotJson(_) => "malformed",
            DecodeError::BadSchema(_) => "bad_schema",
        }
    }
}

pub(crate) fn malformed(why: impl Into<String>) -> DecodeError {
    DecodeError::Malformed(why.into())
}

/// Splits a Confluent-framed payload into schema ID and the bytes after it.
pub fn parse_frame(payload: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    match payload {
        [0, a, b, c, d, datum @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        [m, ..] if *m != 0 => Err(DecodeError::BadMagic(*m)),
        _ => Err(DecodeError::Truncated),
    }
}

/// Frames a datum for schema `schema_id` (tools and tests).
pub fn encode_frame(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + datum.len());
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

/// The schema types a Confluent registry serves (`schemaType`; absent is Avro).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaType {
    Avro,
    Protobuf,
    Json,
}

impl SchemaType {
    /// From the registry's `schemaType` field; `None` for a type we cannot decode.
    pub fn from_registry(name: Option<&str>) -> Option<SchemaType> {
        match name.map(str::to_ascii_uppercase).as_deref() {
            None | Some("AVRO") => Some(SchemaType::Avro),
            Some("PROTOBUF") => Some(SchemaType::Protobuf),
            Some("JSON") => Some(SchemaType::Json),
            Some(_) => None,
        }
    }
}

/// One registered schema with the schemas it references, as the registry
/// holds them. `references` come dependencies first, each with the name the
/// schema uses for it (a Protobuf import path; unused for Avro).
#[derive(Debug, Clone)]
pub struct SchemaSource {
    pub schema_type: SchemaType,
    pub text: String,
    pub references: Vec<(String, String)>,
}

/// A registered schema compiled for decoding.
#[derive(Debug)]
pub enum ParsedSchema {
    Avro(WriterSchema),
    Protobuf(protobuf::ProtoSchema),
    Json(json::JsonSchema),
}

impl ParsedSchema {
    /// Compiles `source`. Any top-level type is accepted (keys may be
    /// primitives); decoding a value checks that it is a record.
    pub fn compile(source: &SchemaSource) -> Result<ParsedSchema, DecodeError> {
        match source.schema_type {
            SchemaType::Avro => {
                let refs: Vec<&str> = source.references.iter().map(|(_, text)| text.as_str()).collect();
                WriterSchema::parse_with_references(&source.text, &refs).map(ParsedSchema::Avro)
            }
            SchemaType::Protobuf => {
                protobuf::ProtoSchema::parse(&source.text, &source.references).map(ParsedSchema::Protobuf)
            }
            SchemaType::Json => json::JsonSchema::parse(&source.text).map(ParsedSchema::Json),
        }
    }

    /// Decodes a value (the bytes after the 5-byte header) into its body and
    /// ETag, and names its record type.
    pub fn decode_value(&self, datum: &[u8]) -> Result<(String, StoredValue), DecodeError> {
        match self {
            ParsedSchema::Avro(s) => Ok((s.record_type.clone(), decode_datum(s, datum)?)),
            ParsedSchema::Protobuf(s) => s.decode_value(datum),
            ParsedSchema::Json(s) => Ok((s.record_type.clone(), s.decode_value(datum)?)),
        }
    }
}

/// `s` as a JSON string literal (quotes included).
pub fn json_string(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    write_str(&mut out, s);
    out
}

/// Writes a JSON string, escaping per RFC 8259; runs of plain bytes are copied whole.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Shortest round-trip text, formatted exactly as serde_json formats it
/// (`100.0`, `1e21`); NaN and infinities become `null`.
pub(crate) fn write_float(out: &mut Vec<u8>, v: f64, single: bool) {
    if !v.is_finite() {
        out.extend_from_slice(b"null");
    } else if single {
        let _ = serde_json::to_writer(out, &(v as f32));
    } else {
        let _ = serde_json::to_writer(out, &v);
    }
}

pub(crate) fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let start = out.len();
    out.resize(start + base64::encoded_len(bytes.len(), true).unwrap_or(0), 0);
    let n = base64::engine::general_purpose::STANDARD.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
    out.truncate(start + n);
    out.push(b'"');
}
