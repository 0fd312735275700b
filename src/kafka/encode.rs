//! JSON to Avro by a schema: the body of a write through Kafka (`writes:
//! kafka`) as the Avro datum the topic's schema describes. It is the inverse
//! of what `decode::avro` serves: unions take the first branch the value
//! fits, decimals come from strings of digits (any width), bytes and fixed
//! from base64, uuids from text, dates and timestamps from numbers. A value
//! that does not fit names its field, so a client's 400 says what to fix.
//!
//! Named types may come from the schema's references (other subjects): the
//! caller passes them already parsed, beside the schema.

use crate::kafka::decode::avro::is_long;
use apache_avro::schema::{InnerDecimalSchema, Name, RecordSchema, UuidSchema};
use apache_avro::Schema;
use base64::Engine as _;
use serde_json::Value;
use std::collections::HashMap;

/// The Avro binary datum of `json` written with `schema`, whose named types
/// may be defined in `named` (the schemas of its references). The error
/// names the field that does not fit: ``field `name`: expected string, got number``.
pub fn encode_json(schema: &Schema, named: &[Schema], json: &Value) -> Result<Vec<u8>, String> {
    let mut names = HashMap::new();
    for s in named.iter().chain([schema]) {
        collect_names(s, &mut names);
    }
    let mut out = Vec::with_capacity(256);
    Encoder { names: &names, depth: 0 }.value(schema, json, &mut Path::default(), &mut out)?;
    Ok(out)
}

fn collect_names<'s>(s: &'s Schema, names: &mut HashMap<Name, &'s Schema>) {
    match s {
        Schema::Record(r) if names.insert(r.name.clone(), s).is_none() => {
            r.fields.iter().for_each(|f| collect_names(&f.schema, names));
        }
        Schema::Enum(e) => drop(names.insert(e.name.clone(), s)),
        Schema::Fixed(f) => drop(names.insert(f.name.clone(), s)),
        Schema::Array(a) => collect_names(&a.items, names),
        Schema::Map(m) => collect_names(&m.types, names),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect_names(v, names)),
        _ => {}
    }
}

/// Where in the body a value sits, for error messages (`payments[1].amount`).
#[derive(Default)]
struct Path(String);

impl Path {
    fn fail<T>(&self, reason: String) -> Result<T, String> {
        match self.0.is_empty() {
            true => Err(format!("body: {reason}")),
            false => Err(format!("field `{}`: {reason}", self.0)),
        }
    }

    fn with<T>(&mut self, part: &str, f: impl FnOnce(&mut Path) -> T) -> T {
        let len = self.0.len();
        if !self.0.is_empty() && !part.starts_with('[') {
            self.0.push('.');
        }
        self.0.push_str(part);
        let result = f(self);
        self.0.truncate(len);
        result
    }
}

/// Deepest nesting accepted (recursive schemas meet hostile bodies).
const MAX_DEPTH: usize = 64;

struct Encoder<'s> {
    names: &'s HashMap<Name, &'s Schema>,
    depth: usize,
}

