//! Where a record goes, decided the same way by everyone: the one hash that
//! picks a key's owning shard (`owner_of`), the change a shard applies to
//! one key (`Change`), and the batch the Kafka consumer sends a shard
//! (`IngestBatch`, with the flush mark whose acknowledgement tells readiness
//! and position-bound reads what is applied).
//!
//! It sits below both ingest (which routes records) and the shards (which
//! apply them), so neither has to import the other.

use crate::positions::FlushMark;
use crate::store::entry::Entry;
use std::hash::BuildHasher;

/// Fixed seed: every thread, and every restart, must agree on owners.
const OWNER_SEED: u64 = 0x5eed_0f0a_11ca_5e00;

/// The one function that decides which shard owns a key. It is seeded apart
/// from the shard maps' own hashers, so a shard's keys still spread evenly
/// over its map's buckets.
pub fn owner_of(key: &[u8], shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let h = foldhash::fast::FixedState::with_seed(OWNER_SEED).hash_one(key);
    // Lemire's range reduction on the high half: uniform, no division.
    (((h >> 32) * shards as u64) >> 32) as usize
}

/// A change to one key of one store, applied by the key's owner.
#[derive(Debug)]
pub enum Change {
    Upsert(Entry),
    Delete(Box<[u8]>),
}

/// Changes from the consumer for one shard: (store index, change) in order,
/// and, on the last batch of a flush, the flush's mark. The mark is
/// acknowledged when the batch is dropped, which the shard does once it has
/// applied the changes and recorded the positions.
#[derive(Debug, Default)]
pub struct IngestBatch {
    pub changes: Vec<(usize, Change)>,
    pub mark: Option<Ack>,
}

impl IngestBatch {
    pub fn with_capacity(n: usize) -> IngestBatch {
        IngestBatch { changes: Vec::with_capacity(n), mark: None }
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.mark.is_none()
    }
}

/// One shard's hold on a flush's mark; dropping it acknowledges the mark.
#[derive(Debug)]
pub struct Ack(pub std::sync::Arc<FlushMark>);

impl Drop for Ack {
    fn drop(&mut self) {
        self.0.applied_by_one_shard();
    }
}

/// The changes, in order; the mark is acknowledged when the iterator is dropped.
pub struct IntoChanges {
    changes: std::vec::IntoIter<(usize, Change)>,
    _mark: Option<Ack>,
}

impl Iterator for IntoChanges {
    type Item = (usize, Change);
    fn next(&mut self) -> Option<(usize, Change)> {
        self.changes.next()
    }
}

impl IntoIterator for IngestBatch {
    type Item = (usize, Change);
    type IntoIter = IntoChanges;
    fn into_iter(self) -> IntoChanges {
        IntoChanges { changes: self.changes.into_iter(), _mark: self.mark }
    }
}
