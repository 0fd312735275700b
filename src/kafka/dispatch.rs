//! Routes decoded records to their owners: the record type picks the stores
//! (`schemas` in the config), the key's hash picks the shard, and changes go
//! to each shard over its bounded channel in batches, in the order the
//! consumer saw them. With a replicated index every change goes to every
//! shard, in one batch sent through the fan-out. A full channel blocks the
//! consumer; nothing is dropped. A flush may carry a mark (the partitions'
//! positions it covers): every shard then gets a batch, empty or not, so
//! every shard can acknowledge it.

use crate::config::StoreConfig;
pub use crate::placement::ShardsGone;
use crate::placement::{owner_of, Change, ShardQueues};
use crate::placement::{Ack, IngestBatch};
use crate::positions::FlushMark;
use crate::store::entry::{Entry, TooLong};
use crate::store::projection::project;
use crate::store::value::StoredValue;
use std::collections::HashMap;
use std::sync::Arc;

/// A shard's batch is sent once it holds this many changes.
const BATCH: usize = 512;

pub struct Dispatcher {
    stores: Vec<StoreConfig>,
    shards: ShardQueues,
    /// One batch per shard; one for all of them with a replicated index.
    pending: Vec<IngestBatch>,
    /// Record type -> indexes of the in-memory stores that accept it.
    targets: HashMap<String, Vec<usize>>,
    /// Topic -> record types seen on it: a tombstone has no schema, so it
    /// removes the key from the stores its topic has fed.
    topic_types: HashMap<String, Vec<String>>,
    /// Shared copy of `topic_types`, kept with snapshots: after a warm
    /// restart a tombstone must reach the stores its topic fed before it.
    known_types: Option<KnownTypes>,
}

/// Topic -> record types seen on it, shared with the snapshot writer.
pub type KnownTypes = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, Vec<String>>>>;

impl Dispatcher {
    pub fn new(stores: Vec<StoreConfig>, shards: ShardQueues) -> Dispatcher {
        let batches = match &shards {
            ShardQueues::Partitioned(queues) => queues.len(),
            ShardQueues::Replicated(_) => 1,
        };
        let pending = (0..batches).map(|_| IngestBatch::with_capacity(BATCH)).collect();
        let (targets, topic_types) = (HashMap::new(), HashMap::new());
        Dispatcher { stores, shards, pending, targets, topic_types, known_types: None }
    }

