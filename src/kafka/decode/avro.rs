//! Avro binary -> the JSON body the API serves.
//!
//! The writer schema (parsed with `apache-avro`) is compiled once per schema
//! ID into a small tree of `Node`s; each record is then decoded straight from
//! the Avro bytes into JSON text, with no intermediate `Value` tree. That
//! keeps ingest at a few hundred nanoseconds per record, and every length in
//! the datum is checked against the bytes left, so a poison record is an
//! error, never a huge allocation or a panic.

use super::{json_string, malformed, write_base64, write_float, write_str, DecodeError};
use crate::store::value::StoredValue;
use apache_avro::schema::{InnerDecimalSchema, Name, RecordSchema, UuidSchema};
use apache_avro::Schema;
use std::collections::HashMap;
use std::io::Write;

/// The pattern of the Avro types written as a long: `long` and the
/// logical types on it (named once, for `compile` and `is_long`).
macro_rules! long_schemas {
    () => {
        Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos
    };
}

type NodeId = usize;

/// A compiled schema node: what to read and how to write it.
#[derive(Debug)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
    /// Symbols, already JSON-quoted.
    Enum(Vec<Vec<u8>>),
    Union(Vec<NodeId>),
    Array(NodeId),
    Map(NodeId),
    /// Fields as (`"name":` pre-rendered, node).
    Record(Vec<(Vec<u8>, NodeId)>),
    /// Decimal over bytes (`None`) or fixed(size), with its scale.
    Decimal {
        scale: usize,
        fixed: Option<usize>,
    },
    UuidFixed,
    Duration,
    /// Placeholder while a named type is being compiled.
    Pending,
}

/// A writer schema, compiled for decoding.
#[derive(Debug)]
pub struct WriterSchema {
    /// Record name, lower-cased, namespace dropped (`com.acme.Customer` -> `customer`);
    /// for a schema that is not a record (a key's `string`, say), its type name.
    pub record_type: String,
    schema: Schema,
    nodes: Vec<Node>,
    /// The node of the top-level type (referenced schemas are compiled first).
    root: NodeId,
    /// Index of the top-level `updatedAt` field when it is an int or long.
    updated_at: Option<usize>,
}

impl WriterSchema {
    /// A record schema with no references (values).
    pub fn parse(schema_json: &str) -> Result<WriterSchema, DecodeError> {
        let schema = Self::parse_with_references(schema_json, &[])?;
        match schema.nodes[schema.root] {
            Node::Record(_) => Ok(schema),
            _ => Err(DecodeError::NotARecord(format!("top-level type is {:?}", schema_kind(&schema.schema)))),
        }
    }

