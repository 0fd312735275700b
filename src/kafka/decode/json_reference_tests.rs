//! The JSON Schema decoder as it was before the one-pass scanner (serde's
//! `IgnoredAny`, then a UTF-8 and surrogate check, then a compaction pass),
//! kept as the reference the scanner is tested against: seeded random JSON
//! texts, valid and broken, must be accepted or refused alike, and served
//! byte for byte the same.

use super::*;
use crate::kafka::decode::test_rng::Rng;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

fn reference_value(datum: &[u8]) -> Result<StoredValue, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(datum);
    let top = de.deserialize_any(TopLevel).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    de.end().map_err(|e| DecodeError::NotJson(e.to_string()))?;
    check_strings(datum)?;
    let Some(updated_at) = top else {
        return Err(DecodeError::NotARecord("a JSON Schema value must be a JSON object".into()));
    };
    Ok(StoredValue::new(compact(datum), updated_at))
}

fn reference_any(datum: &[u8]) -> Result<Vec<u8>, DecodeError> {
    serde_json::from_slice::<IgnoredAny>(datum).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    check_strings(datum)?;
    Ok(compact(datum))
}

/// What serde's `IgnoredAny` does not check in the strings it skips: that
/// the text is UTF-8 and that every `\u` surrogate escape is half of a pair.
/// Without this, a value like `{"a":"\ud800"}` would be stored and served
/// as a body that strict JSON parsers refuse. (Numbers are still skipped
/// loosely, so `1E400` and 30-digit integers are kept as written.)
#[allow(clippy::nonminimal_bool)] // kept as it was
fn check_strings(json: &[u8]) -> Result<(), DecodeError> {
    std::str::from_utf8(json).map_err(|e| DecodeError::NotJson(format!("not UTF-8: {e}")))?;
    // Syntax is already checked, so a backslash only occurs inside a string,
    // always starts an escape, and `\u` is followed by four hex digits.
    let mut i = 0;
    let mut pending_high = false;
    while let Some(offset) = json[i..].iter().position(|&b| b == b'\\') {
        i += offset;
        let unit = (json.get(i + 1) == Some(&b'u')).then(|| hex4(json.get(i + 2..i + 6).unwrap_or_default()));
        let is_low = matches!(unit, Some(0xDC00..=0xDFFF));
        let adjacent = pending_high && offset == 0;
        if (pending_high && !(adjacent && is_low)) || (is_low && !adjacent) {
            return Err(DecodeError::NotJson("a lone UTF-16 surrogate in a \\u escape".into()));
        }
        pending_high = !pending_high && matches!(unit, Some(0xD800..=0xDBFF));
        i += if unit.is_some() { 6 } else { 2 };
    }
    if pending_high {
        return Err(DecodeError::NotJson("a lone UTF-16 surrogate in a \\u escape".into()));
    }
    Ok(())
}

/// Four hex digits already checked by the parser.
fn hex4(digits: &[u8]) -> u32 {
    digits.iter().fold(0, |n, &d| n * 16 + char::from(d).to_digit(16).unwrap_or(0))
}

/// Valid JSON text without the whitespace between tokens.
fn compact(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, &b) in json.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            out.extend_from_slice(&json[start..i]);
            start = i + 1;
        }
    }
    out.extend_from_slice(&json[start..]);
    out
}

/// Reads a top-level JSON value: `Some(updatedAt)` for an object (with its
/// integral `updatedAt`, if any), `None` for anything else.
struct TopLevel;

