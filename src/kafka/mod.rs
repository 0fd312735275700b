//! Kafka ingestion: the consumer thread (`consumer`), finding and assigning
//! partitions for it and for the Redis feeds (`partitions`),
//! Confluent framing and Avro decoding (`decode`), one
//! message to one decoded record (`record`), the Schema Registry client
//! and its ID cache (`registry_client`, `schemas`), routing to the owning
//! shards (`dispatch`), catch-up tracking (`catch_up`), metrics (`stats`),
//! partitions stuck on a batch the client cannot read (`stuck`), and each
//! Redis store's own feed (`redis_feed`); writes through Kafka
//! (`produce`, with the JSON-to-Avro encoder in `encode`).

pub mod catch_up;
pub mod consumer;
pub mod decode;
pub mod dispatch;
pub mod encode;
pub mod partitions;
pub mod produce;
pub mod record;
pub mod redis_feed;
pub mod registry_client;
pub mod schemas;
pub mod stats;
pub mod stuck;
