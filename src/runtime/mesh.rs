//! Cross-shard messages. A shard that gets a request for a key it does not
//! own sends it to the owner over glommio's channel mesh and awaits the reply
//! on a oneshot; the owner answers from its own map. Cross-shard work is a
//! message, never a lock.

use super::shard::{Change, Shard};
use crate::metrics::ShardSnapshot;
use crate::store::entry::Entry;
use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};
use std::rc::Rc;

/// Work one shard asks of another.
#[derive(Debug)]
pub enum Request {
    Get { store: usize, key: Box<[u8]> },
    InsertNew { store: usize, entry: Entry },
    Remove { store: usize, key: Box<[u8]> },
    Keys { store: usize, filter: String },
    Snapshot,
    Apply { store: usize, change: Change },
}

/// The owner's answer.
#[derive(Debug)]
pub enum Reply {
    Entry(Option<Entry>),
    Inserted(bool),
    Keys(Vec<String>),
    Snapshot(Box<ShardSnapshot>),
    Done,
}

pub struct Envelope {
    request: Request,
    reply: oneshot::Sender<Reply>,
}

/// Runs a request against the local shard; the same code answers local and
/// forwarded requests.
pub fn execute(shard: &Shard, request: Request) -> Reply {
    match request {
        Request::Get { store, key } => Reply::Entry(shard.get(store, &key)),
        Request::InsertNew { store, entry } => Reply::Inserted(shard.insert_new(store, entry)),
        Request::Remove { store, key } => Reply::Entry(shard.remove(store, &key)),
        Request::Keys { store, filter } => Reply::Keys(shard.keys(store, &filter)),
        Request::Snapshot => Reply::Snapshot(Box::new(shard.snapshot())),
        Request::Apply { store, change } => {
            shard.apply(store, change);
            Reply::Done
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

impl Mesh {
    /// Joins the mesh and starts one task per peer that answers its requests.
    pub fn start(senders: Senders<Envelope>, receivers: Receivers<Envelope>, shard: Rc<Shard>) -> Mesh {
        serve_peers(receivers, shard.clone());
        Mesh { senders, shard }
    }

    /// Sends `request` to shard `to` (which may be this one) and awaits its answer.
    pub async fn call(&self, to: usize, request: Request) -> Result<Reply, PeerGone> {
        if to == self.shard.id {
            return Ok(execute(&self.shard, request));
        }
        let (tx, rx) = oneshot::channel();
        self.senders.send_to(to, Envelope { request, reply: tx }).await.map_err(|_| PeerGone(to))?;
        rx.await.map_err(|_| PeerGone(to))
    }

    /// Sends `request` built by `make` to every shard, this one included.
    pub async fn call_all(&self, make: impl Fn() -> Request) -> Result<Vec<Reply>, PeerGone> {
        let mut pending = Vec::with_capacity(self.shard.count);
        for to in 0..self.shard.count {
            if to != self.shard.id {
                let (tx, rx) = oneshot::channel();
                self.senders.send_to(to, Envelope { request: make(), reply: tx }).await.map_err(|_| PeerGone(to))?;
                pending.push((to, rx));
            }
        }
        let mut replies = vec![execute(&self.shard, make())];
        for (to, rx) in pending {
            replies.push(rx.await.map_err(|_| PeerGone(to))?);
        }
        Ok(replies)
    }
}

fn serve_peers(mut receivers: Receivers<Envelope>, shard: Rc<Shard>) {
    for (_, stream) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(env) = stream.recv().await {
                // The asker may have gone (client hung up): nothing to do then.
                let _ = env.reply.send(execute(&shard, env.request));
            }
        })
        .detach();
    }
}