impl Encoder<'_> {
    fn value(&mut self, s: &Schema, v: &Value, path: &mut Path, out: &mut Vec<u8>) -> Result<(), String> {
        if self.depth > MAX_DEPTH {
            return path.fail(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        self.depth += 1;
        let result = self.value_at_depth(s, v, path, out);
        self.depth -= 1;
        result
    }

    fn value_at_depth(&mut self, s: &Schema, v: &Value, path: &mut Path, out: &mut Vec<u8>) -> Result<(), String> {
        let wrong = |expected: &str| path.fail(format!("expected {expected}, got {}", kind(v)));
        match (s, v) {
            (Schema::Null, Value::Null) => Ok(()),
            (Schema::Boolean, Value::Bool(b)) => {
                out.push(*b as u8);
                Ok(())
            }
            (Schema::Int | Schema::Date | Schema::TimeMillis, Value::Number(n)) => {
                match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
                    Some(i) => {
                        write_long(i64::from(i), out);
                        Ok(())
                    }
                    None => wrong("a 32-bit integer"),
                }
            }
            (s, Value::Number(n)) if is_long(s) => match n.as_i64() {
                Some(i) => {
                    write_long(i, out);
                    Ok(())
                }
                None => wrong("a 64-bit integer"),
            },
            (Schema::Float, Value::Number(n)) => {
                out.extend((n.as_f64().unwrap_or(0.0) as f32).to_le_bytes());
                Ok(())
            }
            (Schema::Double, Value::Number(n)) => {
                out.extend(n.as_f64().unwrap_or(0.0).to_le_bytes());
                Ok(())
            }
            (Schema::String, Value::String(t)) => {
                write_bytes(t.as_bytes(), out);
                Ok(())
            }
            (Schema::Uuid(kind), Value::String(t)) => match (parse_uuid(t), kind) {
                (None, _) => wrong("a uuid like 123e4567-e89b-12d3-a456-426614174000"),
                (Some(_), UuidSchema::String) => {
                    write_bytes(t.as_bytes(), out);
                    Ok(())
                }
                (Some(b), UuidSchema::Bytes) => {
                    write_bytes(&b, out);
                    Ok(())
                }
                (Some(b), UuidSchema::Fixed(_)) => {
                    out.extend(b);
                    Ok(())
                }
            },
            (Schema::Bytes, Value::String(t)) => match base64_decode(t) {
                Some(b) => {
                    write_bytes(&b, out);
                    Ok(())
                }
                None => wrong("base64 bytes"),
            },
            (Schema::Fixed(f), Value::String(t)) => match base64_decode(t).filter(|b| b.len() == f.size) {
                Some(b) => {
                    out.extend(b);
                    Ok(())
                }
                None => wrong(&format!("base64 of exactly {} bytes", f.size)),
            },
            (Schema::Decimal(d), Value::String(t)) => {
                let size = match &d.inner {
                    InnerDecimalSchema::Bytes => None,
                    InnerDecimalSchema::Fixed(f) => Some(f.size),
                };
                match decimal_bytes(t, d.scale, size) {
                    Ok(b) if size.is_some() => {
                        out.extend(b);
                        Ok(())
                    }
                    Ok(b) => {
                        write_bytes(&b, out);
                        Ok(())
                    }
                    Err(reason) => path.fail(reason),
                }
            }
            (Schema::Enum(e), Value::String(t)) => match e.symbols.iter().position(|s| s == t) {
                Some(i) => {
                    write_long(i as i64, out);
                    Ok(())
                }
                None => wrong(&format!("one of {}", e.symbols.join(", "))),
            },
            (Schema::Array(a), Value::Array(items)) => {
                if !items.is_empty() {
                    write_long(items.len() as i64, out);
                    for (i, item) in items.iter().enumerate() {
                        path.with(&format!("[{i}]"), |p| self.value(&a.items, item, p, out))?;
                    }
                }
                out.push(0);
                Ok(())
            }
            (Schema::Map(m), Value::Object(entries)) => {
                if !entries.is_empty() {
                    write_long(entries.len() as i64, out);
                    for (k, item) in entries {
                        write_bytes(k.as_bytes(), out);
                        path.with(k, |p| self.value(&m.types, item, p, out))?;
                    }
                }
                out.push(0);
                Ok(())
            }
            (Schema::Record(r), Value::Object(_)) => self.record(r, v, path, out),
            (Schema::Union(u), _) => self.union(u.variants(), v, path, out),
            (Schema::Ref { name }, _) => match self.names.get(name) {
                Some(named) => self.value(named, v, path, out),
                None => path.fail(format!("the schema names an unknown type {name:?}")),
            },
            (Schema::BigDecimal | Schema::Duration(_), _) => path.fail("this Avro type cannot be written yet".into()),
            _ => wrong(expected_kind(s)),
        }
    }

    /// The first branch the value fits, as its index and its encoding.
    fn union(&mut self, variants: &[Schema], v: &Value, path: &mut Path, out: &mut Vec<u8>) -> Result<(), String> {
        // The error of the first branch of the value's JSON kind says what
        // inside it does not fit; without one, the kinds are listed.
        let mut same_kind_error = None;
        for (i, branch) in variants.iter().enumerate() {
            let mut datum = Vec::new();
            match self.value(branch, v, path, &mut datum) {
                Ok(()) => {
                    write_long(i as i64, out);
                    out.extend(datum);
                    return Ok(());
                }
                Err(e) if same_kind_error.is_none() && self.same_kind(branch, v) => same_kind_error = Some(e),
                Err(_) => {}
            }
        }
        if let Some(e) = same_kind_error {
            return Err(e);
        }
        let expected: Vec<&str> = variants.iter().map(expected_kind).collect();
        path.fail(format!("expected {}, got {}", expected.join(" or "), kind(v)))
    }

    /// Fields in schema order; an absent field takes its default, or null
    /// when it may be null; a field the schema does not have is an error.
    fn record(&mut self, r: &RecordSchema, v: &Value, path: &mut Path, out: &mut Vec<u8>) -> Result<(), String> {
        let Value::Object(map) = v else {
            return path.fail(format!("expected an object, got {}", kind(v)));
        };
        if let Some(extra) = map.keys().find(|k| !r.fields.iter().any(|f| &f.name == *k)) {
            return path.with(extra, |p| p.fail(format!("not in the schema of `{}`", r.name.name())));
        }
        for f in &r.fields {
            let value = match map.get(&f.name).or(f.default.as_ref()) {
                Some(value) => value,
                None if self.nullable(&f.schema) => &Value::Null,
                None => return path.with(&f.name, |p| p.fail("missing".into())),
            };
            path.with(&f.name, |p| self.value(&f.schema, value, p, out))?;
        }
        Ok(())
    }

    /// Whether `v` has the JSON kind `s` is written from (its content may still misfit).
    fn same_kind(&self, s: &Schema, v: &Value) -> bool {
        match (s, v) {
            (Schema::Ref { name }, _) => self.names.get(name).is_some_and(|named| self.same_kind(named, v)),
            (Schema::Record(_) | Schema::Map(_), Value::Object(_)) | (Schema::Array(_), Value::Array(_)) => true,
            (Schema::Null, Value::Null) | (Schema::Boolean, Value::Bool(_)) => true,
            (Schema::Int | Schema::Date | Schema::TimeMillis | Schema::Float | Schema::Double, Value::Number(_)) => {
                true
            }
            (s, Value::Number(_)) => is_long(s),
            (s, Value::String(_)) => matches!(expected_kind(s), "string" | "base64 string" | "decimal string"),
            _ => false,
        }
    }

    fn nullable(&self, s: &Schema) -> bool {
        match s {
            Schema::Null => true,
            Schema::Union(u) => u.variants().iter().any(|v| matches!(v, Schema::Null)),
            _ => false,
        }
    }
}

