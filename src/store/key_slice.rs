//! What one part of a store hands out when asked for its keys after a
//! cursor: a bounded, ascending [`KeySlice`]. The in-memory stores, the
//! Redis store and the listing that merges them (`store::listing`) all
//! speak it, so it stands apart from each of them.

use super::entry::Entry;

/// Most keys a part returns, and most keys it looks at, in one slice.
/// Keeps one slice of work (a tree walk, a substring test and a copy per
/// key) in the tens of microseconds.
pub const SLICE: usize = 1024;

/// A listed key: an in-memory entry shared with its shard (a count bump,
/// no copy of the key), or text (from Redis).
#[derive(Debug, Clone)]
pub enum ListedKey {
    Shared(Entry),
    Text(String),
}

impl ListedKey {
    pub fn as_str(&self) -> &str {
        match self {
            ListedKey::Shared(e) => e.key_str(),
            ListedKey::Text(s) => s,
        }
    }
}

/// One slice of a part's keys, ascending.
#[derive(Debug, Default, Clone)]
pub struct KeySlice {
    pub keys: Vec<ListedKey>,
    /// The last key looked at when the slice stopped before the end of the
    /// part: the next slice starts after it. `None`: the part has no more.
    pub next: Option<String>,
}
