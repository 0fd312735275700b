//! `.proto` text from a compiled `FileDescriptorProto`.
//!
//! Confluent's serializers register Protobuf schemas as base64 descriptors,
//! while Confluent's registry stores and serves them as `.proto` text (and
//! readers such as our own decoder compile that text). This writes the text
//! for the common shapes: proto2 and proto3 syntax, imports (public and
//! weak), the usual file options, messages with nested types, maps, oneofs,
//! proto3 `optional`, proto2 defaults, reserved and extension ranges, enums,
//! services. It answers `None` for what it does not write (groups, `extend`
//! blocks, editions); the caller also checks that the text compiles back to
//! the same descriptor and keeps the descriptor form when it does not.

use protox::prost_reflect::prost_types::field_descriptor_proto::{Label, Type};
use protox::prost_reflect::prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto, ServiceDescriptorProto,
};
use std::fmt::Write as _;

/// Field numbers end below this; a range ending here is written `max`.
const FIELD_NUMBER_END: i32 = 536_870_912;

/// The `.proto` text of `file`, or `None` when it uses what is not written.
pub fn render(file: &FileDescriptorProto) -> Option<String> {
    if !file.extension.is_empty() {
        return None;
    }
    let proto3 = match file.syntax() {
        "proto3" => true,
        "" | "proto2" => false,
        _ => return None,
    };
    let mut out = String::new();
    let _ = writeln!(out, "syntax = \"{}\";", if proto3 { "proto3" } else { "proto2" });
    if let Some(package) = &file.package {
        let _ = writeln!(out, "package {package};");
    }
    for (i, import) in file.dependency.iter().enumerate() {
        let index = i as i32;
        let kind = if file.public_dependency.contains(&index) {
            "public "
        } else if file.weak_dependency.contains(&index) {
            "weak "
        } else {
            ""
        };
        let _ = writeln!(out, "import {kind}{};", quoted(import));
    }
    file_options(file, &mut out);
    for message in &file.message_type {
        out.push('\n');
        write_message(message, proto3, 0, &mut out)?;
    }
    for enumeration in &file.enum_type {
        out.push('\n');
        write_enum(enumeration, 0, &mut out);
    }
    for service in &file.service {
        out.push('\n');
        write_service(service, &mut out);
    }
    Some(out)
}

fn file_options(file: &FileDescriptorProto, out: &mut String) {
    let Some(options) = &file.options else {
        return;
    };
    let strings = [
        ("java_package", &options.java_package),
        ("java_outer_classname", &options.java_outer_classname),
        ("go_package", &options.go_package),
        ("csharp_namespace", &options.csharp_namespace),
    ];
    for (name, value) in strings {
        if let Some(value) = value {
            let _ = writeln!(out, "option {name} = {};", quoted(value));
        }
    }
    if let Some(value) = options.java_multiple_files {
        let _ = writeln!(out, "option java_multiple_files = {value};");
    }
}

fn indent(depth: usize) -> String {
    "  ".repeat(depth)
}

fn write_message(message: &DescriptorProto, proto3: bool, depth: usize, out: &mut String) -> Option<()> {
    if !message.extension.is_empty() {
        return None;
    }
    let pad = indent(depth);
    let _ = writeln!(out, "{pad}message {} {{", message.name());
    let maps: Vec<&DescriptorProto> =
        message.nested_type.iter().filter(|n| n.options.as_ref().and_then(|o| o.map_entry) == Some(true)).collect();
    let synthetic: Vec<i32> =
        message.field.iter().filter(|f| f.proto3_optional()).filter_map(|f| f.oneof_index).collect();
    let mut oneofs_written = Vec::new();
    for field in &message.field {
        match field.oneof_index.filter(|i| !synthetic.contains(i)) {
            Some(index) if oneofs_written.contains(&index) => {}
            Some(index) => {
                oneofs_written.push(index);
                let name = message.oneof_decl.get(index as usize)?.name();
                let _ = writeln!(out, "{pad}  oneof {name} {{");
                for member in message.field.iter().filter(|f| f.oneof_index == Some(index)) {
                    write_field(member, None, &maps, depth + 2, out)?;
                }
                let _ = writeln!(out, "{pad}  }}");
            }
            None => write_field(field, Some(proto3), &maps, depth + 1, out)?,
        }
    }
    for nested in message.nested_type.iter().filter(|n| !maps.iter().any(|m| std::ptr::eq(*m, *n))) {
        write_message(nested, proto3, depth + 1, out)?;
    }
    for enumeration in &message.enum_type {
        write_enum(enumeration, depth + 1, out);
    }
    for range in &message.extension_range {
        let _ = writeln!(out, "{pad}  extensions {};", range_text(range.start(), range.end() - 1));
    }
    let ranges: Vec<String> = message.reserved_range.iter().map(|r| range_text(r.start(), r.end() - 1)).collect();
    reserved(&ranges, &message.reserved_name, depth + 1, out);
    let _ = writeln!(out, "{pad}}}");
    Some(())
}