/// How the JSON of an Avro type looks, for error messages.
fn expected_kind(s: &Schema) -> &'static str {
    match s {
        Schema::Null => "null",
        Schema::Boolean => "boolean",
        Schema::Int | Schema::Date | Schema::TimeMillis => "a 32-bit integer",
        Schema::Float | Schema::Double => "number",
        Schema::String | Schema::Enum(_) | Schema::Uuid(_) => "string",
        Schema::Bytes | Schema::Fixed(_) => "base64 string",
        Schema::Decimal(_) | Schema::BigDecimal => "decimal string",
        Schema::Array(_) => "array",
        Schema::Map(_) | Schema::Record(_) => "object",
        Schema::Union(_) | Schema::Ref { .. } => "value",
        s if is_long(s) => "a 64-bit integer",
        _ => "value",
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Avro's zig-zag variable-length long.
fn write_long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_bytes(b: &[u8], out: &mut Vec<u8>) {
    write_long(b.len() as i64, out);
    out.extend_from_slice(b);
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// The 16 bytes of `8-4-4-4-12` hex text.
fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let groups: Vec<&str> = text.split('-').collect();
    if groups.iter().map(|g| g.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
        return None;
    }
    let hex: String = groups.concat();
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(bytes)
}

/// `"-1234.56"` at `scale` as the big-endian two's complement of its
/// unscaled value: minimal for `bytes`, sign-extended to `size` for `fixed`.
fn decimal_bytes(text: &str, scale: usize, size: Option<usize>) -> Result<Vec<u8>, String> {
    let bad = || format!("expected a decimal string like \"1234.56\" with at most {scale} decimals, got \"{text}\"");
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !all_digits(whole)
        || !all_digits(frac)
        || frac.len() > scale
        || (digits.contains('.') && frac.is_empty())
    {
        return Err(bad());
    }
    let padded = format!("{whole}{frac}{}", "0".repeat(scale - frac.len()));
    if padded.len() > MAX_DECIMAL_DIGITS {
        return Err(format!("decimal \"{text}\" has more than {MAX_DECIMAL_DIGITS} digits"));
    }
    let negative = negative && padded.bytes().any(|b| b != b'0');
    let magnitude = digits_to_bytes(&padded);
    let full = if negative { twos_complement_negated(magnitude) } else { magnitude };
    let fill = if negative { 0xff } else { 0 };
    // Drop leading bytes that only repeat the sign.
    let mut start = 0;
    while start + 1 < full.len() && full[start] == fill && (full[start + 1] & 0x80 == fill & 0x80) {
        start += 1;
    }
    let minimal = &full[start..];
    match size {
        None => Ok(minimal.to_vec()),
        Some(n) if minimal.len() <= n => {
            let mut fixed = vec![fill; n - minimal.len()];
            fixed.extend_from_slice(minimal);
            Ok(fixed)
        }
        Some(n) => Err(format!("decimal \"{text}\" does not fit in {n} bytes")),
    }
}

/// The most digits a decimal may have (about what 4 KiB of two's
/// complement holds, the widest the cache serves).
const MAX_DECIMAL_DIGITS: usize = 9_000;

/// The big-endian bytes of a string of decimal digits, with a leading zero
/// byte so the value reads as non-negative.
fn digits_to_bytes(digits: &str) -> Vec<u8> {
    // Little-endian 32-bit limbs, multiplied up by 10^9 per group of digits.
    let mut limbs: Vec<u32> = vec![0];
    for group in digits.as_bytes().chunks(9) {
        let scale = 10u64.pow(group.len() as u32);
        let mut carry = group.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        for limb in limbs.iter_mut() {
            let v = u64::from(*limb) * scale + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            limbs.push(carry as u32);
        }
    }
    let mut bytes = vec![0u8];
    bytes.extend(limbs.iter().rev().flat_map(|l| l.to_be_bytes()));
    bytes
}

/// `-value` in two's complement, for a non-negative big-endian `value`.
fn twos_complement_negated(mut bytes: Vec<u8>) -> Vec<u8> {
    for b in bytes.iter_mut() {
        *b = !*b;
    }
    for b in bytes.iter_mut().rev() {
        let (sum, carry) = b.overflowing_add(1);
        *b = sum;
        if !carry {
            break;
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::decode::{decode_datum, WriterSchema};
    use serde_json::json;

    const SCHEMA: &str = r#"{"type":"record","name":"Thing","namespace":"t","fields":[
        {"name":"id","type":"string"},
        {"name":"n","type":"int"},
        {"name":"when","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"note","type":["null","string"],"default":null},
        {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
        {"name":"ref","type":{"type":"string","logicalType":"uuid"}},
        {"name":"raw","type":"bytes"},
        {"name":"color","type":{"type":"enum","name":"Color","symbols":["RED","GREEN"]}},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"attrs","type":{"type":"map","values":"double"}},
        {"name":"inner","type":["null",{"type":"record","name":"Inner","fields":[{"name":"x","type":"long"}]}]},
        {"name":"again","type":["null","Inner"],"default":null}
    ]}"#;

    fn body() -> Value {
        json!({"id":"a1","n":7,"when":1700000000000i64,"note":"hi","price":"-1234.56",
               "ref":"123e4567-e89b-12d3-a456-426614174000","raw":"AAEC","color":"GREEN",
               "tags":["x","y"],"attrs":{"k":1.5},"inner":{"x":3},"again":null})
    }

    #[test]
    fn encoded_bodies_decode_to_the_same_json() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let datum = encode_json(&schema, &[], &body()).unwrap();
        let decoded = decode_datum(&WriterSchema::parse(SCHEMA).unwrap(), &datum).unwrap();
        let back: Value = serde_json::from_slice(&decoded.body).unwrap();
        assert_eq!(back, body());
    }

    #[test]
    fn absent_nullable_fields_are_null_and_absent_required_ones_are_named() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let mut b = body();
        b.as_object_mut().unwrap().remove("note");
        assert!(encode_json(&schema, &[], &b).is_ok());
        b.as_object_mut().unwrap().remove("n");
        assert_eq!(encode_json(&schema, &[], &b).unwrap_err(), "field `n`: missing");
    }

    #[test]
    fn misfits_name_their_field() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let cases = [
            ("id", json!(5), "field `id`: expected string, got number"),
            ("n", json!(1u64 << 40), "field `n`: expected a 32-bit integer, got number"),
            ("note", json!(5), "field `note`: expected null or string, got number"),
            ("color", json!("BLUE"), "field `color`: expected one of RED, GREEN, got string"),
            ("tags", json!(["x", 1]), "field `tags[1]`: expected string, got number"),
            ("inner", json!({"x": "no"}), "field `inner.x`: expected a 64-bit integer, got string"),
            ("extra", json!(1), "field `extra`: not in the schema of `Thing`"),
        ];
        for (field, value, message) in cases {
            let mut b = body();
            b[field] = value;
            assert_eq!(encode_json(&schema, &[], &b).unwrap_err(), message);
        }
        let mut b = body();
        b["price"] = json!("12.345");
        assert!(encode_json(&schema, &[], &b).unwrap_err().starts_with("field `price`: expected a decimal"));
    }

    /// Wider than any machine integer: written with every digit, and read
    /// back as the same text.
    #[test]
    fn wide_decimals_round_trip() {
        let schema = r#"{"type":"record","name":"W","fields":[
            {"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":60,"scale":10}}]}"#;
        let parsed = Schema::parse_str(schema).unwrap();
        let reader = WriterSchema::parse(schema).unwrap();
        for text in [
            "12345678901234567890123456789012345678901234.5678901234",
            "-99999999999999999999999999999999999999.0000000001",
            "-0.0000000001",
            "0.0000000000",
        ] {
            let datum = encode_json(&parsed, &[], &json!({ "d": text })).unwrap();
            let body = decode_datum(&reader, &datum).unwrap().body;
            assert_eq!(String::from_utf8(body.to_vec()).unwrap(), format!(r#"{{"d":"{text}"}}"#));
        }
    }

    #[test]
    fn decimals_are_minimal_twos_complement() {
        assert_eq!(decimal_bytes("1.00", 2, None).unwrap(), vec![100]);
        assert_eq!(decimal_bytes("1.28", 2, None).unwrap(), vec![0, 128]);
        assert_eq!(decimal_bytes("-1.28", 2, None).unwrap(), vec![0x80]);
        assert_eq!(decimal_bytes("-1.29", 2, None).unwrap(), vec![0xff, 0x7f]);
        assert_eq!(decimal_bytes("-0.01", 2, Some(4)).unwrap(), vec![0xff; 4]);
        assert_eq!(decimal_bytes("0", 2, None).unwrap(), vec![0]);
        assert_eq!(decimal_bytes("-0.00", 2, None).unwrap(), vec![0]);
        assert!(decimal_bytes("1.", 2, None).is_err());
        assert!(decimal_bytes("abc", 2, None).is_err());
    }
}
