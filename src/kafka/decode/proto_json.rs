//! Protobuf wire bytes -> proto3 JSON in one pass, without building a
//! `DynamicMessage`: the fast path of `protobuf`.
//!
//! For each message type reachable from a schema, a table is worked out once
//! (`Plans::new`): per field its number, its JSON name already quoted, its
//! kind, whether it is repeated, has presence, or belongs to a oneof, and for
//! enums the names by number. Decoding walks the bytes with that table and
//! writes JSON straight into the body.
//!
//! The output must be byte for byte what `prost-reflect` writes (the slow
//! path, `DynamicMessage` and its serde mapping). So this path only takes the
//! common case and gives up (`None`) on anything else, and the caller then
//! decodes the message the slow way, which yields the same body or the error:
//! - message types that are well-known types (`google.protobuf.*`; but a
//!   `Timestamp` or `Duration` field is written here, as its RFC 3339 or
//!   seconds text), maps, groups, or have extensions are never planned fast,
//!   nor any message that contains one of them (at any depth);
//! - at decode time: fields out of ascending number order, a singular field
//!   or a oneof seen twice (the slow path merges or keeps the last), a wire
//!   type that does not match the field, invalid UTF-8, a bad varint, a
//!   length past the end, an unknown field in group encoding, deep nesting.
//!
//! Serializers (Confluent's, protobuf-java, C++, Python's upb, prost) write
//! fields in ascending number order, so records take the fast path.

use super::{write_base64, write_float, write_str};
use prost::encoding::decode_varint;
use prost::Message;
use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor};
use std::collections::HashMap;
use std::io::Write;

/// Nesting deeper than this is left to the slow path (and its own limit).
const MAX_DEPTH: usize = 32;

/// A message type's table, and whether it may take the fast path.
#[derive(Debug)]
struct MessagePlan {
    /// Sorted by field number.
    fields: Vec<FieldPlan>,
    fast: bool,
}

#[derive(Debug)]
struct FieldPlan {
    number: u32,
    /// `"jsonName":`, escaped and quoted.
    key: Box<[u8]>,
    kind: FieldKind,
    repeated: bool,
    /// Written whenever it is on the wire, even with its default value.
    presence: bool,
    /// Index of the oneof holding the field (synthetic ones included).
    oneof: Option<u8>,
}

#[derive(Debug)]
enum FieldKind {
    Double,
    Float,
    Int32,
    Sint32,
    Sfixed32,
    Int64,
    Sint64,
    Sfixed64,
    Uint32,
    Fixed32,
    Uint64,
    Fixed64,
    Bool,
    String,
    Bytes,
    Enum(EnumPlan),
    /// Index into `Plans::messages`.
    Message(usize),
    Timestamp,
    Duration,
}

#[derive(Debug)]
struct EnumPlan {
    default: i32,
    /// Quoted names by number (the first value declared for a number).
    names: HashMap<i32, Box<[u8]>>,
}

/// The tables of every message type a schema can reach.
#[derive(Debug, Default)]
pub struct Plans {
    messages: Vec<MessagePlan>,
    by_name: HashMap<String, usize>,
}

impl Plans {
    /// Tables for `roots` and every message type their fields reach.
    pub fn new(roots: impl IntoIterator<Item = MessageDescriptor>) -> Plans {
        let mut plans = Plans::default();
        let mut descs = Vec::new();
        for root in roots {
            plans.collect(root, &mut descs);
        }
        plans.messages = descs.iter().map(|d| plans.plan(d)).collect();
        plans.settle_fast();
        plans
    }

    /// The plan index of `desc`, when it may take the fast path.
    pub fn fast_index(&self, desc: &MessageDescriptor) -> Option<usize> {
        let index = *self.by_name.get(desc.full_name())?;
        self.messages[index].fast.then_some(index)
    }

