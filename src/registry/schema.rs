//! What a schema is to the registry: its type (Avro, Protobuf or JSON
//! Schema), whether its text is valid for that type once its references are
//! available, and the identity under which equal schemas share one global ID.
//!
//! Why it looks like this:
//! - Avro is parsed with `apache-avro`, the referenced named types given to
//!   the parser first. Its identity is the parsed form serialized: whitespace,
//!   key order and namespace spelling do not matter, while logical types,
//!   defaults and docs (which Avro's parsing canonical form drops) do, so two
//!   schemas that decode differently never share an ID.
//! - Protobuf is compiled with `protox`; each reference's `name` is the import
//!   path it satisfies, and the well-known `google/protobuf/*.proto` files are
//!   built in. A schema may be `.proto` text or, as Confluent's serializers
//!   send it, a base64-encoded `FileDescriptorProto`. Its identity is the
//!   compiled descriptor of the file, so comments and layout do not matter.
//! - JSON Schema must be a JSON object or boolean; its identity is its
//!   compact JSON with object keys sorted.

use base64::Engine as _;
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use protox::prost::Message as _;
use serde_json::Value;
use std::collections::HashMap;

/// The file name the schema being checked compiles under; imports never use it.
const ROOT_PROTO: &str = "__schema_registry_root__.proto";

/// The three schema types Confluent's registry serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SchemaType {
    #[default]
    #[serde(rename = "AVRO")]
    Avro,
    #[serde(rename = "PROTOBUF")]
    Protobuf,
    #[serde(rename = "JSON")]
    Json,
}

impl SchemaType {
    /// The type named in a request (`schemaType`), as Confluent spells it.
    pub fn parse(name: &str) -> Option<SchemaType> {
        match name.to_ascii_uppercase().as_str() {
            "AVRO" => Some(SchemaType::Avro),
            "PROTOBUF" => Some(SchemaType::Protobuf),
            "JSON" => Some(SchemaType::Json),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Protobuf => "PROTOBUF",
            SchemaType::Json => "JSON",
        }
    }
}

/// A referenced schema made available to the one being checked: the
/// reference's name (an Avro type name, a Protobuf import path, a JSON
/// Schema URL) and the referenced schema's text.
pub struct Dependency<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

/// Why a schema text is not valid for its type.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("{0}")]
    Avro(String),
    #[error("the Protobuf schema does not compile: {0}")]
    Protobuf(String),
    #[error("the JSON Schema is not valid JSON: {0}")]
    JsonSyntax(String),
    #[error("a JSON Schema must be a JSON object or a boolean")]
    JsonShape,
}

/// Checks `text` as a schema of `kind` with `dependencies` (every schema it
/// references, directly or not, dependencies of dependencies first) and
/// returns its identity: equal identities mean the same schema.
pub fn identity(kind: SchemaType, text: &str, dependencies: &[Dependency]) -> Result<String, SchemaError> {
    match kind {
        SchemaType::Avro => avro_identity(text, dependencies),
        SchemaType::Protobuf => protobuf_identity(text, dependencies),
        SchemaType::Json => json_identity(text),
    }
}

fn avro_identity(text: &str, dependencies: &[Dependency]) -> Result<String, SchemaError> {
    let texts: Vec<&str> = dependencies.iter().map(|d| d.text).collect();
    let parsed = if texts.is_empty() {
        apache_avro::Schema::parse_str(text)
    } else {
        apache_avro::Schema::parse_str_with_list(text, texts).map(|(root, _)| root)
    }
    .map_err(|e| SchemaError::Avro(e.to_string()))?;
    Ok(serde_json::to_string(&parsed).unwrap_or_else(|_| parsed.canonical_form()))
}

fn protobuf_identity(text: &str, dependencies: &[Dependency]) -> Result<String, SchemaError> {
    let root = compile_protobuf(text, dependencies)?;
    let file = protox::prost_reflect::prost_types::FileDescriptorProto { name: None, source_code_info: None, ..root };
    Ok(base64::engine::general_purpose::STANDARD.encode(file.encode_to_vec()))
}

/// The base64 `FileDescriptorProto` of a Protobuf schema, as Confluent serves
/// it for `format=serialized` (what its Python deserializer asks for).
pub fn protobuf_serialized(text: &str, dependencies: &[Dependency]) -> Result<String, SchemaError> {
    let root = compile_protobuf(text, dependencies)?;
    let file = protox::prost_reflect::prost_types::FileDescriptorProto { source_code_info: None, ..root };
    Ok(base64::engine::general_purpose::STANDARD.encode(file.encode_to_vec()))
}