impl<'de> Visitor<'de> for TopLevel {
    type Value = Option<Option<i64>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut updated_at = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "updatedAt" {
                updated_at = map.next_value::<serde_json::Value>()?.as_i64();
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Some(updated_at))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

const WS: &[&str] = &["", "", "", " ", "\n", "\t ", "\r\n"];
const STRINGS: &[&str] = &[
    "",
    "a",
    "x y",
    "\\\"",
    "\\\\",
    "\\n",
    "\\/",
    "\\u00e9",
    "\\ud83d\\ude00",
    "\\ud800",
    "\\udc00",
    "\\ud800\\n",
    "é",
    "😀",
    "\\u",
    "\\x",
    "\t",
    "\u{1}",
];
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "17",
    "-5",
    "1.50",
    "1E400",
    "1e-3",
    "2.5E+2",
    "123456789012345678901234567890",
    "01",
    "1.",
    "-",
    ".5",
    "1e",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "17.0",
];
const KEYS: &[&str] = &["a", "updatedAt", "upd\\u0061tedAt", "z", "", "updatedAt "];

fn text(rng: &mut Rng, out: &mut String, depth: usize) {
    out.push_str(rng.pick(WS));
    match rng.below(if depth > 4 { 4 } else { 6 }) {
        0 => {
            out.push('"');
            out.push_str(rng.pick(STRINGS));
            out.push('"');
        }
        1 => out.push_str(rng.pick(NUMBERS)),
        2 => out.push_str(rng.pick(&["true", "false", "null", "nul", "tru"])),
        3 => out.push_str(rng.pick(NUMBERS)),
        4 => {
            out.push('[');
            for i in 0..rng.below(4) {
                if i > 0 {
                    out.push(',');
                }
                text(rng, out, depth + 1);
            }
            out.push_str(rng.pick(WS));
            out.push(']');
        }
        _ => object(rng, out, depth),
    }
    out.push_str(rng.pick(WS));
}

fn object(rng: &mut Rng, out: &mut String, depth: usize) {
    out.push('{');
    for i in 0..rng.below(5) {
        if i > 0 {
            out.push(',');
        }
        out.push_str(rng.pick(WS));
        out.push('"');
        out.push_str(rng.pick(KEYS));
        out.push('"');
        out.push_str(rng.pick(WS));
        out.push(':');
        text(rng, out, depth + 1);
    }
    out.push_str(rng.pick(WS));
    out.push('}');
}

/// The text, and a copy with one byte changed, dropped, or the end cut.
fn variants(rng: &mut Rng, text: &str) -> Vec<Vec<u8>> {
    let bytes = text.as_bytes().to_vec();
    let mut out = vec![bytes.clone()];
    if !bytes.is_empty() {
        let at = rng.below(bytes.len());
        let mut changed = bytes.clone();
        let alphabet = b"{}[],:\"\\ 0-e.tu\xff\x01";
        changed[at] = alphabet[rng.below(alphabet.len())];
        out.push(changed);
        let mut dropped = bytes.clone();
        dropped.remove(at);
        out.push(dropped);
        out.push(bytes[..at].to_vec());
    }
    out
}

#[test]
fn scanner_accepts_and_writes_what_serde_did() {
    let schema = JsonSchema { record_type: "t".into() };
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut objects, mut refused) = (0, 0);
    for round in 0..20_000 {
        let mut doc = String::new();
        if round % 5 == 0 {
            text(&mut rng, &mut doc, 0);
        } else {
            object(&mut rng, &mut doc, 0);
        }
        for datum in variants(&mut rng, &doc) {
            let shown = String::from_utf8_lossy(&datum).into_owned();
            match (schema.decode_value(&datum), reference_value(&datum)) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "{shown}");
                    objects += 1;
                }
                (Err(a), Err(b)) => {
                    refused += 1;
                    // A top-level scalar or array is refused by both; serde
                    // called an out-of-range number there malformed.
                    if shown.trim_start().starts_with('{') {
                        assert_eq!(a.reason(), b.reason(), "{shown}: {a} / {b}");
                    }
                }
                (a, b) => panic!("{shown}: scanner {a:?}, serde {b:?}"),
            }
            match (decode_any(&datum), reference_any(&datum)) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{shown}"),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("key {shown}: scanner {a:?}, serde {b:?}"),
            }
        }
    }
    assert!(objects > 10_000 && refused > 10_000, "{objects} accepted, {refused} refused");
}
