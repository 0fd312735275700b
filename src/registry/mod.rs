//! The small Confluent-API-compatible Schema Registry that Push Cache ships
//! for local runs and tests (`push-cache schema-registry --listen ADDR
//! [--data FILE]`). Production uses a real Confluent registry; the client in
//! `kafka::registry_client` speaks only Confluent's documented API, so it
//! works against both.
//!
//! - `schema`: the three schema types (Avro, Protobuf, JSON Schema), their
//!   validity with their references, and when two schemas are the same.
//! - `proto_text`: `.proto` text from a descriptor, for Protobuf schemas
//!   registered in the base64 descriptor form Confluent's serializers send.
//! - `state`: what the registry knows (IDs, subjects, versions, references),
//!   its rules, and the `--data` file.
//! - `api`: Confluent's REST routes, requests to state to responses.
//! - `serve`: the process: listening, HTTP through `http::connection` on one
//!   glommio executor thread, stopping.

pub mod api;
mod proto_text;
pub mod schema;
pub mod serve;
pub mod state;

/// The name other modules and tests know the serving functions by.
pub use self::serve as server;