    fn collect(&mut self, desc: MessageDescriptor, out: &mut Vec<MessageDescriptor>) {
        if self.by_name.contains_key(desc.full_name()) {
            return;
        }
        self.by_name.insert(desc.full_name().to_string(), out.len());
        out.push(desc.clone());
        for child in desc.child_messages() {
            self.collect(child, out);
        }
        for field in desc.fields() {
            if let Kind::Message(m) = field.kind() {
                self.collect(m, out);
            }
        }
    }

    fn plan(&self, desc: &MessageDescriptor) -> MessagePlan {
        let oneofs: Vec<String> = desc.oneofs().map(|o| o.name().to_string()).collect();
        let mut fast = !desc.full_name().starts_with("google.protobuf.")
            && !desc.is_map_entry()
            && desc.extensions().len() == 0
            && oneofs.len() <= 64;
        let mut fields = Vec::with_capacity(desc.fields().len());
        for field in desc.fields() {
            match self.field_plan(&field, &oneofs) {
                Some(plan) => fields.push(plan),
                None => fast = false,
            }
        }
        MessagePlan { fields, fast }
    }

    fn field_plan(&self, field: &FieldDescriptor, oneofs: &[String]) -> Option<FieldPlan> {
        if field.is_map() || field.is_group() {
            return None;
        }
        let kind = match field.kind() {
            Kind::Double => FieldKind::Double,
            Kind::Float => FieldKind::Float,
            Kind::Int32 => FieldKind::Int32,
            Kind::Sint32 => FieldKind::Sint32,
            Kind::Sfixed32 => FieldKind::Sfixed32,
            Kind::Int64 => FieldKind::Int64,
            Kind::Sint64 => FieldKind::Sint64,
            Kind::Sfixed64 => FieldKind::Sfixed64,
            Kind::Uint32 => FieldKind::Uint32,
            Kind::Fixed32 => FieldKind::Fixed32,
            Kind::Uint64 => FieldKind::Uint64,
            Kind::Fixed64 => FieldKind::Fixed64,
            Kind::Bool => FieldKind::Bool,
            Kind::String => FieldKind::String,
            Kind::Bytes => FieldKind::Bytes,
            Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => FieldKind::Timestamp,
            Kind::Message(m) if m.full_name() == "google.protobuf.Duration" => FieldKind::Duration,
            Kind::Message(m) => FieldKind::Message(*self.by_name.get(m.full_name())?),
            Kind::Enum(e) => {
                if e.full_name() == "google.protobuf.NullValue" {
                    return None;
                }
                let mut names = HashMap::new();
                for value in e.values() {
                    let name = e.get_value(value.number()).map(|v| v.name().to_string())?;
                    let mut quoted = Vec::new();
                    write_str(&mut quoted, &name);
                    names.insert(value.number(), quoted.into_boxed_slice());
                }
                FieldKind::Enum(EnumPlan { default: e.default_value().number(), names })
            }
        };
        let mut key = Vec::new();
        write_str(&mut key, field.json_name());
        key.push(b':');
        let oneof = match field.containing_oneof() {
            Some(o) => Some(oneofs.iter().position(|n| n == o.name())? as u8),
            None => None,
        };
        Some(FieldPlan {
            number: field.number(),
            key: key.into_boxed_slice(),
            kind,
            repeated: field.cardinality() == Cardinality::Repeated,
            presence: field.supports_presence(),
            oneof,
        })
    }

    /// A message is fast only when every message type it holds is.
    fn settle_fast(&mut self) {
        loop {
            let mut changed = false;
            for i in 0..self.messages.len() {
                let slow_child = self.messages[i]
                    .fields
                    .iter()
                    .any(|f| matches!(f.kind, FieldKind::Message(m) if !self.messages[m].fast));
                if self.messages[i].fast && slow_child {
                    self.messages[i].fast = false;
                    changed = true;
                }
            }
            if !changed {
                return;
            }
        }
    }

