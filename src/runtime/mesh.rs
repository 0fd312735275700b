//! Cross-shard messages. A shard that gets a request for a key it does not
//! own sends a [`ShardCall`] to the owner over glommio's channel mesh and
//! awaits the [`ShardReply`] on a oneshot; the owner answers from its own
//! map. Cross-shard work is a message, never a lock.
//!
//! [`ShardedStore`] is the in-memory side of the store interface
//! (`store::Store`): it reads this shard's keys in place and sends the rest
//! to their owners, and lists keys slice by slice from every shard.

use super::shard::{Change, Shard};
use crate::metrics::ShardSnapshot;
use crate::placement::{Applied, Fanout, IngestBatch, WriteAck};
use crate::positions::{MinPosition, Reached};
use crate::store::entry::Entry;
use crate::store::handle::{shard_turn, Store, StoreError};
use crate::store::key_slice::{KeySlice, SLICE};
use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Work one shard asks of another.
#[derive(Debug)]
pub enum ShardCall {
    Get {
        store: usize,
        key: Box<[u8]>,
    },
    InsertNew {
        store: usize,
        entry: Entry,
    },
    Upsert {
        store: usize,
        entry: Entry,
    },
    Remove {
        store: usize,
        key: Box<[u8]>,
    },
    /// One bounded slice of the keys after `after` containing `filter`.
    Keys {
        store: usize,
        after: Option<Box<[u8]>>,
        filter: String,
        need: usize,
    },
    Snapshot,
    /// Answer once these positions are applied on the owner, or after `wait`.
    WaitApplied {
        min: Vec<MinPosition>,
        wait: Duration,
    },
}

/// The owner's answer.
#[derive(Debug)]
pub enum ShardReply {
    Entry(Option<Entry>),
    Inserted(bool),
    Keys(KeySlice),
    Snapshot(Box<ShardSnapshot>),
    /// `Err`: the positions not reached when the wait ended.
    Applied(Result<(), Vec<Reached>>),
}

pub struct Envelope {
    call: ShardCall,
    reply: oneshot::Sender<ShardReply>,
}

/// Runs a call against the local shard; the same code answers local and
/// forwarded calls. Each call is bounded work (a listing is one slice).
pub fn execute(shard: &Shard, call: ShardCall) -> ShardReply {
    match call {
        ShardCall::Get { store, key } => ShardReply::Entry(shard.get(store, &key)),
        ShardCall::InsertNew { store, entry } => ShardReply::Inserted(shard.insert_new(store, entry)),
        ShardCall::Upsert { store, entry } => ShardReply::Entry(shard.upsert(store, entry)),
        ShardCall::Remove { store, key } => ShardReply::Entry(shard.remove(store, &key)),
        ShardCall::Keys { store, after, filter, need } => {
            ShardReply::Keys(shard.keys_after(store, after.as_deref(), &filter, need))
        }
        ShardCall::Snapshot => ShardReply::Snapshot(Box::new(shard.snapshot())),
        // Without waiting; `serve_peers` runs the waiting form on its own task.
        ShardCall::WaitApplied { min, .. } => {
            let missing = shard.applied.missing(&min);
            ShardReply::Applied(if missing.is_empty() { Ok(()) } else { Err(missing) })
        }
    }
}

/// This shard's handle on the mesh.
pub struct Mesh {
    senders: Senders<Envelope>,
    shard: Rc<Shard>,
}

/// The mesh went away: only during shutdown.
#[derive(Debug, thiserror::Error)]
#[error("shard {0} is not answering (the server is shutting down)")]
pub struct PeerGone(pub usize);

impl From<PeerGone> for StoreError {
    fn from(e: PeerGone) -> StoreError {
        StoreError::ShardGone(e.0)
    }
}

impl Mesh {
    /// Joins the mesh and starts one task per peer that answers its calls.
    pub fn start(senders: Senders<Envelope>, receivers: Receivers<Envelope>, shard: Rc<Shard>) -> Mesh {
        serve_peers(receivers, shard.clone());
        Mesh { senders, shard }
    }

    /// Sends `call` to shard `to` (which may be this one) and awaits its answer.
    pub async fn call(&self, to: usize, call: ShardCall) -> Result<ShardReply, PeerGone> {
        if to == self.shard.id {
            return Ok(execute(&self.shard, call));
        }
        let (tx, rx) = oneshot::channel();
        self.senders.send_to(to, Envelope { call, reply: tx }).await.map_err(|_| PeerGone(to))?;
        rx.await.map_err(|_| PeerGone(to))
    }

    /// Waits until shard `to` has applied every position in `min`, or `wait`
    /// passed. A remote wait parks on the owner's own task, so neither shard
    /// is held up meanwhile.
    pub async fn wait_applied(
        &self,
        to: usize,
        min: Vec<MinPosition>,
        wait: Duration,
    ) -> Result<Result<(), Vec<Reached>>, PeerGone> {
        if to == self.shard.id {
            return Ok(self.shard.applied.wait(&min, Instant::now() + wait).await);
        }
        match self.call(to, ShardCall::WaitApplied { min, wait }).await? {
            ShardReply::Applied(r) => Ok(r),
            _ => Err(PeerGone(to)),
        }
    }

