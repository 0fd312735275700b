//! JSON Schema values in Confluent's wire format: the JSON text follows the
//! 5-byte header. The value is checked to be one JSON object and served
//! compacted: whitespace between tokens is dropped, and everything else
//! (key order, number spelling, string escapes) is kept byte for byte, so
//! large integers and exact decimals are never rounded through a float.
//!
//! The schema only names the record type (its `title`, lower-cased, any
//! dotted prefix dropped); values are not validated against it, as
//! Confluent's deserializers do not by default either.

use super::{DecodeError, MAX_BODY};
use crate::store::value::StoredValue;

/// A JSON Schema, reduced to what decoding needs.
#[derive(Debug)]
pub struct JsonSchema {
    /// The schema's `title`, lower-cased, dotted prefix dropped; `""` without one.
    pub record_type: String,
}

impl JsonSchema {
    pub fn parse(text: &str) -> Result<JsonSchema, DecodeError> {
        let schema: serde_json::Value =
            serde_json::from_str(text).map_err(|e| DecodeError::BadSchema(format!("JSON Schema is not JSON: {e}")))?;
        let title = schema.get("title").and_then(serde_json::Value::as_str).unwrap_or("");
        let record_type = title.rsplit('.').next().unwrap_or(title).to_ascii_lowercase();
        Ok(JsonSchema { record_type })
    }

    /// A value: one JSON object, compacted, with its ETag.
    pub fn decode_value(&self, datum: &[u8]) -> Result<StoredValue, DecodeError> {
        if datum.len() > MAX_BODY {
            return Err(DecodeError::TooLarge);
        }
        match scan(datum, true)? {
            (body, Some(updated_at)) => Ok(StoredValue::new(body, updated_at)),
            (_, None) => Err(DecodeError::NotARecord("a JSON Schema value must be a JSON object".into())),
        }
    }
}

/// Checked JSON of any kind (a key), compacted.
pub fn decode_any(datum: &[u8]) -> Result<Vec<u8>, DecodeError> {
    scan(datum, false).map(|(body, _)| body)
}

fn not_json(why: &str) -> DecodeError {
    DecodeError::NotJson(why.to_string())
}

/// One pass over JSON text: checks it (RFC 8259 syntax; strings UTF-8,
/// without control characters or a lone UTF-16 surrogate in a `\u` escape),
/// and copies its tokens without the whitespace between them. Numbers are
/// checked for their syntax only, so `1E400` and 30-digit integers are kept
/// as written. Nesting is tracked on a heap stack (one byte a level), so deep
/// input cannot overflow the thread's stack.
///
/// Returns the compact text and, for an object, `Some` of its integral
/// `updatedAt` (the last one, read as serde_json reads it, when
/// `read_updated_at`), else `None`.
fn scan(src: &[u8], read_updated_at: bool) -> Result<(Vec<u8>, Option<Option<i64>>), DecodeError> {
    std::str::from_utf8(src).map_err(|e| DecodeError::NotJson(format!("not UTF-8: {e}")))?;
    let mut s = Scanner { src, pos: 0, out: Vec::with_capacity(src.len()) };
    s.whitespace();
    let object = s.peek() == Some(b'{');
    let watch = object && read_updated_at;
    let mut updated_at = None;
    let mut pending: Option<usize> = None;
    let mut stack: Vec<u8> = Vec::new();
    'value: loop {
        s.whitespace();
        match s.peek().ok_or_else(|| not_json("the text ends where a value was expected"))? {
            open @ (b'{' | b'[') => {
                s.copy(1);
                s.whitespace();
                let close = if open == b'{' { b'}' } else { b']' };
                if s.peek() == Some(close) {
                    s.copy(1);
                } else {
                    stack.push(open);
                    if open == b'{' {
                        pending = pending.or(s.key(watch && stack.len() == 1)?);
                    }
                    continue 'value;
                }
            }
            b'"' => s.string()?,
            b'-' | b'0'..=b'9' => s.number()?,
            b't' => s.literal(b"true")?,
            b'f' => s.literal(b"false")?,
            b'n' => s.literal(b"null")?,
            _ => return Err(not_json("expected a value")),
        }
        loop {
            if stack.len() == 1 {
                if let Some(mark) = pending.take() {
                    let value = serde_json::from_slice::<serde_json::Value>(&s.out[mark..])
                        .map_err(|e| DecodeError::NotJson(e.to_string()))?;
                    updated_at = value.as_i64();
                }
            }
            s.whitespace();
            let Some(&open) = stack.last() else { break 'value };
            let close = if open == b'{' { b'}' } else { b']' };
            match s.peek() {
                Some(b',') => {
                    s.copy(1);
                    if open == b'{' {
                        pending = pending.or(s.key(watch && stack.len() == 1)?);
                    }
                    continue 'value;
                }
                Some(c) if c == close => {
                    s.copy(1);
                    stack.pop();
                }
                _ => return Err(not_json("expected `,` or the end of an object or array")),
            }
        }
    }
    if s.pos != src.len() {
        return Err(not_json("trailing characters after the value"));
    }
    Ok((s.out, object.then_some(updated_at)))
}