    /// Writes message `index` from its wire `bytes` as JSON into `out`,
    /// fields holding their default value left out. Returns the value of the
    /// field numbered `watch` when it was written and is an integer, inside
    /// `Some`; `None` when the message must take the slow path (`out` then
    /// holds garbage).
    pub fn write(&self, index: usize, bytes: &[u8], out: &mut Vec<u8>, watch: u32) -> Option<Option<i64>> {
        let mut watched = None;
        self.write_message(index, bytes, out, 0, watch, &mut watched)?;
        Some(watched)
    }

    fn write_message(
        &self,
        index: usize,
        mut bytes: &[u8],
        out: &mut Vec<u8>,
        depth: usize,
        watch: u32,
        watched: &mut Option<i64>,
    ) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let fields = &self.messages[index].fields;
        out.push(b'{');
        let mut first = true;
        let mut cursor = 0;
        let mut last = 0u32;
        let mut list_open = false;
        let mut oneofs_seen = 0u64;
        while !bytes.is_empty() {
            let key = u32::try_from(decode_varint(&mut bytes).ok()?).ok()?;
            let (number, wire) = (key >> 3, (key & 7) as u8);
            if number == 0 || wire > 5 {
                return None;
            }
            let Some(offset) = fields[cursor..].iter().position(|f| f.number >= number) else {
                skip_unknown(wire, &mut bytes)?;
                continue;
            };
            let field = &fields[cursor + offset];
            if field.number != number {
                // Not declared at or after the last field seen: a declared
                // one below it is out of order; an undeclared one is skipped
                // (wherever it is, as the slow path does).
                if number < last && fields.binary_search_by_key(&number, |f| f.number).is_ok() {
                    return None;
                }
                skip_unknown(wire, &mut bytes)?;
                continue;
            }
            // Declared, at or after the last field seen: again only for a
            // repeated field (a singular one twice is merged or replaced).
            if number == last && !field.repeated {
                return None;
            }
            if number != last && list_open {
                out.push(b']');
                list_open = false;
            }
            if let Some(o) = field.oneof {
                if number != last && oneofs_seen & (1 << o) != 0 {
                    return None;
                }
                oneofs_seen |= 1 << o;
            }
            cursor += offset;
            last = number;
            let watch_here = depth == 0 && number == watch;
            if field.repeated {
                self.write_elements(field, wire, &mut bytes, out, depth, &mut first, &mut list_open)?;
            } else {
                let value = take_value(field_wire(&field.kind), wire, &mut bytes)?;
                let mark = out.len();
                if !first {
                    out.push(b',');
                }
                out.extend_from_slice(&field.key);
                let written = self.write_value(&field.kind, value, out, depth, !field.presence)?;
                if written {
                    first = false;
                    if watch_here {
                        *watched = integer(&field.kind, value);
                    }
                } else {
                    out.truncate(mark);
                }
            }
        }
        if list_open {
            out.push(b']');
        }
        out.push(b'}');
        Some(())
    }

    /// One occurrence of a repeated field: one element, or a packed run.
    #[allow(clippy::too_many_arguments)]
    fn write_elements(
        &self,
        field: &FieldPlan,
        wire: u8,
        bytes: &mut &[u8],
        out: &mut Vec<u8>,
        depth: usize,
        first: &mut bool,
        list_open: &mut bool,
    ) -> Option<()> {
        let element_wire = field_wire(&field.kind);
        let mut open = |out: &mut Vec<u8>| {
            if *list_open {
                out.push(b',');
            } else {
                if !*first {
                    out.push(b',');
                }
                out.extend_from_slice(&field.key);
                out.push(b'[');
                *first = false;
                *list_open = true;
            }
        };
        if wire == WIRE_LEN && element_wire != WIRE_LEN {
            let mut packed = take_len(bytes)?;
            while !packed.is_empty() {
                let value = take_value(element_wire, element_wire, &mut packed)?;
                open(out);
                self.write_value(&field.kind, value, out, depth, false)?;
            }
            return Some(());
        }
        let value = take_value(element_wire, wire, bytes)?;
        open(out);
        self.write_value(&field.kind, value, out, depth, false).map(|_| ())
    }

    /// Writes one value; `Some(false)` when `skip_default` and it is the
    /// default (nothing written that counts).
    fn write_value(
        &self,
        kind: &FieldKind,
        value: Raw,
        out: &mut Vec<u8>,
        depth: usize,
        skip_default: bool,
    ) -> Option<bool> {
        let v = value.0;
        let skip = skip_default
            && match kind {
                FieldKind::Double => f64::from_bits(v) == 0.0,
                FieldKind::Float => f32::from_bits(v as u32) == 0.0,
                FieldKind::Int32 | FieldKind::Sint32 | FieldKind::Sfixed32 => int32(kind, v) == 0,
                FieldKind::Enum(e) => v as i32 == e.default,
                FieldKind::String | FieldKind::Bytes => value.1.is_empty(),
                FieldKind::Message(_) | FieldKind::Timestamp | FieldKind::Duration => false,
                _ => v == 0 || (matches!(kind, FieldKind::Uint32 | FieldKind::Fixed32) && v as u32 == 0),
            };
        if skip {
            return Some(false);
        }
        match kind {
            FieldKind::Double => write_double(out, f64::from_bits(v), false),
            FieldKind::Float => write_double(out, f64::from(f32::from_bits(v as u32)), true),
            FieldKind::Int32 | FieldKind::Sint32 | FieldKind::Sfixed32 => {
                out.extend_from_slice(itoa::Buffer::new().format(int32(kind, v)).as_bytes())
            }
            FieldKind::Uint32 | FieldKind::Fixed32 => {
                out.extend_from_slice(itoa::Buffer::new().format(v as u32).as_bytes())
            }
            FieldKind::Int64 | FieldKind::Sfixed64 => quoted(out, itoa::Buffer::new().format(v as i64)),
            FieldKind::Sint64 => quoted(out, itoa::Buffer::new().format(zigzag64(v))),
            FieldKind::Uint64 | FieldKind::Fixed64 => quoted(out, itoa::Buffer::new().format(v)),
            FieldKind::Bool => out.extend_from_slice(if v != 0 { b"true" } else { b"false" }),
            FieldKind::String => write_str(out, std::str::from_utf8(value.1).ok()?),
            FieldKind::Bytes => write_base64(out, value.1),
            FieldKind::Enum(e) => match e.names.get(&(v as i32)) {
                Some(name) => out.extend_from_slice(name),
                None => out.extend_from_slice(itoa::Buffer::new().format(v as i32).as_bytes()),
            },
            FieldKind::Message(m) => {
                let mut ignored = None;
                self.write_message(*m, value.1, out, depth + 1, 0, &mut ignored)?;
            }
            FieldKind::Timestamp => write_timestamp(out, value.1)?,
            FieldKind::Duration => write_duration(out, value.1)?,
        }
        Some(true)
    }
}

