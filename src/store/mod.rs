//! Where values live. `value` is what the write path produces (JSON body +
//! ETag), `entry` how a shard keeps it, `memory` a shard's map of entries.

pub mod entry;
pub mod memory;
pub mod redis;
pub mod value;