struct Scanner<'a> {
    src: &'a [u8],
    pos: usize,
    out: Vec<u8>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Copies the next `n` bytes of the source to the output.
    fn copy(&mut self, n: usize) {
        self.out.extend_from_slice(&self.src[self.pos..self.pos + n]);
        self.pos += n;
    }

    /// An object's key and its colon. With `watch`, returns where the value
    /// will start in the output when the key is `updatedAt`.
    fn key(&mut self, watch: bool) -> Result<Option<usize>, DecodeError> {
        self.whitespace();
        if self.peek() != Some(b'"') {
            return Err(not_json("expected a string as an object key"));
        }
        let start = self.out.len();
        self.string()?;
        let updated_at = watch && is_updated_at(&self.out[start..]);
        self.whitespace();
        if self.peek() != Some(b':') {
            return Err(not_json("expected `:` after an object key"));
        }
        self.copy(1);
        Ok(updated_at.then_some(self.out.len()))
    }

    fn string(&mut self) -> Result<(), DecodeError> {
        let start = self.pos;
        self.pos += 1;
        loop {
            let rest = &self.src[self.pos..];
            let stop = rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            self.pos += stop.ok_or_else(|| not_json("the text ends inside a string"))?;
            match self.src[self.pos] {
                b'"' => break,
                b'\\' => self.escape()?,
                _ => return Err(not_json("a control character inside a string; escape it")),
            }
        }
        self.pos += 1;
        self.out.extend_from_slice(&self.src[start..self.pos]);
        Ok(())
    }

    /// One escape (the backslash at `pos`); a `\u` high surrogate must be
    /// followed by a `\u` low one.
    fn escape(&mut self) -> Result<(), DecodeError> {
        let lone = || not_json("a lone UTF-16 surrogate in a \\u escape");
        match self.src.get(self.pos + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 2,
            Some(b'u') => {
                let unit = self.hex4(self.pos + 2)?;
                self.pos += 6;
                if (0xDC00..=0xDFFF).contains(&unit) {
                    return Err(lone());
                }
                if (0xD800..=0xDBFF).contains(&unit) {
                    let paired = self.src.get(self.pos..self.pos + 2) == Some(b"\\u")
                        && (0xDC00..=0xDFFF).contains(&self.hex4(self.pos + 2)?);
                    if !paired {
                        return Err(lone());
                    }
                    self.pos += 6;
                }
            }
            _ => return Err(not_json("an invalid escape in a string")),
        }
        Ok(())
    }

    fn hex4(&self, at: usize) -> Result<u32, DecodeError> {
        let digits = self.src.get(at..at + 4).ok_or_else(|| not_json("a \\u escape without four hex digits"))?;
        digits.iter().try_fold(0, |n, &d| {
            let digit = char::from(d).to_digit(16).ok_or_else(|| not_json("a \\u escape without four hex digits"))?;
            Ok(n * 16 + digit)
        })
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, copied as written.
    fn number(&mut self) -> Result<(), DecodeError> {
        let start = self.pos;
        let bad = || not_json("an invalid number");
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(bad()),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !self.digits() {
                return Err(bad());
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !self.digits() {
                return Err(bad());
            }
        }
        self.out.extend_from_slice(&self.src[start..self.pos]);
        Ok(())
    }

    /// Skips digits; whether there was one.
    fn digits(&mut self) -> bool {
        let n = self.src[self.pos..].iter().take_while(|b| b.is_ascii_digit()).count();
        self.pos += n;
        n > 0
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), DecodeError> {
        if !self.src[self.pos..].starts_with(word) {
            return Err(not_json("an invalid literal (true, false or null)"));
        }
        self.copy(word.len());
        Ok(())
    }
}

