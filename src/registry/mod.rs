//! The small Confluent-API-compatible Schema Registry that Push Cache ships
//! for local stacks and tests (`push-cache schema-registry`). Production
//! uses a real Confluent registry; the client in `kafka::registry_client`
//! speaks only Confluent's documented API, so it works against both.

pub mod server;
