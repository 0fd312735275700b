//! The one interface the API talks to a store through, whatever keeps it:
//! read, insert when absent, upsert, remove, and ordered key slices.
//!
//! [`Store`] is implemented here for Redis ([`RedisStore`]) and, for the
//! in-memory stores, by `runtime::mesh::ShardedStore`, which reads the local
//! shard in place and forwards other shards' keys over the mesh. That
//! implementation lives with the mesh rather than here because the mesh
//! belongs to the shard layer above this one: a store never imports the
//! runtime. [`StoreHandle`] joins the two behind one type, generic over the
//! in-memory implementation the caller passes in, so request handlers hold
//! one value per request and never ask which kind of store they have.
//!
//! The methods are `async` without boxing: a GET on a local key stays a
//! synchronous map lookup behind an already-ready future.

use super::entry::Entry;
use super::key_slice::{KeySlice, ListedKey};
use super::redis::{decode_value, encode_value, Op, Outcome, RedisError, RedisStores};
use std::future::Future;
use std::time::Duration;

/// Why a store could not answer; the request may be retried.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("shard {0} is not answering (the server is shutting down); retry")]
    ShardGone(usize),
    #[error("the store answered an unexpected reply to {0}")]
    Unexpected(&'static str),
}

impl StoreError {
    /// The HTTP status that reports it: 502 when the store holds data that
    /// is not ours, else 503 (the client may retry).
    pub fn status(&self) -> u16 {
        match self {
            StoreError::Redis(e) => e.status(),
            _ => 503,
        }
    }
}

/// What a request handler needs from a store.
pub trait Store {
    /// Runs `read` on the entry for `key` (`None` when absent), in place
    /// when the entry is local.
    fn read<R>(&self, key: &str, read: impl FnOnce(Option<&Entry>) -> R)
        -> impl Future<Output = Result<R, StoreError>>;

    /// Stores `entry` only when its key is absent; false when it exists.
    fn insert_new(&self, entry: Entry) -> impl Future<Output = Result<bool, StoreError>>;

    /// Stores `entry` whether or not its key exists; true when it replaced one.
    fn upsert(&self, entry: Entry) -> impl Future<Output = Result<bool, StoreError>>;

    /// Removes `key`, returning what it held.
    fn remove(&self, key: &str) -> impl Future<Output = Result<Option<Entry>, StoreError>>;

    /// How many independently ordered parts the keys are spread over.
    fn parts(&self) -> usize;

    /// Most keys one slice should be asked for.
    fn slice_size(&self) -> usize;

    /// Keys of `part` after `after` that contain `filter`, ascending: at most
    /// `need`, from a bounded amount of work (see [`KeySlice::next`]).
    fn list_slice(
        &self,
        part: usize,
        after: Option<&str>,
        filter: &str,
        need: usize,
    ) -> impl Future<Output = Result<KeySlice, StoreError>>;

    /// Lets the shard serve other requests between two slices of a listing.
    fn yield_between_slices(&self) -> impl Future<Output = ()>;
}

/// Gives the shard's event loop a turn: a short timer, as a plain task
/// yield would run the listing again before the shard polls its sockets.
pub async fn shard_turn() {
    glommio::timer::sleep(Duration::from_micros(20)).await;
}

/// A store of either kind; `M` is the in-memory implementation.
pub enum StoreHandle<'a, M> {
    Memory(M),
    Redis(RedisStore<'a>),
}

