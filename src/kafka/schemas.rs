//! Writer schemas by ID, fetched once from the registry and kept for the
//! life of the process (Confluent schema IDs are immutable), compiled for
//! their type (Avro, Protobuf, JSON Schema).
//!
//! A schema's `references` (Avro named types, Protobuf imports registered
//! under other subjects) are fetched recursively by subject and version,
//! dependencies first, and kept by (subject, version) too, since many
//! schemas share the same few references.
//!
//! An unreachable registry is waited out with backoff: a record is never
//! skipped because the registry is down. Only an ID the registry answers
//! "not found" for is a skip; that answer is remembered for a short while so
//! a run of poison records does not hammer the registry.

use super::decode::{ParsedSchema, SchemaSource, SchemaType};
use super::registry_client::{Registered, RegistryClient, RegistryError};
use super::stats::Counters;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NOT_FOUND_TTL: Duration = Duration::from_secs(10);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Deepest chain of references followed (a cycle is refused before this).
const MAX_REFERENCE_DEPTH: usize = 32;

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
    known: HashMap<u32, Arc<ParsedSchema>>,
    /// IDs refused lately: when, and why (`None`: the registry does not know it).
    refused: HashMap<u32, (Instant, Option<String>)>,
    /// Referenced schemas by (subject, version).
    versions: HashMap<(String, i64), Registered>,
}

impl SchemaCache {
    pub fn new(client: RegistryClient) -> SchemaCache {
        SchemaCache { client, known: HashMap::new(), refused: HashMap::new(), versions: HashMap::new() }
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
    ) -> Result<Arc<ParsedSchema>, SchemaError> {
        if let Some(s) = self.known.get(&id) {
            return Ok(s.clone());
        }
        if let Some((_, why)) = self.refused.get(&id).filter(|(at, _)| at.elapsed() < NOT_FOUND_TTL) {
            return Err(match why {
                None => SchemaError::Unknown(id),
                Some(reason) => SchemaError::Unusable { id, reason: reason.clone() },
            });
        }
        let mut backoff = BACKOFF_START;
        loop {
            counters.schema_fetches += 1;
            match self.fetch(id) {
                Ok(source) => {
                    waiting(None, counters);
                    return self.remember(id, &source, counters);
                }
                Err(RegistryError::NotFound { .. }) => {
                    waiting(None, counters);
                    counters.schema_failures += 1;
                    self.refused.insert(id, (Instant::now(), None));
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
                    waiting(None, counters);
                    return Err(self.unusable(id, e.to_string(), counters));
                }
            }
        }
    }

    /// The registry this cache asks.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// `schema`'s references as (name, schema text), each after its own,
    /// fetched by subject and version and kept.
    pub fn references_of(&mut self, schema: &Registered) -> Result<Vec<(String, String)>, RegistryError> {
        let mut references = Vec::new();
        self.add_references(schema, &mut references, &mut Vec::new())?;
        Ok(references)
    }

    /// Notes (for a while) and returns that schema `id` cannot be used.
    fn unusable(&mut self, id: u32, reason: String, counters: &mut Counters) -> SchemaError {
        counters.schema_failures += 1;
        tracing::warn!(schema_id = id, %reason, "schema cannot be used; records written with it are skipped");
        self.refused.insert(id, (Instant::now(), Some(reason.clone())));
        SchemaError::Unusable { id, reason }
    }

    /// The schema `id` with its references, dependencies first. A type we
    /// cannot decode comes back as a refusal, not an outage.
    fn fetch(&mut self, id: u32) -> Result<SchemaSource, RegistryError> {
        let registered = self.client.schema_by_id(id)?;
        let schema_type =
            SchemaType::from_registry(registered.schema_type.as_deref()).ok_or_else(|| RegistryError::Rejected {
                status: 200,
                message: format!("schema type {:?} is not supported", registered.schema_type),
            })?;
        let references = self.references_of(&registered)?;
        Ok(SchemaSource { schema_type, text: registered.schema, references })
    }

    /// Appends `schema`'s references, each after its own, depth first;
    /// `path` is the chain being followed, to refuse cycles.
    fn add_references(
        &mut self,
        schema: &Registered,
        out: &mut Vec<(String, String)>,
        path: &mut Vec<(String, i64)>,
    ) -> Result<(), RegistryError> {
        for reference in &schema.references {
            if out.iter().any(|(name, _)| *name == reference.name) {
                continue;
            }
            let at = (reference.subject.clone(), reference.version);
            if path.contains(&at) || path.len() >= MAX_REFERENCE_DEPTH {
                let message = format!("references of {} version {} loop or nest too deeply", at.0, at.1);
                return Err(RegistryError::Rejected { status: 200, message });
            }
            let referenced = self.version(&at.0, at.1)?;
            path.push(at);
            self.add_references(&referenced, out, path)?;
            path.pop();
            out.push((reference.name.clone(), referenced.schema));
        }
        Ok(())
    }

    fn version(&mut self, subject: &str, version: i64) -> Result<Registered, RegistryError> {
        let at = (subject.to_string(), version);
        if let Some(known) = self.versions.get(&at) {
            return Ok(known.clone());
        }
        let registered = self.client.schema_by_version(subject, version)?;
        self.versions.insert(at, registered.clone());
        Ok(registered)
    }

    fn remember(
        &mut self,
        id: u32,
        source: &SchemaSource,
        counters: &mut Counters,
    ) -> Result<Arc<ParsedSchema>, SchemaError> {
        match ParsedSchema::compile(source) {
            Ok(schema) => {
                let schema = Arc::new(schema);
                self.known.insert(id, schema.clone());
                self.refused.remove(&id);
                Ok(schema)
            }
            Err(e) => Err(self.unusable(id, e.to_string(), counters)),
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
