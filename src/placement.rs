//! Where a record goes, decided the same way by everyone: the one hash that
//! picks a key's owning shard (`owner_of`), the change a shard applies to
//! one key (`Change`), the batch the Kafka consumer sends a shard
//! (`IngestBatch`, with the flush mark whose acknowledgement tells readiness
//! and position-bound reads what is applied), and the shards' queues
//! (`ShardQueues`): one per shard for a partitioned index, or, for a
//! replicated one, every queue behind one [`Fanout`] so that every shard
//! applies every change in the same order, whoever sent it.
//!
//! It sits below both ingest (which routes records) and the shards (which
//! apply them), so neither has to import the other.

use crate::positions::FlushMark;
use crate::store::entry::Entry;
use futures_channel::oneshot;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// A change to one key of one store, applied by the key's owner (every
/// shard, with a replicated index).
#[derive(Debug, Clone)]
pub enum Change {
    Upsert(Entry),
    Delete(Box<[u8]>),
    /// Stored only when the key is absent (an API POST, replicated index).
    InsertNew(Entry),
}

/// What applying a change did: whether it took effect (an `InsertNew` of a
/// present key does not) and the entry it replaced or removed.
#[derive(Debug, Default)]
pub struct Applied {
    pub done: bool,
    pub previous: Option<Entry>,
}

/// Changes from the consumer for one shard: (store index, change) in order,
/// and, on the last batch of a flush, the flush's mark. The mark is
/// acknowledged when the batch is dropped, which the shard does once it has
/// applied the changes and recorded the positions.
#[derive(Debug, Default)]
pub struct IngestBatch {
    pub changes: Vec<(usize, Change)>,
    pub mark: Option<Ack>,
    /// An API write (replicated index): its one change's outcome is reported
    /// here by every shard that applies it.
    pub write: Option<WriteAck>,
}

impl IngestBatch {
    pub fn with_capacity(n: usize) -> IngestBatch {
        IngestBatch { changes: Vec::with_capacity(n), mark: None, write: None }
    }

    /// The same changes, mark and write for another shard: entries are
    /// shared, not copied.
    fn copy_for_another_shard(&self) -> IngestBatch {
        IngestBatch {
            changes: self.changes.clone(),
            mark: self.mark.as_ref().map(|a| Ack(a.0.clone())),
            write: self.write.as_ref().map(|w| WriteAck(w.0.clone())),
        }
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

/// An API write sent to every shard: each shard that applies it reports the
/// outcome, and the last one hands it to the writer, so the write is
/// answered only once every shard serves it.
#[derive(Debug)]
pub struct WriteAck(Arc<WriteDone>);

#[derive(Debug)]
struct WriteDone {
    remaining: AtomicUsize,
    answer: Mutex<Option<oneshot::Sender<Applied>>>,
}

impl WriteAck {
    /// A write that `shards` shards will report, and where its outcome comes.
    pub fn new(shards: usize) -> (WriteAck, oneshot::Receiver<Applied>) {
        let (tx, rx) = oneshot::channel();
        let done = WriteDone { remaining: AtomicUsize::new(shards), answer: Mutex::new(Some(tx)) };
        (WriteAck(Arc::new(done)), rx)
    }

    /// One shard applied the write with this outcome (every shard's is the
    /// same: they applied the same changes in the same order).
    pub fn report(&self, applied: Applied) {
        if self.0.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(tx) = self.0.answer.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = tx.send(applied);
            }
        }
    }
}

/// The shards stopped (the server is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the shards stopped accepting changes (the server is shutting down)")]
pub struct ShardsGone;

/// The shards' ingest queues, as the index places keys.
#[derive(Clone)]
pub enum ShardQueues {
    /// One queue per shard; a change goes to its key's owner only.
    Partitioned(Vec<flume::Sender<IngestBatch>>),
    /// Every change goes to every shard, through one fan-out.
    Replicated(Arc<Fanout>),
}

impl ShardQueues {
    pub fn shards(&self) -> usize {
        match self {
            ShardQueues::Partitioned(q) => q.len(),
            ShardQueues::Replicated(f) => f.shards,
        }
    }
}

/// Every shard's queue behind one lock. Whoever sends (the consumer with a
/// batch of records, a shard with an API write) sends to every shard while
/// holding it, so every shard receives, and applies, the same batches in the
/// same order, and replicas of the index never diverge.
///
/// A shard thread never blocks on the lock: it only tries it, and sends only
/// when every queue has room, so all its sends succeed at once; the consumer
/// thread may wait for the lock and for room.
pub struct Fanout {
    queues: Mutex<Vec<flume::Sender<IngestBatch>>>,
    shards: usize,
}

/// How long a shard waits before trying the fan-out again.
const FANOUT_RETRY: Duration = Duration::from_micros(50);

impl Fanout {
    pub fn new(queues: Vec<flume::Sender<IngestBatch>>) -> Fanout {
        let shards = queues.len();
        Fanout { queues: Mutex::new(queues), shards }
    }

    /// Sends `batch` to every shard, waiting for the lock and for room
    /// (the consumer thread).
    pub fn send_blocking(&self, batch: IngestBatch) -> Result<(), ShardsGone> {
        let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        for queue in &queues[1..] {
            queue.send(batch.copy_for_another_shard()).map_err(|_| ShardsGone)?;
        }
        queues[0].send(batch).map_err(|_| ShardsGone)
    }

    /// Sends `batch` to every shard without blocking the calling shard's
    /// thread: it retries on a timer while the lock is held or a queue is
    /// full (the shard's own queue drains meanwhile, on its own task).
    pub async fn send_from_shard(&self, batch: IngestBatch) -> Result<(), ShardsGone> {
        let mut batch = Some(batch);
        loop {
            if let Ok(queues) = self.queues.try_lock() {
                if queues.iter().any(|q| q.is_disconnected()) {
                    return Err(ShardsGone);
                }
                if queues.iter().all(|q| q.capacity().is_none_or(|c| q.len() < c)) {
                    let batch = batch.take().expect("sent once");
                    for queue in &queues[1..] {
                        queue.try_send(batch.copy_for_another_shard()).map_err(|_| ShardsGone)?;
                    }
                    return queues[0].try_send(batch).map_err(|_| ShardsGone);
                }
            }
            glommio::timer::sleep(FANOUT_RETRY).await;
        }
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