/// One field. `proto3`: `None` inside a oneof (no label), else the syntax.
fn write_field(
    field: &FieldDescriptorProto,
    proto3: Option<bool>,
    maps: &[&DescriptorProto],
    depth: usize,
    out: &mut String,
) -> Option<()> {
    if field.r#type() == Type::Group {
        return None;
    }
    let map = (field.label() == Label::Repeated)
        .then(|| maps.iter().find(|m| field.type_name().rsplit('.').next() == Some(m.name())))
        .flatten();
    let kind = match map {
        Some(entry) => {
            let key = entry.field.iter().find(|f| f.number() == 1)?;
            let value = entry.field.iter().find(|f| f.number() == 2)?;
            format!("map<{}, {}>", type_text(key), type_text(value))
        }
        None => {
            let label = match (proto3, field.label()) {
                (None, _) => "",
                (_, Label::Repeated) => "repeated ",
                (_, Label::Required) => "required ",
                (Some(true), Label::Optional) if field.proto3_optional() => "optional ",
                (Some(true), Label::Optional) => "",
                (Some(false), Label::Optional) => "optional ",
            };
            format!("{label}{}", type_text(field))
        }
    };
    let options = field_options(field);
    let _ = writeln!(out, "{}{kind} {} = {}{options};", indent(depth), field.name(), field.number());
    Some(())
}

fn field_options(field: &FieldDescriptorProto) -> String {
    let mut options = Vec::new();
    if let Some(default) = &field.default_value {
        let value = match field.r#type() {
            Type::String => quoted(default),
            // Descriptors keep bytes defaults C-escaped already.
            Type::Bytes => format!("\"{default}\""),
            _ => default.clone(),
        };
        options.push(format!("default = {value}"));
    }
    if let Some(json_name) = field.json_name.as_ref().filter(|j| **j != default_json_name(field.name())) {
        options.push(format!("json_name = {}", quoted(json_name)));
    }
    if let Some(o) = &field.options {
        if let Some(packed) = o.packed {
            options.push(format!("packed = {packed}"));
        }
        if let Some(deprecated) = o.deprecated {
            options.push(format!("deprecated = {deprecated}"));
        }
    }
    if options.is_empty() {
        String::new()
    } else {
        format!(" [{}]", options.join(", "))
    }
}

/// protoc's JSON name: underscores dropped, the letter after each upper-cased.
pub fn default_json_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn type_text(field: &FieldDescriptorProto) -> String {
    let name = match field.r#type() {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
        // Fully qualified, leading dot included: valid `.proto` syntax.
        Type::Message | Type::Enum | Type::Group => return field.type_name().to_string(),
    };
    name.to_string()
}

fn write_enum(enumeration: &EnumDescriptorProto, depth: usize, out: &mut String) {
    let pad = indent(depth);
    let _ = writeln!(out, "{pad}enum {} {{", enumeration.name());
    if enumeration.options.as_ref().and_then(|o| o.allow_alias) == Some(true) {
        let _ = writeln!(out, "{pad}  option allow_alias = true;");
    }
    for value in &enumeration.value {
        let _ = writeln!(out, "{pad}  {} = {};", value.name(), value.number());
    }
    let ranges: Vec<String> = enumeration.reserved_range.iter().map(|r| range_text(r.start(), r.end())).collect();
    reserved(&ranges, &enumeration.reserved_name, depth + 1, out);
    let _ = writeln!(out, "{pad}}}");
}

fn write_service(service: &ServiceDescriptorProto, out: &mut String) {
    let _ = writeln!(out, "service {} {{", service.name());
    for method in &service.method {
        let stream = |on: bool| if on { "stream " } else { "" };
        let _ = writeln!(
            out,
            "  rpc {} ({}{}) returns ({}{});",
            method.name(),
            stream(method.client_streaming()),
            method.input_type(),
            stream(method.server_streaming()),
            method.output_type()
        );
    }
    out.push_str("}\n");
}

/// `reserved` lines for number ranges (inclusive) and names.
fn reserved(ranges: &[String], names: &[String], depth: usize, out: &mut String) {
    if !ranges.is_empty() {
        let _ = writeln!(out, "{}reserved {};", indent(depth), ranges.join(", "));
    }
    if !names.is_empty() {
        let names: Vec<String> = names.iter().map(|n| quoted(n)).collect();
        let _ = writeln!(out, "{}reserved {};", indent(depth), names.join(", "));
    }
}

/// An inclusive number range as `.proto` writes it.
fn range_text(start: i32, last: i32) -> String {
    match last {
        _ if last == start => start.to_string(),
        _ if last == FIELD_NUMBER_END - 1 || last == i32::MAX => format!("{start} to max"),
        _ => format!("{start} to {last}"),
    }
}

fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_follow_protoc() {
        assert_eq!(default_json_name("account_id"), "accountId");
        assert_eq!(default_json_name("a__b_c"), "aBC");
        assert_eq!(default_json_name("plain"), "plain");
    }

    #[test]
    fn ranges_are_inclusive_and_max_is_named() {
        assert_eq!(range_text(5, 5), "5");
        assert_eq!(range_text(9, 11), "9 to 11");
        assert_eq!(range_text(1000, FIELD_NUMBER_END - 1), "1000 to max");
    }
}