    /// Sends the call built by `make` to every shard, this one included.
    pub async fn call_all(&self, make: impl Fn() -> ShardCall) -> Result<Vec<ShardReply>, PeerGone> {
        let mut pending = Vec::with_capacity(self.shard.count);
        for to in 0..self.shard.count {
            if to != self.shard.id {
                let (tx, rx) = oneshot::channel();
                self.senders.send_to(to, Envelope { call: make(), reply: tx }).await.map_err(|_| PeerGone(to))?;
                pending.push((to, rx));
            }
        }
        let mut replies = vec![execute(&self.shard, make())];
        for (to, rx) in pending {
            replies.push(rx.await.map_err(|_| PeerGone(to))?);
        }
        Ok(replies)
    }

    /// The in-memory store `store` as seen from this shard.
    pub fn store(&self, store: usize) -> ShardedStore<'_> {
        ShardedStore { mesh: self, store }
    }
}

fn serve_peers(mut receivers: Receivers<Envelope>, shard: Rc<Shard>) {
    for (_, stream) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(env) = stream.recv().await {
                if let ShardCall::WaitApplied { min, wait } = env.call {
                    let (shard, reply) = (shard.clone(), env.reply);
                    glommio::spawn_local(async move {
                        let _ = reply.send(ShardReply::Applied(shard.applied.wait(&min, Instant::now() + wait).await));
                    })
                    .detach();
                    continue;
                }
                // The asker may have gone (client hung up): nothing to do then.
                let _ = env.reply.send(execute(&shard, env.call));
            }
        })
        .detach();
    }
}

/// One in-memory store across all shards: this shard's keys in place, the
/// others' through their owners. With a replicated index every key is read
/// in place, and writes go to every shard through the fan-out.
pub struct ShardedStore<'a> {
    mesh: &'a Mesh,
    store: usize,
}

impl ShardedStore<'_> {
    fn owner(&self, key: &[u8]) -> usize {
        self.mesh.shard.holder_of(key)
    }

    /// With a replicated index: applies `change` on every shard, in order
    /// with the records, and answers once every shard has applied it.
    async fn write_everywhere(&self, fanout: &Fanout, change: Change) -> Result<Applied, StoreError> {
        let shard = &self.mesh.shard;
        let (ack, applied) = WriteAck::new(shard.count);
        let batch = IngestBatch { changes: vec![(self.store, change)], mark: None, write: Some(ack) };
        fanout.send_from_shard(batch).await.map_err(|_| StoreError::ShardGone(shard.id))?;
        applied.await.map_err(|_| StoreError::ShardGone(shard.id))
    }

    async fn entry_call(&self, key: &[u8], call: ShardCall, what: &'static str) -> Result<Option<Entry>, StoreError> {
        match self.mesh.call(self.owner(key), call).await? {
            ShardReply::Entry(e) => Ok(e),
            _ => Err(StoreError::Unexpected(what)),
        }
    }
}

impl Store for ShardedStore<'_> {
    async fn read<R>(&self, key: &str, read: impl FnOnce(Option<&Entry>) -> R) -> Result<R, StoreError> {
        let shard = &self.mesh.shard;
        let owner = self.owner(key.as_bytes());
        if owner == shard.id {
            return Ok(shard.with_entry(self.store, key.as_bytes(), read));
        }
        shard.metrics.borrow_mut().forwarded += 1;
        let entry = self
            .entry_call(key.as_bytes(), ShardCall::Get { store: self.store, key: key.as_bytes().into() }, "get")
            .await?;
        Ok(read(entry.as_ref()))
    }

    async fn insert_new(&self, entry: Entry) -> Result<bool, StoreError> {
        if let Some(fanout) = self.mesh.shard.fanout() {
            return self.write_everywhere(fanout, Change::InsertNew(entry)).await.map(|a| a.done);
        }
        let owner = self.owner(entry.key());
        match self.mesh.call(owner, ShardCall::InsertNew { store: self.store, entry }).await? {
            ShardReply::Inserted(done) => Ok(done),
            _ => Err(StoreError::Unexpected("insert")),
        }
    }

    async fn upsert(&self, entry: Entry) -> Result<bool, StoreError> {
        if let Some(fanout) = self.mesh.shard.fanout() {
            return self.write_everywhere(fanout, Change::Upsert(entry)).await.map(|a| a.previous.is_some());
        }
        let owner = self.owner(entry.key());
        match self.mesh.call(owner, ShardCall::Upsert { store: self.store, entry }).await? {
            ShardReply::Entry(old) => Ok(old.is_some()),
            _ => Err(StoreError::Unexpected("upsert")),
        }
    }

    async fn remove(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        if let Some(fanout) = self.mesh.shard.fanout() {
            return self.write_everywhere(fanout, Change::Delete(key.as_bytes().into())).await.map(|a| a.previous);
        }
        self.entry_call(key.as_bytes(), ShardCall::Remove { store: self.store, key: key.as_bytes().into() }, "remove")
            .await
    }

    fn parts(&self) -> usize {
        match self.mesh.shard.fanout() {
            Some(_) => 1,
            None => self.mesh.shard.count,
        }
    }

    fn slice_size(&self) -> usize {
        SLICE
    }

    async fn list_slice(
        &self,
        part: usize,
        after: Option<&str>,
        filter: &str,
        need: usize,
    ) -> Result<KeySlice, StoreError> {
        let call = ShardCall::Keys {
            store: self.store,
            after: after.map(|a| a.as_bytes().into()),
            filter: filter.into(),
            need,
        };
        let part = if self.parts() == 1 { self.mesh.shard.id } else { part };
        match self.mesh.call(part, call).await? {
            ShardReply::Keys(slice) => Ok(slice),
            _ => Err(StoreError::Unexpected("keys")),
        }
    }

    async fn yield_between_slices(&self) {
        shard_turn().await;
    }
}