const WIRE_VARINT: u8 = 0;
const WIRE_64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_32: u8 = 5;

/// A value as read off the wire: the number (varint or fixed bits), or the
/// bytes of a length-delimited one.
#[derive(Clone, Copy)]
struct Raw<'a>(u64, &'a [u8]);

fn field_wire(kind: &FieldKind) -> u8 {
    match kind {
        FieldKind::Double | FieldKind::Sfixed64 | FieldKind::Fixed64 => WIRE_64,
        FieldKind::Float | FieldKind::Sfixed32 | FieldKind::Fixed32 => WIRE_32,
        FieldKind::String | FieldKind::Bytes | FieldKind::Message(_) | FieldKind::Timestamp | FieldKind::Duration => {
            WIRE_LEN
        }
        _ => WIRE_VARINT,
    }
}

/// Reads a value of wire type `expected`; `None` when the wire says otherwise.
fn take_value<'a>(expected: u8, wire: u8, bytes: &mut &'a [u8]) -> Option<Raw<'a>> {
    if wire != expected {
        return None;
    }
    match wire {
        WIRE_VARINT => decode_varint(bytes).ok().map(|v| Raw(v, &[])),
        WIRE_64 => take_fixed::<8>(bytes).map(|b| Raw(u64::from_le_bytes(b), &[])),
        WIRE_32 => take_fixed::<4>(bytes).map(|b| Raw(u64::from(u32::from_le_bytes(b)), &[])),
        _ => take_len(bytes).map(|b| Raw(0, b)),
    }
}