    /// Any schema, whose named types may come from `references` (schema
    /// texts, each a named type, dependencies first), as the registry's
    /// `references` provide them.
    pub fn parse_with_references(schema_json: &str, references: &[&str]) -> Result<WriterSchema, DecodeError> {
        let invalid = |e: apache_avro::Error| DecodeError::NotARecord(format!("invalid Avro schema: {e}"));
        let (schema, referenced) = if references.is_empty() {
            (Schema::parse_str(schema_json).map_err(invalid)?, Vec::new())
        } else {
            Schema::parse_str_with_list(schema_json, references).map_err(invalid)?
        };
        let mut compiler = Compiler::default();
        for named in &referenced {
            compiler.compile(named)?;
        }
        let root = compiler.compile(&schema)?;
        let nodes = compiler.nodes;
        let (record_type, updated_at) = match &schema {
            Schema::Record(record) => (record.name.name().to_ascii_lowercase(), updated_at_field(record, &nodes, root)),
            other => (schema_kind(other).to_ascii_lowercase(), None),
        };
        Ok(WriterSchema { record_type, schema, nodes, root, updated_at })
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Whether the top-level type is a record (a value must be one).
    pub fn is_record(&self) -> bool {
        matches!(self.nodes[self.root], Node::Record(_))
    }
}

fn schema_kind(s: &Schema) -> String {
    format!("{s:?}").split(['(', ' ', '{']).next().unwrap_or("?").to_string()
}

fn updated_at_field(record: &RecordSchema, nodes: &[Node], root: NodeId) -> Option<usize> {
    let Node::Record(fields) = &nodes[root] else { return None };
    let index = record.fields.iter().position(|f| f.name == "updatedAt")?;
    let integer = |id: NodeId| matches!(nodes[id], Node::Int | Node::Long);
    match &nodes[fields[index].1] {
        Node::Int | Node::Long => Some(index),
        Node::Union(variants) if variants.iter().any(|v| integer(*v)) => Some(index),
        _ => None,
    }
}

#[derive(Default)]
struct Compiler {
    nodes: Vec<Node>,
    named: HashMap<Name, NodeId>,
}

impl Compiler {
    fn add(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn compile(&mut self, s: &Schema) -> Result<NodeId, DecodeError> {
        let node = match s {
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int | Schema::Date | Schema::TimeMillis => Node::Int,
            long_schemas!() => Node::Long,
            Schema::Float => Node::Float,
            Schema::Double => Node::Double,
            Schema::Bytes | Schema::BigDecimal => Node::Bytes,
            Schema::String => Node::String,
            Schema::Uuid(UuidSchema::String) => Node::String,
            Schema::Uuid(UuidSchema::Bytes) => Node::Bytes,
            Schema::Uuid(UuidSchema::Fixed(f)) => return Ok(self.named_leaf(&f.name, Node::UuidFixed)),
            Schema::Fixed(f) => return Ok(self.named_leaf(&f.name, Node::Fixed(f.size))),
            Schema::Duration(f) => return Ok(self.named_leaf(&f.name, Node::Duration)),
            Schema::Decimal(d) => match &d.inner {
                InnerDecimalSchema::Bytes => Node::Decimal { scale: d.scale, fixed: None },
                InnerDecimalSchema::Fixed(f) => {
                    return Ok(self.named_leaf(&f.name, Node::Decimal { scale: d.scale, fixed: Some(f.size) }))
                }
            },
            Schema::Enum(e) => {
                let symbols = e.symbols.iter().map(|s| json_string(s)).collect();
                return Ok(self.named_leaf(&e.name, Node::Enum(symbols)));
            }
            Schema::Array(a) => Node::Array(self.compile(&a.items)?),
            Schema::Map(m) => Node::Map(self.compile(&m.types)?),
            Schema::Union(u) => Node::Union(u.variants().iter().map(|v| self.compile(v)).collect::<Result<_, _>>()?),
            Schema::Record(r) => return self.record(r),
            Schema::Ref { name } => {
                return self
                    .named
                    .get(name)
                    .copied()
                    .ok_or_else(|| DecodeError::NotARecord(format!("unresolved reference {name:?}")))
            }
        };
        Ok(self.add(node))
    }

    fn named_leaf(&mut self, name: &Name, node: Node) -> NodeId {
        let id = self.add(node);
        self.named.insert(name.clone(), id);
        id
    }

    /// Records are registered before their fields, so recursive types resolve.
    fn record(&mut self, r: &RecordSchema) -> Result<NodeId, DecodeError> {
        let id = self.add(Node::Pending);
        self.named.insert(r.name.clone(), id);
        let mut fields = Vec::with_capacity(r.fields.len());
        for f in &r.fields {
            let mut key = json_string(&f.name);
            key.push(b':');
            fields.push((key, self.compile(&f.schema)?));
        }
        self.nodes[id] = Node::Record(fields);
        Ok(id)
    }
}

/// Deepest nesting a datum may have (recursive schemas meet hostile data).
const MAX_DEPTH: usize = 128;
/// Largest JSON body a record may decode to. Input size alone does not bound
/// it: items of zero-size types take no bytes, and a schema that reuses a
/// record type twice per level doubles the output at every level.
pub const MAX_BODY: usize = 16 << 20;

/// Decodes one Avro datum written with `schema` into its JSON body and ETag.
pub fn decode_datum(schema: &WriterSchema, datum: &[u8]) -> Result<StoredValue, DecodeError> {
    let mut out = Vec::with_capacity(datum.len() * 2 + 64);
    let mut r = Reader { buf: datum, pos: 0 };
    let updated_at = write_top_record(schema, &mut r, &mut out)?;
    if r.pos != datum.len() {
        return Err(malformed(format!("{} bytes left after the record", datum.len() - r.pos)));
    }
    Ok(StoredValue::new(out, updated_at))
}

/// Decodes one Avro datum of any type (a key) into JSON text.
pub fn decode_any(schema: &WriterSchema, datum: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(datum.len() * 2 + 8);
    let mut r = Reader { buf: datum, pos: 0 };
    write_node(&schema.nodes, schema.root, &mut r, &mut out, 0)?;
    if r.pos != datum.len() {
        return Err(malformed(format!("{} bytes left after the datum", datum.len() - r.pos)));
    }
    Ok(out)
}

/// Writes the top-level record, noting `updatedAt` on the way.
fn write_top_record(schema: &WriterSchema, r: &mut Reader, out: &mut Vec<u8>) -> Result<Option<i64>, DecodeError> {
    let Node::Record(fields) = &schema.nodes[schema.root] else {
        return Err(DecodeError::NotARecord(format!("top-level type is {}", schema.record_type)));
    };
    let mut updated_at = None;
    out.push(b'{');
    for (i, (key, node)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(key);
        let start = out.len();
        write_node(&schema.nodes, *node, r, out, 1)?;
        if schema.updated_at == Some(i) {
            updated_at = std::str::from_utf8(&out[start..]).ok().and_then(|t| t.parse().ok());
        }
    }
    out.push(b'}');
    Ok(updated_at)
}

fn write_node(nodes: &[Node], id: NodeId, r: &mut Reader, out: &mut Vec<u8>, depth: usize) -> Result<(), DecodeError> {
    if depth > MAX_DEPTH {
        return Err(malformed("nested too deeply"));
    }
    if out.len() > MAX_BODY {
        return Err(DecodeError::TooLarge);
    }
    match &nodes[id] {
        Node::Null => out.extend_from_slice(b"null"),
        Node::Boolean => match r.byte()? {
            0 => out.extend_from_slice(b"false"),
            1 => out.extend_from_slice(b"true"),
            b => return Err(malformed(format!("boolean byte {b}"))),
        },
        Node::Int => {
            let v = r.long()?;
            i32::try_from(v).map_err(|_| malformed("int out of range"))?;
            out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        }
        Node::Long => out.extend_from_slice(itoa::Buffer::new().format(r.long()?).as_bytes()),
        Node::Float => write_float(out, f64::from(f32::from_le_bytes(r.array()?)), true),
        Node::Double => write_float(out, f64::from_le_bytes(r.array()?), false),
        Node::Bytes => write_base64(out, r.sized()?),
        Node::String => write_str(out, r.text()?),
        Node::Fixed(n) => write_base64(out, r.take(*n)?),
        Node::Enum(symbols) => {
            let i = r.long()?;
            let symbol = usize::try_from(i)
                .ok()
                .and_then(|i| symbols.get(i))
                .ok_or_else(|| malformed(format!("enum index {i}")))?;
            out.extend_from_slice(symbol);
        }
        Node::Union(variants) => {
            let i = r.long()?;
            let v = usize::try_from(i)
                .ok()
                .and_then(|i| variants.get(i))
                .ok_or_else(|| malformed(format!("union index {i}")))?;
            write_node(nodes, *v, r, out, depth + 1)?;
        }
        Node::Array(item) => write_blocks(nodes, *item, r, out, depth, None)?,
        Node::Map(value) => write_blocks(nodes, *value, r, out, depth, Some(()))?,
        Node::Record(fields) => {
            out.push(b'{');
            for (i, (key, node)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(key);
                write_node(nodes, *node, r, out, depth + 1)?;
            }
            out.push(b'}');
        }
        Node::Decimal { scale, fixed } => {
            let bytes = match fixed {
                Some(n) => r.take(*n)?,
                None => r.sized()?,
            };
            write_decimal(out, bytes, *scale)?;
        }
        Node::UuidFixed => write_uuid(out, r.take(16)?),
        Node::Duration => {
            let b = r.take(12)?;
            let part = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            let _ = write!(out, r#"{{"months":{},"days":{},"millis":{}}}"#, part(0), part(4), part(8));
        }
        Node::Pending => return Err(malformed("schema still compiling")),
    }
    Ok(())
}

/// Arrays (`keyed` None) and maps: blocks of items until a zero count.
fn write_blocks(
    nodes: &[Node],
    item: NodeId,
    r: &mut Reader,
    out: &mut Vec<u8>,
    depth: usize,
    keyed: Option<()>,
) -> Result<(), DecodeError> {
    let (open, close) = if keyed.is_some() { (b'{', b'}') } else { (b'[', b']') };
    out.push(open);
    let mut first = true;
    loop {
        let mut count = r.long()?;
        if count == 0 {
            break;
        }
        if count < 0 {
            count = count.checked_neg().ok_or_else(|| malformed("block count"))?;
            r.long()?; // block size in bytes, not needed
        }
        // Each item takes at least a byte unless it is of a zero-size type.
        let bound = if zero_sized(nodes, item, depth) && keyed.is_none() { 1 << 20 } else { r.left() as i64 };
        if count > bound {
            return Err(malformed(format!("block of {count} items in {} bytes", r.left())));
        }
        for _ in 0..count {
            if !first {
                out.push(b',');
            }
            first = false;
            if keyed.is_some() {
                write_str(out, r.text()?);
                out.push(b':');
            }
            write_node(nodes, item, r, out, depth + 1)?;
        }
    }
    out.push(close);
    Ok(())
}

/// Whether an item of this node takes no bytes. Bounded by depth like
/// decoding: records that contain each other (`A {b: B}`, `B {a: A}`, a
/// schema no datum can satisfy) would otherwise recurse until the stack overflows.
fn zero_sized(nodes: &[Node], id: NodeId, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match &nodes[id] {
        Node::Null | Node::Fixed(0) => true,
        Node::Record(fields) => fields.iter().all(|(_, f)| *f != id && zero_sized(nodes, *f, depth + 1)),
        _ => false,
    }
}

/// Reads Avro binary primitives, every length checked against what is left.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or_else(|| malformed("datum ends early"))?;
        self.pos += 1;
        Ok(b)
    }

