//! One shard's copy of what each Redis store's feed has written, so that
//! position-bound reads and `writes: kafka` requests on Redis routes can
//! wait for a position as they do on in-memory routes.
//!
//! A Redis store is written by its own feed thread, not by the shards, and a
//! record is visible to every shard as soon as that feed wrote it: so a
//! request waits on its own shard, never over the mesh. Each shard watches
//! every Redis feed's positions (`FeedPositions::watch`); a small task
//! copies them into the shard's `Applied` when the feed says it advanced,
//! which wakes the parked requests. A parked request costs no CPU, and a
//! slow shard never holds the feed up (the watch channel coalesces).

use crate::positions::FeedPositions;
use crate::runtime::applied::Applied;
use std::rc::Rc;
use std::sync::Arc;

/// Per store index: the Redis feed's applied positions as this shard knows
/// them (`None` for an in-memory store).
pub struct RedisApplied {
    by_store: Vec<Option<Rc<Applied>>>,
}

impl RedisApplied {
    /// Starts, on the calling shard's executor, one watcher task per Redis
    /// store. `feeds` are matched to stores by name (`redis:{store}`).
    pub fn start(store_names: &[String], feeds: &[Arc<FeedPositions>]) -> RedisApplied {
        let by_store = store_names
            .iter()
            .map(|name| {
                let feed = feeds.iter().find(|f| f.feed == format!("redis:{name}"))?;
                let applied = Rc::new(Applied::default());
                glommio::spawn_local(follow(feed.clone(), applied.clone())).detach();
                Some(applied)
            })
            .collect();
        RedisApplied { by_store }
    }

    /// What `store`'s Redis feed has written, when it is a Redis store.
    pub fn of(&self, store: usize) -> Option<&Applied> {
        self.by_store.get(store)?.as_deref()
    }
}

/// Copies the feed's positions into `applied` now and after every advance.
async fn follow(feed: Arc<FeedPositions>, applied: Rc<Applied>) {
    let advanced = feed.watch();
    loop {
        for ((topic, partition), position) in feed.snapshot() {
            if position.applied > 0 {
                applied.advance(&topic, partition, position.applied);
            }
        }
        if advanced.recv_async().await.is_err() {
            return;
        }
    }
}
