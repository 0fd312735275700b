//! Kafka ingestion (SPEC section 5): the consumer thread (`consumer`),
//! Confluent framing and Avro decoding (`decode`), the Schema Registry client
//! and its ID cache (`registry_client`, `schemas`), routing to the owning
//! shards (`dispatch`), catch-up tracking (`catch_up`) and metrics (`stats`).

pub mod catch_up;
pub mod consumer;
pub mod decode;
pub mod dispatch;
pub mod registry_client;
pub mod schemas;
pub mod stats;
