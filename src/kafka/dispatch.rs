//! Routes decoded records to their owners: the record type picks the stores
//! (`schemas` in the config), the key's hash picks the shard, and changes go
//! to each shard over its bounded channel in batches, in the order the
//! consumer saw them. A full channel blocks the consumer; nothing is dropped.

use crate::config::StoreConfig;
use crate::runtime::shard::{owner_of, Change};
use crate::runtime::IngestBatch;
use crate::store::entry::{Entry, TooLong};
use crate::store::redis::{encode_value, WriteBatch, WRITE_BATCH};
use crate::store::value::StoredValue;
use std::collections::HashMap;

/// A shard's batch is sent once it holds this many changes.
const BATCH: usize = 512;

/// The shards or the Redis writer stopped (the server is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the shards stopped accepting records (the server is shutting down)")]
pub struct ShardsGone;

pub struct Dispatcher {
    stores: Vec<StoreConfig>,
    shards: Vec<flume::Sender<IngestBatch>>,
    pending: Vec<IngestBatch>,
    /// Indexed like `cache.stores`: the Redis writer and its pending batch.
    redis: Vec<Option<(flume::Sender<WriteBatch>, WriteBatch)>>,
    /// Record type -> indexes of the in-memory stores that accept it.
    targets: HashMap<String, Vec<usize>>,
    /// Topic -> record types seen on it: a tombstone has no schema, so it
    /// removes the key from the stores its topic has fed.
    topic_types: HashMap<String, Vec<String>>,
}

impl Dispatcher {
    /// `redis_writers` is indexed like `stores` (empty when there is no Redis store).
    pub fn new(stores: Vec<StoreConfig>, shards: Vec<flume::Sender<IngestBatch>>, redis_writers: Vec<Option<flume::Sender<WriteBatch>>>) -> Dispatcher {
        let pending = shards.iter().map(|_| Vec::with_capacity(BATCH)).collect();
        let mut redis: Vec<_> = redis_writers.into_iter().map(|w| w.map(|tx| (tx, Vec::new()))).collect();
        redis.resize_with(stores.len(), || None);
        Dispatcher { stores, shards, pending, redis, targets: HashMap::new(), topic_types: HashMap::new() }
    }

    /// Queues `value` for `key` in every store that accepts `record_type`.
    /// Returns how many stores take it.
    pub fn upsert(&mut self, topic: &str, record_type: &str, key: &str, value: &StoredValue) -> Result<usize, Upsert> {
        self.note_type(topic, record_type);
        let stores = self.targets_for(record_type).to_vec();
        if stores.is_empty() {
            return Ok(0);
        }
        let entry = Entry::new(key, value).map_err(Upsert::TooLong)?;
        let owner = owner_of(key.as_bytes(), self.shards.len());
        for store in &stores {
            if self.redis[*store].is_some() {
                self.push_redis(*store, key, Some(encode_value(&value.etag, &value.body))).map_err(Upsert::Gone)?;
            } else {
                self.push(owner, *store, Change::Upsert(entry.clone())).map_err(Upsert::Gone)?;
            }
        }
        Ok(stores.len())
    }

    /// Queues the removal of `key` from every store `topic` has fed.
    pub fn tombstone(&mut self, topic: &str, key: &str) -> Result<usize, ShardsGone> {
        let types = self.topic_types.get(topic).cloned().unwrap_or_default();
        let mut stores: Vec<usize> = types.iter().flat_map(|t| self.targets_for(t).to_vec()).collect();
        stores.sort_unstable();
        stores.dedup();
        let owner = owner_of(key.as_bytes(), self.shards.len());
        for store in &stores {
            if self.redis[*store].is_some() {
                self.push_redis(*store, key, None)?;
            } else {
                self.push(owner, *store, Change::Delete(key.as_bytes().into()))?;
            }
        }
        Ok(stores.len())
    }

    /// Sends every non-empty batch, waiting while a shard's channel is full.
    pub fn flush(&mut self) -> Result<(), ShardsGone> {
        for shard in 0..self.shards.len() {
            self.send(shard)?;
        }
        for store in 0..self.redis.len() {
            self.send_redis(store)?;
        }
        Ok(())
    }

    fn push_redis(&mut self, store: usize, key: &str, value: Option<Vec<u8>>) -> Result<(), ShardsGone> {
        let Some((_, pending)) = &mut self.redis[store] else { return Ok(()) };
        pending.push((key.as_bytes().to_vec(), value));
        if pending.len() >= WRITE_BATCH {
            self.send_redis(store)?;
        }
        Ok(())
    }

