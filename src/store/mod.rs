//! Where values live. `value` is what the write path produces (JSON body +
//! ETag), `projection` cuts it to a store's `fields`, `entry` is how a shard
//! keeps it, `memory` a shard's map of entries with its ordered index (`key_index`),
//! `redis` the Redis store. `handle` is the one interface request handlers
//! use for any store, `key_slice` what a part of a store hands out when
//! asked for keys, and `listing` merges those slices into pages.

pub mod compress;
pub mod entry;
pub mod handle;
pub mod key_index;
pub mod key_slice;
pub mod listing;
pub mod memory;
pub mod projection;
pub mod redis;
pub mod value;

pub use handle::{Store, StoreError, StoreHandle};