fn take_fixed<const N: usize>(bytes: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = bytes.split_first_chunk::<N>()?;
    *bytes = rest;
    Some(*head)
}

fn take_len<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(decode_varint(bytes).ok()?).ok()?;
    if len > bytes.len() {
        return None;
    }
    let (head, rest) = bytes.split_at(len);
    *bytes = rest;
    Some(head)
}

/// Skips a field the message does not declare (groups go the slow way).
fn skip_unknown(wire: u8, bytes: &mut &[u8]) -> Option<()> {
    match wire {
        WIRE_VARINT => decode_varint(bytes).ok().map(|_| ()),
        WIRE_64 => take_fixed::<8>(bytes).map(|_| ()),
        WIRE_32 => take_fixed::<4>(bytes).map(|_| ()),
        WIRE_LEN => take_len(bytes).map(|_| ()),
        _ => None,
    }
}

fn int32(kind: &FieldKind, v: u64) -> i32 {
    match kind {
        FieldKind::Sint32 => {
            let n = v as u32;
            ((n >> 1) as i32) ^ (-((n & 1) as i32))
        }
        _ => v as i32,
    }
}

fn zigzag64(n: u64) -> i64 {
    ((n >> 1) as i64) ^ (-((n & 1) as i64))
}

/// An integer field's value as `prost-reflect` would hand it out.
fn integer(kind: &FieldKind, raw: Raw) -> Option<i64> {
    let v = raw.0;
    match kind {
        FieldKind::Int32 | FieldKind::Sint32 | FieldKind::Sfixed32 => Some(i64::from(int32(kind, v))),
        FieldKind::Uint32 | FieldKind::Fixed32 => Some(i64::from(v as u32)),
        FieldKind::Int64 | FieldKind::Sfixed64 => Some(v as i64),
        FieldKind::Sint64 => Some(zigzag64(v)),
        FieldKind::Uint64 | FieldKind::Fixed64 => i64::try_from(v).ok(),
        _ => None,
    }
}

/// A `Timestamp` as RFC 3339 text, as `prost-reflect` writes it (through
/// `prost_types`, the same decoding and formatting); out of range is refused
/// there, so it goes the slow way to that error.
fn write_timestamp(out: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
    let ts = prost_types::Timestamp::decode(bytes).ok()?;
    if !(-62_135_596_800..=253_402_300_799).contains(&ts.seconds) {
        return None;
    }
    let _ = write!(out, "\"{ts}\"");
    Some(())
}

/// A `Duration` as seconds text (`"1.5s"`), likewise.
fn write_duration(out: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
    let d = prost_types::Duration::decode(bytes).ok()?;
    if d.seconds.unsigned_abs() > 315_576_000_000 || d.nanos.unsigned_abs() > 999_999_999 {
        return None;
    }
    let _ = write!(out, "\"{d}\"");
    Some(())
}

fn quoted(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// Finite floats as serde_json writes them; the others as the proto3 JSON
/// mapping's strings.
fn write_double(out: &mut Vec<u8>, v: f64, single: bool) {
    if v.is_finite() {
        write_float(out, v, single);
    } else if v.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else {
        let _ = write!(out, "\"{}Infinity\"", if v < 0.0 { "-" } else { "" });
    }
}