    /// Blocks while the Redis writer is behind (Redis slow or down).
    fn send_redis(&mut self, store: usize) -> Result<(), ShardsGone> {
        let Some((tx, pending)) = &mut self.redis[store] else { return Ok(()) };
        if pending.is_empty() {
            return Ok(());
        }
        tx.send(std::mem::take(pending)).map_err(|_| ShardsGone)
    }

    fn push(&mut self, shard: usize, store: usize, change: Change) -> Result<(), ShardsGone> {
        self.pending[shard].push((store, change));
        if self.pending[shard].len() >= BATCH {
            self.send(shard)?;
        }
        Ok(())
    }

    fn send(&mut self, shard: usize) -> Result<(), ShardsGone> {
        if self.pending[shard].is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.pending[shard], Vec::with_capacity(BATCH));
        self.shards[shard].send(batch).map_err(|_| ShardsGone)
    }

    fn note_type(&mut self, topic: &str, record_type: &str) {
        let types = match self.topic_types.get_mut(topic) {
            Some(t) => t,
            None => self.topic_types.entry(topic.to_string()).or_default(),
        };
        if !types.iter().any(|t| t == record_type) {
            types.push(record_type.to_string());
        }
    }

    fn targets_for(&mut self, record_type: &str) -> &[usize] {
        if !self.targets.contains_key(record_type) {
            let stores = self
                .stores
                .iter()
                .enumerate()
                .filter(|(i, s)| (matches!(s, StoreConfig::InMemory { .. }) || self.redis[*i].is_some()) && s.accepts(record_type))
                .map(|(i, _)| i)
                .collect();
            self.targets.insert(record_type.to_string(), stores);
        }
        &self.targets[record_type]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Upsert {
    #[error(transparent)]
    TooLong(TooLong),
    #[error(transparent)]
    Gone(ShardsGone),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str, schemas: &[&str]) -> StoreConfig {
        StoreConfig::InMemory { name: name.into(), schemas: schemas.iter().map(|s| s.to_string()).collect() }
    }

    fn drain(rx: &flume::Receiver<IngestBatch>) -> Vec<(usize, String)> {
        rx.try_iter()
            .flatten()
            .map(|(s, c)| match c {
                Change::Upsert(e) => (s, format!("put {}", e.key_str())),
                Change::Delete(k) => (s, format!("del {}", String::from_utf8_lossy(&k))),
            })
            .collect()
    }

    #[test]
    fn records_reach_accepting_stores_on_the_owner_in_order() {
        let (tx0, rx0) = flume::bounded(16);
        let (tx1, rx1) = flume::bounded(16);
        let stores = vec![store("customers", &["customer"]), store("all", &[]), store("bills", &["bill"])];
        let mut d = Dispatcher::new(stores, vec![tx0, tx1], Vec::new());
        let v = StoredValue::new(b"{}".to_vec(), None);
        assert_eq!(d.upsert("c", "customer", "k1", &v).unwrap(), 2);
        assert_eq!(d.upsert("b", "bill", "k1", &v).unwrap(), 2);
        assert_eq!(d.tombstone("c", "k1").unwrap(), 2, "customers and all, not bills");
        assert_eq!(d.tombstone("never-seen", "k1").unwrap(), 0);
        d.flush().unwrap();
        let owner = owner_of(b"k1", 2);
        let (mine, other) = if owner == 0 { (drain(&rx0), drain(&rx1)) } else { (drain(&rx1), drain(&rx0)) };
        assert!(other.is_empty());
        let expected: Vec<(usize, String)> = vec![
            (0, "put k1".into()),
            (1, "put k1".into()),
            (1, "put k1".into()),
            (2, "put k1".into()),
            (0, "del k1".into()),
            (1, "del k1".into()),
        ];
        assert_eq!(mine, expected);
    }

    #[test]
    fn a_closed_shard_is_reported() {
        let (tx, rx) = flume::bounded(1);
        drop(rx);
        let mut d = Dispatcher::new(vec![store("s", &[])], vec![tx], Vec::new());
        d.upsert("t", "x", "k", &StoredValue::new(b"{}".to_vec(), None)).unwrap();
        assert!(d.flush().is_err());
    }
}