impl<M: Store> Store for StoreHandle<'_, M> {
    async fn read<R>(&self, key: &str, read: impl FnOnce(Option<&Entry>) -> R) -> Result<R, StoreError> {
        match self {
            StoreHandle::Memory(m) => m.read(key, read).await,
            StoreHandle::Redis(r) => r.read(key, read).await,
        }
    }

    async fn insert_new(&self, entry: Entry) -> Result<bool, StoreError> {
        match self {
            StoreHandle::Memory(m) => m.insert_new(entry).await,
            StoreHandle::Redis(r) => r.insert_new(entry).await,
        }
    }

    async fn upsert(&self, entry: Entry) -> Result<bool, StoreError> {
        match self {
            StoreHandle::Memory(m) => m.upsert(entry).await,
            StoreHandle::Redis(r) => r.upsert(entry).await,
        }
    }

    async fn remove(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        match self {
            StoreHandle::Memory(m) => m.remove(key).await,
            StoreHandle::Redis(r) => r.remove(key).await,
        }
    }

    fn parts(&self) -> usize {
        match self {
            StoreHandle::Memory(m) => m.parts(),
            StoreHandle::Redis(r) => r.parts(),
        }
    }

    fn slice_size(&self) -> usize {
        match self {
            StoreHandle::Memory(m) => m.slice_size(),
            StoreHandle::Redis(r) => r.slice_size(),
        }
    }

    async fn list_slice(
        &self,
        part: usize,
        after: Option<&str>,
        filter: &str,
        need: usize,
    ) -> Result<KeySlice, StoreError> {
        match self {
            StoreHandle::Memory(m) => m.list_slice(part, after, filter, need).await,
            StoreHandle::Redis(r) => r.list_slice(part, after, filter, need).await,
        }
    }

    async fn yield_between_slices(&self) {
        match self {
            StoreHandle::Memory(m) => m.yield_between_slices().await,
            StoreHandle::Redis(r) => r.yield_between_slices().await,
        }
    }
}

/// Keys one Redis listing slice may return. Redis keeps no order, so every
/// slice is a full SCAN keeping the smallest keys after the cursor: larger
/// slices mean fewer scans for a long listing, at this much memory.
pub const REDIS_SLICE: usize = 10_000;

/// One Redis store, reached through the `redis-io` thread.
pub struct RedisStore<'a> {
    pub redis: &'a RedisStores,
    pub store: usize,
}

impl RedisStore<'_> {
    async fn call(&self, op: Op) -> Result<Outcome, StoreError> {
        Ok(self.redis.call(self.store, op).await?)
    }
}

impl Store for RedisStore<'_> {
    async fn read<R>(&self, key: &str, read: impl FnOnce(Option<&Entry>) -> R) -> Result<R, StoreError> {
        match self.call(Op::Get(key.as_bytes().to_vec())).await? {
            Outcome::Value(v) => Ok(read(v.and_then(|v| decode_value(key.as_bytes(), &v)).as_ref())),
            _ => Err(StoreError::Unexpected("GET")),
        }
    }

    async fn insert_new(&self, entry: Entry) -> Result<bool, StoreError> {
        let value = encode_value(&entry.etag(), entry.body());
        match self.call(Op::InsertNew(entry.key().to_vec(), value)).await? {
            Outcome::Inserted(done) => Ok(done),
            _ => Err(StoreError::Unexpected("SET NX")),
        }
    }

    async fn upsert(&self, entry: Entry) -> Result<bool, StoreError> {
        let value = encode_value(&entry.etag(), entry.body());
        match self.call(Op::Upsert(entry.key().to_vec(), value)).await? {
            Outcome::Value(old) => Ok(old.is_some()),
            _ => Err(StoreError::Unexpected("SET GET")),
        }
    }

    async fn remove(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        match self.call(Op::Remove(key.as_bytes().to_vec())).await? {
            Outcome::Value(v) => Ok(v.and_then(|v| decode_value(key.as_bytes(), &v))),
            _ => Err(StoreError::Unexpected("GETDEL")),
        }
    }

    fn parts(&self) -> usize {
        1
    }

    fn slice_size(&self) -> usize {
        REDIS_SLICE
    }

    async fn list_slice(
        &self,
        _: usize,
        after: Option<&str>,
        filter: &str,
        need: usize,
    ) -> Result<KeySlice, StoreError> {
        let need = need.clamp(1, REDIS_SLICE);
        let op = Op::KeysAfter { after: after.map(str::to_owned), filter: filter.to_owned(), need };
        match self.call(op).await? {
            Outcome::Keys(keys) => {
                let next = if keys.len() >= need { keys.last().cloned() } else { None };
                Ok(KeySlice { keys: keys.into_iter().map(ListedKey::Text).collect(), next })
            }
            _ => Err(StoreError::Unexpected("SCAN")),
        }
    }

    /// Each slice already waited on Redis; nothing ran on the shard meanwhile.
    async fn yield_between_slices(&self) {}
}