    /// Zig-zag varint, at most 10 bytes.
    fn long(&mut self) -> Result<i64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err(malformed("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
            }
        }
        Err(malformed("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.left() {
            return Err(malformed(format!("needs {n} bytes, {} left", self.left())));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Length-prefixed bytes.
    fn sized(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.long()?;
        let n = usize::try_from(n).map_err(|_| malformed(format!("negative length {n}")))?;
        self.take(n)
    }

    fn text(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.sized()?).map_err(|_| malformed("string is not UTF-8"))
    }
}

/// The widest decimal written (4 KiB of two's complement, about 9 900
/// digits): turning bytes into digits is quadratic in the width, so a
/// hostile record cannot make the consumer spin on one value.
pub const MAX_DECIMAL_BYTES: usize = 4096;

/// A decimal's unscaled two's-complement value with its scale, as a JSON
/// string of its exact digits (`"-123.45"`), so no precision is lost at any
/// width. Empty bytes are the value zero.
fn write_decimal(out: &mut Vec<u8>, bytes: &[u8], scale: usize) -> Result<(), DecodeError> {
    if bytes.len() > MAX_DECIMAL_BYTES {
        return Err(malformed("decimal wider than 4096 bytes"));
    }
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let digits = magnitude_digits(bytes, negative);
    let digits =
        if digits.len() <= scale { format!("{}{digits}", "0".repeat(scale + 1 - digits.len())) } else { digits };
    let (int, frac) = digits.split_at(digits.len() - scale);
    out.push(b'"');
    if negative {
        out.push(b'-');
    }
    out.extend_from_slice(int.as_bytes());
    if scale > 0 {
        out.push(b'.');
        out.extend_from_slice(frac.as_bytes());
    }
    out.push(b'"');
    Ok(())
}

/// The decimal digits of the absolute value of a big-endian two's-complement
/// integer: the magnitude in 32-bit limbs, divided by 10^9 until it is zero.
fn magnitude_digits(bytes: &[u8], negative: bool) -> String {
    let mut magnitude: Vec<u8> = bytes.iter().map(|b| if negative { !b } else { *b }).collect();
    if negative {
        // Two's complement: invert (done above), then add one.
        for b in magnitude.iter_mut().rev() {
            let (sum, carry) = b.overflowing_add(1);
            *b = sum;
            if !carry {
                break;
            }
        }
    }
    let pad = (4 - magnitude.len() % 4) % 4;
    let padded: Vec<u8> = std::iter::repeat_n(0, pad).chain(magnitude).collect();
    let mut limbs: Vec<u32> = padded.chunks(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
    let mut groups = Vec::new();
    while limbs.iter().any(|l| *l != 0) {
        let mut rest = 0u64;
        for limb in limbs.iter_mut() {
            let v = (rest << 32) | u64::from(*limb);
            *limb = (v / 1_000_000_000) as u32;
            rest = v % 1_000_000_000;
        }
        groups.push(rest as u32);
        let zeros = limbs.iter().take_while(|l| **l == 0).count();
        limbs.drain(..zeros);
    }
    let mut text = groups.pop().map_or_else(|| "0".to_string(), |g| g.to_string());
    for g in groups.iter().rev() {
        text.push_str(&format!("{g:09}"));
    }
    text
}

fn write_uuid(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b'"');
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        let _ = write!(out, "{byte:02x}");
    }
    out.push(b'"');
}

/// The Avro types written as a long: `long` and the logical types on it.
pub fn is_long(s: &Schema) -> bool {
    matches!(s, long_schemas!())
}

#[cfg(test)]
#[path = "avro_tests.rs"]
mod tests;