/// Whether a key (quoted, escapes as written) reads `updatedAt`.
fn is_updated_at(quoted: &[u8]) -> bool {
    if !quoted.contains(&b'\\') {
        return quoted == b"\"updatedAt\"";
    }
    serde_json::from_slice::<String>(quoted).is_ok_and(|key| key == "updatedAt")
}

#[cfg(test)]
#[path = "json_reference_tests.rs"]
mod json_reference_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> JsonSchema {
        JsonSchema::parse(
            r#"{"title":"com.acme.Customer","type":"object","properties":{"accountId":{"type":"string"}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn title_names_the_record_type() {
        assert_eq!(schema().record_type, "customer");
        assert_eq!(JsonSchema::parse(r#"{"title":"Bill"}"#).unwrap().record_type, "bill");
        assert_eq!(JsonSchema::parse(r#"{"type":"object"}"#).unwrap().record_type, "");
        assert!(matches!(JsonSchema::parse("{nope"), Err(DecodeError::BadSchema(_))));
    }

    #[test]
    fn objects_are_served_compact_in_their_own_order() {
        let text = b"{ \"z\" : 1 ,\n \"a\": \"x y\\\" \\\\\", \"n\": [ 1.50, 1E400, 123456789012345678901234567890 ],\t\"updatedAt\": 17 }";
        let value = schema().decode_value(text).unwrap();
        assert_eq!(
            std::str::from_utf8(&value.body).unwrap(),
            r#"{"z":1,"a":"x y\" \\","n":[1.50,1E400,123456789012345678901234567890],"updatedAt":17}"#
        );
        assert_eq!(&value.etag[..], b"\"17\"");
        let hashed = schema().decode_value(br#"{"updatedAt":1.5}"#).unwrap();
        assert_eq!(hashed.etag.len(), 18, "a non-integral updatedAt is not the ETag");
    }

    #[test]
    fn anything_but_one_object_is_refused() {
        for bad in [&b"[1]"[..], b"\"s\"", b"1", b"null", b"{\"a\":1} x", b"{\"a\":", b"", b"\xff"] {
            assert!(schema().decode_value(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let lone =
            [&b"{\"a\":\"\xe0\xdd*\"}"[..], br#"{"a":"\ud800"}"#, br#"{"a":["\udc00x"]}"#, br#"{"a":"\ud800\n"}"#];
        for bad in lone {
            assert!(schema().decode_value(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
            assert!(decode_any(&bad[5..bad.len() - 1]).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let paired = br#"{"a":"\ud83d\ude00 \\ \" \u00e9","b":"\ud800","c":1}"#;
        assert!(schema().decode_value(&paired[..]).is_err(), "the lone one in b");
        assert!(schema().decode_value(br#"{"a":"\ud83d\ude00 \\ \" \u00e9 \\u","c":1}"#).is_ok());
        let deep = "[".repeat(10_000);
        assert!(schema().decode_value(format!("{{\"a\":{deep}}}").as_bytes()).is_err());
    }

    #[test]
    fn keys_of_any_kind() {
        assert_eq!(decode_any(b" \"k 1\" ").unwrap(), b"\"k 1\"");
        assert_eq!(decode_any(b"{ \"id\" : 5 }").unwrap(), b"{\"id\":5}");
        assert!(decode_any(b"{").is_err());
    }
}
