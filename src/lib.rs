//! Push Cache: a thread-per-core, shared-nothing cache server for compacted
//! Kafka topics of Avro records. See `README.md` for the tour; each module's
//! doc says what it owns.

pub mod api;
pub mod config;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod placement;
pub mod positions;
pub mod readiness;
pub mod registry;
pub mod runtime;
pub mod service;
pub mod store;