    /// Starts from the record types `known` says each topic carried, and
    /// adds every new one to it.
    pub fn share_known_types(&mut self, known: KnownTypes) {
        for (topic, types) in known.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            for t in types {
                self.note_type(topic, t);
            }
        }
        self.known_types = Some(known);
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
        let owner = self.batch_of(key);
        for store in &stores {
            // A store with a projection keeps its own cut of the record.
            let entry = match self.stores[*store].fields() {
                [] => entry.clone(),
                fields => Entry::new(key, &project(value, fields)).map_err(Upsert::TooLong)?,
            };
            self.push(owner, *store, Change::Upsert(entry)).map_err(Upsert::Gone)?;
        }
        Ok(stores.len())
    }

    /// Queues the removal of `key` from every store `topic` has fed.
    pub fn tombstone(&mut self, topic: &str, key: &str) -> Result<usize, ShardsGone> {
        let types = self.topic_types.get(topic).cloned().unwrap_or_default();
        let mut stores: Vec<usize> = types.iter().flat_map(|t| self.targets_for(t).to_vec()).collect();
        stores.sort_unstable();
        stores.dedup();
        let owner = self.batch_of(key);
        for store in &stores {
            self.push(owner, *store, Change::Delete(key.as_bytes().into()))?;
        }
        Ok(stores.len())
    }

    /// Sends every non-empty batch, waiting while a shard's channel is full.
    pub fn flush(&mut self) -> Result<(), ShardsGone> {
        self.flush_marked(None)
    }

    /// As `flush`, and with a mark every shard gets and acknowledges once it
    /// has applied everything sent before it.
    pub fn flush_marked(&mut self, mark: Option<Arc<FlushMark>>) -> Result<(), ShardsGone> {
        for batch in 0..self.pending.len() {
            self.pending[batch].mark = mark.clone().map(Ack);
            self.send(batch)?;
        }
        Ok(())
    }

    /// The number of shards fed.
    pub fn shards(&self) -> usize {
        self.shards.shards()
    }

    /// The pending batch a key's changes go to: its owner's, or the one
    /// batch every shard gets.
    fn batch_of(&self, key: &str) -> usize {
        owner_of(key.as_bytes(), self.pending.len())
    }

    fn push(&mut self, shard: usize, store: usize, change: Change) -> Result<(), ShardsGone> {
        self.pending[shard].changes.push((store, change));
        if self.pending[shard].len() >= BATCH {
            self.send(shard)?;
        }
        Ok(())
    }

    fn send(&mut self, batch: usize) -> Result<(), ShardsGone> {
        if self.pending[batch].is_empty() {
            return Ok(());
        }
        let pending = std::mem::replace(&mut self.pending[batch], IngestBatch::with_capacity(BATCH));
        match &self.shards {
            ShardQueues::Partitioned(queues) => queues[batch].send(pending).map_err(|_| ShardsGone),
            ShardQueues::Replicated(fanout) => fanout.send_blocking(pending),
        }
    }

    fn note_type(&mut self, topic: &str, record_type: &str) {
        let types = match self.topic_types.get_mut(topic) {
            Some(t) => t,
            None => self.topic_types.entry(topic.to_string()).or_default(),
        };
        if !types.iter().any(|t| t == record_type) {
            types.push(record_type.to_string());
            if let Some(known) = &self.known_types {
                let mut known = known.lock().unwrap_or_else(|e| e.into_inner());
                let seen = known.entry(topic.to_string()).or_default();
                if !seen.iter().any(|t| t == record_type) {
                    seen.push(record_type.to_string());
                }
            }
        }
    }

    fn targets_for(&mut self, record_type: &str) -> &[usize] {
        if !self.targets.contains_key(record_type) {
            let stores = self
                .stores
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s, StoreConfig::InMemory { .. }) && s.accepts(record_type))
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
        let schemas = schemas.iter().map(|s| s.to_string()).collect();
        StoreConfig::InMemory { name: name.into(), schemas, fields: Vec::new(), compression: None }
    }

    fn drain(rx: &flume::Receiver<IngestBatch>) -> Vec<(usize, String)> {
        rx.try_iter()
            .flatten()
            .map(|(s, c)| match c {
                Change::Upsert(e) | Change::InsertNew(e) => (s, format!("put {}", e.key_str())),
                Change::Delete(k) => (s, format!("del {}", String::from_utf8_lossy(&k))),
            })
            .collect()
    }

    #[test]
    fn records_reach_accepting_stores_on_the_owner_in_order() {
        let (tx0, rx0) = flume::bounded(16);
        let (tx1, rx1) = flume::bounded(16);
        let stores = vec![store("customers", &["customer"]), store("all", &[]), store("bills", &["bill"])];
        let mut d = Dispatcher::new(stores, ShardQueues::Partitioned(vec![tx0, tx1]));
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
    fn a_replicated_index_gets_every_change_on_every_shard_in_one_order() {
        let (tx0, rx0) = flume::bounded(16);
        let (tx1, rx1) = flume::bounded(16);
        let fanout = Arc::new(crate::placement::Fanout::new(vec![tx0, tx1]));
        let mut d = Dispatcher::new(vec![store("all", &[])], ShardQueues::Replicated(fanout));
        let v = StoredValue::new(b"{}".to_vec(), None);
        for key in ["k1", "k2", "k3"] {
            d.upsert("t", "x", key, &v).unwrap();
        }
        d.tombstone("t", "k2").unwrap();
        d.flush().unwrap();
        let expected: Vec<(usize, String)> =
            ["put k1", "put k2", "put k3", "del k2"].iter().map(|c| (0, c.to_string())).collect();
        assert_eq!(drain(&rx0), expected);
        assert_eq!(drain(&rx1), expected);
    }

    #[test]
    fn known_types_survive_a_restart() {
        let (tx0, _rx0) = flume::bounded(16);
        let known = KnownTypes::default();
        let mut d = Dispatcher::new(vec![store("customers", &["customer"])], ShardQueues::Partitioned(vec![tx0]));
        d.share_known_types(known.clone());
        d.upsert("c", "customer", "k1", &StoredValue::new(b"{}".to_vec(), None)).unwrap();
        assert_eq!(known.lock().unwrap().get("c"), Some(&vec!["customer".to_string()]));
        let (tx, rx) = flume::bounded(16);
        let mut again = Dispatcher::new(vec![store("customers", &["customer"])], ShardQueues::Partitioned(vec![tx]));
        again.share_known_types(known);
        assert_eq!(again.tombstone("c", "k1").unwrap(), 1, "a tombstone right after a restart still reaches the store");
        again.flush().unwrap();
        assert_eq!(drain(&rx), vec![(0, "del k1".to_string())]);
    }

    #[test]
    fn a_closed_shard_is_reported() {
        let (tx, rx) = flume::bounded(1);
        drop(rx);
        let mut d = Dispatcher::new(vec![store("s", &[])], ShardQueues::Partitioned(vec![tx]));
        d.upsert("t", "x", "k", &StoredValue::new(b"{}".to_vec(), None)).unwrap();
        assert!(d.flush().is_err());
    }
}