/// The `.proto` text of a Protobuf schema given as a base64 descriptor, as
/// Confluent's registry stores it; `None` when `text` is `.proto` text already
/// or the descriptor uses what `proto_text` cannot write faithfully (checked
/// by compiling the text back: the identity must not change).
pub fn protobuf_text(text: &str, dependencies: &[Dependency]) -> Option<String> {
    if File::from_source("x.proto", text).is_ok() {
        return None;
    }
    let root = compile_protobuf(text, dependencies).ok()?;
    let rendered = super::proto_text::render(&root)?;
    let same = protobuf_identity(&rendered, dependencies).ok()? == protobuf_identity(text, dependencies).ok()?;
    if !same {
        tracing::debug!(%rendered, "schema registry keeps a Protobuf descriptor as given: its text form differs");
    }
    same.then_some(rendered)
}

/// Compiles `text` with its dependencies as importable files; returns the
/// compiled descriptor of `text` itself.
fn compile_protobuf(
    text: &str,
    dependencies: &[Dependency],
) -> Result<protox::prost_reflect::prost_types::FileDescriptorProto, SchemaError> {
    let mut files: HashMap<String, String> = HashMap::new();
    for dependency in dependencies {
        files.entry(dependency.name.to_string()).or_insert_with(|| dependency.text.to_string());
    }
    files.insert(ROOT_PROTO.to_string(), text.to_string());
    let mut resolver = ChainFileResolver::new();
    resolver.add(ProtoFiles(files));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.open_file(ROOT_PROTO).map_err(|e| SchemaError::Protobuf(protox_message(&e)))?;
    let pool = compiler.descriptor_pool();
    let root = pool
        .get_file_by_name(ROOT_PROTO)
        .ok_or_else(|| SchemaError::Protobuf("the compiled file is missing".into()))?;
    Ok(root.file_descriptor_proto().clone())
}

/// protox's message with the internal root file name taken out.
fn protox_message(e: &protox::Error) -> String {
    e.to_string().replace(ROOT_PROTO, "the schema")
}

/// Schema texts by import path: `.proto` text, or a base64 descriptor.
struct ProtoFiles(HashMap<String, String>);

impl FileResolver for ProtoFiles {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        let text = self.0.get(name).ok_or_else(|| protox::Error::file_not_found(name))?;
        match File::from_source(name, text) {
            Ok(file) => Ok(file),
            Err(parse_error) => match descriptor_file(name, text) {
                Some(file) => Ok(file),
                None => Err(parse_error),
            },
        }
    }
}

/// A base64-encoded `FileDescriptorProto`, renamed to `name` (the import path
/// it is known by), as Confluent's clients register Protobuf schemas.
fn descriptor_file(name: &str, text: &str) -> Option<File> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()?;
    let mut descriptor = protox::prost_reflect::prost_types::FileDescriptorProto::decode(bytes.as_slice()).ok()?;
    descriptor.name = Some(name.to_string());
    Some(File::from_file_descriptor_proto(descriptor))
}

/// Whether a Protobuf schema text is a base64 descriptor rather than `.proto` text.
pub fn is_serialized_protobuf(text: &str) -> bool {
    File::from_source("x.proto", text).is_err() && descriptor_file("x.proto", text).is_some()
}

fn json_identity(text: &str) -> Result<String, SchemaError> {
    let value: Value = serde_json::from_str(text).map_err(|e| SchemaError::JsonSyntax(e.to_string()))?;
    if !matches!(value, Value::Object(_) | Value::Bool(_)) {
        return Err(SchemaError::JsonShape);
    }
    Ok(sorted(&value).to_string())
}

