//! Writer schemas by ID, fetched once from the registry and kept for the
//! life of the process (Confluent schema IDs are immutable).
//!
//! An unreachable registry is waited out with backoff: a record is never
//! skipped because the registry is down. Only an ID the registry answers
//! "not found" for is a skip; that answer is remembered for a short while so
//! a run of poison records does not hammer the registry.

use super::decode::WriterSchema;
use super::registry_client::{RegistryClient, RegistryError};
use super::stats::Counters;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NOT_FOUND_TTL: Duration = Duration::from_secs(10);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why a schema cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema {0} is not known to the registry")]
    Unknown(u32),
    #[error("schema {id} is not usable: {reason}")]
    Unusable { id: u32, reason: String },
    #[error("stopped while waiting for the registry")]
    Stopped,
}

pub struct SchemaCache {
    client: RegistryClient,
    known: HashMap<u32, Arc<WriterSchema>>,
    not_found: HashMap<u32, Instant>,
}

impl SchemaCache {
    pub fn new(client: RegistryClient) -> SchemaCache {
        SchemaCache { client, known: HashMap::new(), not_found: HashMap::new() }
    }

    /// The writer schema for `id`, retrying an unreachable registry until it
    /// answers or `stop()` says to give up. `waiting` is told each failure,
    /// and the end of the wait, with the counts so far: a wait can last as
    /// long as the outage, and the counts should be published meanwhile.
    pub fn get(
        &mut self,
        id: u32,
        counters: &mut Counters,
        stop: &dyn Fn() -> bool,
        waiting: &mut dyn FnMut(Option<&RegistryError>, &mut Counters),
    ) -> Result<Arc<WriterSchema>, SchemaError> {
        if let Some(s) = self.known.get(&id) {
            return Ok(s.clone());
        }
        if self.not_found.get(&id).is_some_and(|t| t.elapsed() < NOT_FOUND_TTL) {
            return Err(SchemaError::Unknown(id));
        }
        let mut backoff = BACKOFF_START;
        loop {
            counters.schema_fetches += 1;
            match self.client.schema_text(id) {
                Ok(text) => {
                    waiting(None, counters);
                    return self.remember(id, &text, counters);
                }
                Err(RegistryError::NotFound { .. }) => {
                    waiting(None, counters);
                    counters.schema_failures += 1;
                    self.not_found.insert(id, Instant::now());
                    return Err(SchemaError::Unknown(id));
                }
                Err(e) if e.is_retryable() => {
                    counters.schema_failures += 1;
                    waiting(Some(&e), counters);
                    tracing::warn!(schema_id = id, error = %e, "schema registry unreachable; retrying in {backoff:?}");
                    if sleep_unless_stopped(backoff, stop) {
                        return Err(SchemaError::Stopped);
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(e) => {
                    counters.schema_failures += 1;
                    return Err(SchemaError::Unusable { id, reason: e.to_string() });
                }
            }
        }
    }

    fn remember(&mut self, id: u32, text: &str, counters: &mut Counters) -> Result<Arc<WriterSchema>, SchemaError> {
        match WriterSchema::parse(text) {
            Ok(schema) => {
                let schema = Arc::new(schema);
                self.known.insert(id, schema.clone());
                self.not_found.remove(&id);
                Ok(schema)
            }
            Err(e) => {
                counters.schema_failures += 1;
                Err(SchemaError::Unusable { id, reason: e.to_string() })
            }
        }
    }
}

/// Sleeps `total` in short steps; true when `stop()` became true.
pub fn sleep_unless_stopped(total: Duration, stop: &dyn Fn() -> bool) -> bool {
    let until = Instant::now() + total;
    while Instant::now() < until {
        if stop() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())));
    }
    stop()
}