/// `value` with every object's keys in sorted order.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&map[k]))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = r#"{"type":"record","name":"T","namespace":"t","fields":[{"name":"a","type":"string"}]}"#;

    #[test]
    fn avro_identity_ignores_spelling_but_keeps_what_changes_decoding() {
        let id = |text: &str| identity(SchemaType::Avro, text, &[]);
        let spaced =
            r#"{ "namespace": "t", "name": "T", "type": "record", "fields": [ {"type": "string", "name": "a"} ] }"#;
        assert_eq!(id(T).unwrap(), id(spaced).unwrap());
        let dotted = r#"{"type":"record","name":"t.T","fields":[{"name":"a","type":"string"}]}"#;
        assert_eq!(id(T).unwrap(), id(dotted).unwrap());
        let long = r#"{"type":"record","name":"T","fields":[{"name":"a","type":"long"}]}"#;
        let millis = r#"{"type":"record","name":"T",
                         "fields":[{"name":"a","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#;
        assert_ne!(id(long).unwrap(), id(millis).unwrap());
        assert!(id("{nope").is_err());
    }

    #[test]
    fn avro_named_types_come_from_dependencies() {
        let outer = r#"{"type":"record","name":"O","namespace":"t","fields":[{"name":"inner","type":"t.T"}]}"#;
        assert!(identity(SchemaType::Avro, outer, &[]).is_err(), "t.T is unknown without the reference");
        let with = [Dependency { name: "t.T", text: T }];
        assert!(identity(SchemaType::Avro, outer, &with).is_ok());
    }

    #[test]
    fn protobuf_imports_resolve_from_dependencies_in_text_or_descriptor_form() {
        let money = "syntax = \"proto3\";\npackage acme;\nmessage Money { int64 cents = 1; }\n";
        let bill = "syntax = \"proto3\";\npackage acme;\nimport \"acme/money.proto\";\n\
                    import \"google/protobuf/timestamp.proto\";\n\
                    message Bill { acme.Money total = 1; google.protobuf.Timestamp at = 2; }\n";
        let missing = identity(SchemaType::Protobuf, bill, &[]).unwrap_err().to_string();
        assert!(missing.contains("acme/money.proto"), "{missing}");
        let text = [Dependency { name: "acme/money.proto", text: money }];
        let by_text = identity(SchemaType::Protobuf, bill, &text).unwrap();
        let descriptor = protobuf_serialized(money, &[]).unwrap();
        assert!(is_serialized_protobuf(&descriptor) && !is_serialized_protobuf(money));
        let encoded = [Dependency { name: "acme/money.proto", text: &descriptor }];
        assert_eq!(identity(SchemaType::Protobuf, bill, &encoded).unwrap(), by_text);
        let relaid = bill.replace("; ", ";\n  // a comment\n  ");
        assert_eq!(identity(SchemaType::Protobuf, &relaid, &text).unwrap(), by_text);
        let own = protobuf_serialized(bill, &text).unwrap();
        assert_eq!(identity(SchemaType::Protobuf, &own, &text).unwrap(), by_text, "descriptor form, same id");
        assert!(identity(SchemaType::Protobuf, "message {", &[]).is_err());
    }

    #[test]
    fn protobuf_descriptors_become_proto_text_with_the_same_identity() {
        let money = "syntax = \"proto3\";\npackage acme;\nmessage Money { int64 cents = 1; }\n";
        let deps = [Dependency { name: "acme/money.proto", text: money }];
        let proto3 = r#"syntax = "proto3";
            package acme.billing;
            import "acme/money.proto";
            import "google/protobuf/timestamp.proto";
            option java_package = "com.acme.billing";
            option go_package = "acme/billing";
            message Bill {
              string account_id = 1;
              acme.Money total = 2;
              map<string, Line> lines_by_id = 3;
              oneof payer { string person = 4; int64 company_id = 5; }
              optional string note = 6;
              repeated int32 codes = 7 [packed = false];
              google.protobuf.Timestamp issued_at = 8;
              Status status = 9;
              string renamed = 10 [json_name = "other"];
              reserved 20, 30 to 40, 1000 to max;
              reserved "old";
              message Line { bytes data = 1; Kind kind = 2; enum Kind { KIND_UNKNOWN = 0; KIND_CALL = 1; } }
            }
            enum Status { option allow_alias = true; OPEN = 0; NEW = 0; CLOSED = 2; reserved 5 to 9; }
            service Billing { rpc Pay (stream Bill) returns (acme.Money); }
            "#;
        let proto2 = r#"syntax = "proto2";
            message Legacy {
              required string id = 1;
              optional int32 count = 2 [default = 7];
              optional string label = 3 [default = "a \"b\""];
              repeated double values = 4;
              extensions 100 to 199;
            }
            "#;
        for (source, deps) in [(proto3, &deps[..]), (proto2, &[][..])] {
            let descriptor = protobuf_serialized(source, deps).unwrap();
            let text = protobuf_text(&descriptor, deps).expect("a faithful text form");
            assert_eq!(
                identity(SchemaType::Protobuf, &text, deps).unwrap(),
                identity(SchemaType::Protobuf, source, deps).unwrap(),
                "{text}"
            );
            assert!(protobuf_text(source, deps).is_none(), "text stays as written");
        }
        let extended = format!("{proto2}extend Legacy {{ optional int32 more = 100; }}\n");
        let descriptor = protobuf_serialized(&extended, &[]).unwrap();
        assert!(protobuf_text(&descriptor, &[]).is_none(), "extend blocks are not written: the descriptor is kept");
    }

    #[test]
    fn json_schema_is_json_object_or_boolean_keyed_by_sorted_compact_form() {
        let a = identity(SchemaType::Json, r#"{"type": "object", "title": "X"}"#, &[]).unwrap();
        let b = identity(SchemaType::Json, r#"{"title":"X","type":"object"}"#, &[]).unwrap();
        assert_eq!(a, b);
        assert!(identity(SchemaType::Json, "true", &[]).is_ok());
        assert!(matches!(identity(SchemaType::Json, "[1]", &[]), Err(SchemaError::JsonShape)));
        assert!(matches!(identity(SchemaType::Json, "{", &[]), Err(SchemaError::JsonSyntax(_))));
    }

    #[test]
    fn schema_types_parse_as_confluent_spells_them() {
        assert_eq!(SchemaType::parse("PROTOBUF"), Some(SchemaType::Protobuf));
        assert_eq!(SchemaType::parse("json"), Some(SchemaType::Json));
        assert_eq!(SchemaType::parse("XML"), None);
        assert_eq!(SchemaType::Avro.as_str(), "AVRO");
    }
}
