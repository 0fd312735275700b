//! One cached key as a shard keeps it: key, ETag and JSON body in a single
//! reference-counted allocation behind a one-word pointer.
//!
//! Why not `Arc<[u8]>`: at a million keys the per-entry overhead is what
//! separates resident memory from the raw bytes. `Arc<[u8]>` is a two-word
//! pointer (16 bytes in every table slot) to a 16-byte pair of counters; this
//! entry is an 8-byte pointer to a 12-byte header (one 32-bit count, the three
//! lengths, a flags byte). A shard can still hand an entry to another shard (a forwarded
//! GET) by bumping the count instead of copying the body, so the count is
//! atomic; it is touched once per forward, never on a local hit.
//!
//! The two ETag forms `StoredValue` makes (`"{updatedAt}"` and a quoted
//! 16-digit hex hash) are kept as the 8-byte number they quote and written
//! back out on each read: 7 to 10 bytes less per key for a few nanoseconds of
//! formatting. When the number is the one that ends an uncompressed body
//! (`…,"updatedAt":1704067200001}`, as the record types here are laid out)
//! nothing is kept: a read takes the digits before the body's last byte.
//! Any other ETag is kept as written.
//!
//! Entries up to [`slab::MAX`] bytes are carved from slabs, one free list
//! per 8-byte size class, rather than each taken from malloc: glibc puts an
//! 8-byte header in front of every chunk and rounds it up to 16 bytes (about
//! 15 bytes per entry on average), a slab slot only rounds to 8 (about 3.5).
//! Slabs are never given back to the system; a freed slot is reused by the
//! next entry of its size class. Each thread allocates from and frees to its
//! own stripe of free lists (shards loading snapshots in parallel do not
//! wait on one lock), and takes another stripe's free slots when its own
//! run out, so slots freed on one thread serve entries made on another.
//!
//! A body may be kept zstd-compressed (`store::compress`): the flags byte
//! says so, and the body then starts with its uncompressed length and the id
//! of the dictionary it was compressed with (two LEB128 varints, 3 bytes for
//! a body under 16 KiB and the first 127 dictionaries), so a GET sizes its
//! buffer once.

use super::compress::{decompress_into, CompressError};
use super::value::StoredValue;
use std::borrow::Cow;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, Ordering};

/// The header in front of `[key][etag][body]`.
#[repr(C)]
struct Header {
    refs: AtomicU32,
    body_len: u32,
    key_len: u16,
    etag_len: u8,
    /// `COMPRESSED` when the body is `[raw length][dictionary id][zstd frame]`,
    /// both numbers LEB128 varints.
    flags: u8,
}

const COMPRESSED: u8 = 1;
/// On a compressed entry: uncompressed, its ETag would take no bytes (it
/// quotes the number that ends the body), for [`Entry::raw_weight`].
const ETAG_IN_RAW_BODY: u8 = 2;
/// Most bytes in front of a compressed body's zstd frame (two u32 varints).
const PACKED_PREFIX_MAX: usize = 10;

const HEADER: usize = std::mem::size_of::<Header>();
const _: () = assert!(std::mem::align_of::<Header>() <= slab::GRAIN);

/// `etag_len` values that mean "8-byte number" rather than a length.
const ETAG_DECIMAL: u8 = u8::MAX;
const ETAG_HEX: u8 = u8::MAX - 1;
/// The ETag quotes the decimal number that ends the (uncompressed) body.
const ETAG_TAIL: u8 = u8::MAX - 2;
const ETAG_MAX_RAW: usize = ETAG_TAIL as usize - 1;

/// A shared, immutable cached entry.
pub struct Entry(NonNull<Header>);

// SAFETY: the bytes behind the pointer are never written after `from_parts`
// returns, and the reference count is atomic, like `Arc<[u8]>`.
unsafe impl Send for Entry {}
unsafe impl Sync for Entry {}

/// A key, ETag or body too long for the entry layout.
#[derive(Debug, thiserror::Error)]
#[error("{what} of {len} bytes is too long to cache (limits: keys 65 535 bytes, ETags 252, bodies 4 GiB)")]
pub struct TooLong {
    pub what: &'static str,
    pub len: usize,
}

fn fits<T: TryFrom<usize>>(what: &'static str, len: usize) -> Result<T, TooLong> {
    T::try_from(len).map_err(|_| TooLong { what, len })
}

impl Entry {
    pub fn new(key: &str, value: &StoredValue) -> Result<Entry, TooLong> {
        Entry::from_parts(key.as_bytes(), &value.etag, &value.body)
    }

    pub fn from_parts(key: &[u8], etag: &[u8], body: &[u8]) -> Result<Entry, TooLong> {
        Entry::build(key, etag, &[], body, 0)
    }

    /// An entry whose body is the zstd `frame` of `raw_len` bytes, compressed
    /// with dictionary `dict` (see `store::compress`).
    pub fn compressed(key: &[u8], etag: &[u8], dict: u32, raw_len: usize, frame: &[u8]) -> Result<Entry, TooLong> {
        let mut prefix = [0u8; PACKED_PREFIX_MAX];
        let used = put_varint(&mut prefix, 0, fits::<u32>("body", raw_len)?);
        let used = put_varint(&mut prefix, used, dict);
        Entry::build(key, etag, &prefix[..used], frame, COMPRESSED)
    }

    /// An entry whose body is the zstd `frame` of `raw`, compressed with
    /// dictionary `dict`: what `compressed_from` makes of the plain entry
    /// (key, etag, raw), without building that entry first.
    pub fn compressed_raw(key: &[u8], etag: &[u8], dict: u32, raw: &[u8], frame: &[u8]) -> Result<Entry, TooLong> {
        let mut prefix = [0u8; PACKED_PREFIX_MAX];
        let used = put_varint(&mut prefix, 0, fits::<u32>("body", raw.len())?);
        let used = put_varint(&mut prefix, used, dict);
        let in_raw = matches!(compact_etag(etag), Some((ETAG_DECIMAL, n)) if tail_number(raw) == Some(n));
        let flags = if in_raw { COMPRESSED | ETAG_IN_RAW_BODY } else { COMPRESSED };
        Entry::build(key, etag, &prefix[..used], frame, flags)
    }

    /// This plain entry with its body replaced by the zstd `frame` of it,
    /// compressed with dictionary `dict`.
    pub fn compressed_from(&self, dict: u32, frame: &[u8]) -> Result<Entry, TooLong> {
        Entry::compressed_raw(self.key(), &self.etag(), dict, self.body(), frame)
    }

    fn build(key: &[u8], etag: &[u8], prefix: &[u8], body: &[u8], flags: u8) -> Result<Entry, TooLong> {
        let number;
        let (etag_len, etag) = match compact_etag(etag) {
            Some((ETAG_DECIMAL, n)) if flags == 0 && tail_number(body) == Some(n) => (ETAG_TAIL, &[][..]),
            Some((kind, n)) => {
                number = n.to_le_bytes();
                (kind, &number[..])
            }
            None if etag.len() > ETAG_MAX_RAW => return Err(TooLong { what: "ETag", len: etag.len() }),
            None => (etag.len() as u8, etag),
        };
        let header = Header {
            refs: AtomicU32::new(1),
            body_len: fits("body", prefix.len() + body.len())?,
            key_len: fits("key", key.len())?,
            etag_len,
            flags,
        };
        let size = HEADER + key.len() + etag.len() + prefix.len() + body.len();
        // SAFETY: every byte of the `size` bytes is written below before the
        // entry is handed out; slab slots are 8-byte aligned, enough for the header.
        unsafe {
            let raw = slab::alloc(size);
            let ptr = NonNull::new_unchecked(raw.cast::<Header>());
            ptr.as_ptr().write(header);
            let mut at = raw.add(HEADER);
            for part in [key, etag, prefix, body] {
                std::ptr::copy_nonoverlapping(part.as_ptr(), at, part.len());
                at = at.add(part.len());
            }
            Ok(Entry(ptr))
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: the pointer is valid while this entry holds a reference.
        unsafe { self.0.as_ref() }
    }

    /// Bytes the ETag takes in the allocation.
    fn etag_size(&self) -> usize {
        match self.header().etag_len {
            ETAG_DECIMAL | ETAG_HEX => 8,
            ETAG_TAIL => 0,
            len => usize::from(len),
        }
    }

    fn data_len(&self) -> usize {
        let h = self.header();
        usize::from(h.key_len) + self.etag_size() + h.body_len as usize
    }

    /// `[key][etag][body]`.
    fn data(&self) -> &[u8] {
        // SAFETY: `from_parts` wrote `data_len` bytes after the header.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>().add(HEADER), self.data_len()) }
    }

    pub fn key(&self) -> &[u8] {
        &self.data()[..usize::from(self.header().key_len)]
    }

    /// The key as text; keys are checked to be UTF-8 before they are stored.
    pub fn key_str(&self) -> &str {
        std::str::from_utf8(self.key()).unwrap_or("")
    }

    /// The ETag header value, quotes included.
    pub fn etag(&self) -> Etag<'_> {
        let start = usize::from(self.header().key_len);
        let stored = &self.data()[start..start + self.etag_size()];
        let number = || u64::from_le_bytes(stored.try_into().expect("a compact ETag is 8 bytes"));
        match self.header().etag_len {
            ETAG_DECIMAL => Etag::decimal(number()),
            ETAG_HEX => Etag::hex(number()),
            ETAG_TAIL => Etag::decimal(tail_number(self.body()).expect("checked when the entry was built")),
            _ => Etag::Stored(stored),
        }
    }

    /// The body as stored: the JSON exactly as served for a plain entry; for
    /// a compressed one (see [`Entry::compression`]) the zstd frame. Use
    /// [`Entry::write_body`] or [`Entry::raw_body`] to serve it.
    pub fn body(&self) -> &[u8] {
        self.unpacked().2
    }

    /// (dictionary id, raw length, frame) of a compressed entry; (0, 0, body) of a plain one.
    fn unpacked(&self) -> (u32, usize, &[u8]) {
        let stored = self.stored_body();
        if !self.is_compressed() {
            return (0, 0, stored);
        }
        let (raw_len, at) = varint(stored, 0);
        let (dict, at) = varint(stored, at);
        (dict, raw_len as usize, &stored[at..])
    }

    fn stored_body(&self) -> &[u8] {
        &self.data()[usize::from(self.header().key_len) + self.etag_size()..]
    }

    pub fn is_compressed(&self) -> bool {
        self.header().flags & COMPRESSED != 0
    }

    /// For a compressed entry, the dictionary id and the uncompressed length.
    pub fn compression(&self) -> Option<(u32, usize)> {
        if !self.is_compressed() {
            return None;
        }
        let (dict, raw_len, _) = self.unpacked();
        Some((dict, raw_len))
    }

    /// Length of the JSON body as served (`Content-Length`).
    pub fn raw_len(&self) -> usize {
        self.compression().map_or_else(|| self.body().len(), |(_, len)| len)
    }

    /// Appends the JSON body as served to `out`, decompressing a compressed
    /// one straight into `out`'s spare capacity.
    pub fn write_body(&self, out: &mut Vec<u8>) -> Result<(), CompressError> {
        let (dict, raw_len, body) = self.unpacked();
        if self.is_compressed() {
            return decompress_into(dict, body, raw_len, out);
        }
        out.extend_from_slice(body);
        Ok(())
    }

    /// The JSON body as served, copied only when it was compressed.
    pub fn raw_body(&self) -> Result<Cow<'_, [u8]>, CompressError> {
        if !self.is_compressed() {
            return Ok(Cow::Borrowed(self.body()));
        }
        let mut out = Vec::new();
        self.write_body(&mut out)?;
        Ok(Cow::Owned(out))
    }

    /// Heap bytes this entry holds (for the per-store byte gauges).
    pub fn weight(&self) -> usize {
        HEADER + self.data_len()
    }

    /// Bytes this entry would hold with its body uncompressed.
    pub fn raw_weight(&self) -> usize {
        let etag_saved = if self.header().flags & ETAG_IN_RAW_BODY != 0 { self.etag_size() } else { 0 };
        HEADER + self.data_len() - self.stored_body().len() + self.raw_len() - etag_saved
    }
}

/// An entry's ETag as bytes: borrowed when kept as written, else formatted
/// on the stack.
pub enum Etag<'a> {
    Stored(&'a [u8]),
    Formatted { buf: [u8; 22], len: u8 },
}

impl Etag<'_> {
    fn decimal(mut n: u64) -> Etag<'static> {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Etag::quoted(&digits[at..])
    }

    fn hex(n: u64) -> Etag<'static> {
        let mut digits = [0u8; 16];
        for (i, d) in digits.iter_mut().enumerate() {
            *d = b"0123456789abcdef"[(n >> (60 - 4 * i)) as usize & 0xf];
        }
        Etag::quoted(&digits)
    }

    fn quoted(digits: &[u8]) -> Etag<'static> {
        let mut buf = [b'"'; 22];
        buf[1..=digits.len()].copy_from_slice(digits);
        Etag::Formatted { buf, len: digits.len() as u8 + 2 }
    }
}

impl std::ops::Deref for Etag<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Etag::Stored(bytes) => bytes,
            Etag::Formatted { buf, len } => &buf[..usize::from(*len)],
        }
    }
}

/// The decimal number right before a body's last byte `}`, when written
/// without leading zeros (so that formatting it gives the same digits).
fn tail_number(body: &[u8]) -> Option<u64> {
    let rest = body.strip_suffix(b"}")?;
    let digits = rest.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let digits = &rest[rest.len() - digits..];
    if digits.is_empty() || digits.len() > 20 || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// The number inside `"{decimal}"` or `"{16 hex digits}"` when writing it
/// back out gives the same bytes, so the compact form is lossless.
fn compact_etag(etag: &[u8]) -> Option<(u8, u64)> {
    let inner = etag.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let text = std::str::from_utf8(inner).ok()?;
    if inner.len() == 16 && inner.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Some((ETAG_HEX, u64::from_str_radix(text, 16).ok()?));
    }
    let leading_zero = inner.len() > 1 && inner[0] == b'0';
    if inner.is_empty() || leading_zero || !inner.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((ETAG_DECIMAL, text.parse().ok()?))
}

/// Writes `n` as a LEB128 varint at `buf[at..]`; returns the end.
fn put_varint(buf: &mut [u8], mut at: usize, mut n: u32) -> usize {
    while n >= 0x80 {
        buf[at] = n as u8 | 0x80;
        n >>= 7;
        at += 1;
    }
    buf[at] = n as u8;
    at + 1
}

/// Reads the LEB128 varint `put_varint` wrote at `buf[at..]`; returns it and its end.
fn varint(buf: &[u8], mut at: usize) -> (u32, usize) {
    let (mut n, mut shift) = (0u32, 0);
    loop {
        let b = buf[at];
        n |= u32::from(b & 0x7f) << shift;
        at += 1;
        if b < 0x80 || shift >= 28 {
            return (n, at);
        }
        shift += 7;
    }
}

/// Where entries live: per size class, a free list and the slab being carved.
mod slab {
    use std::alloc::{self, handle_alloc_error, Layout};
    use std::ptr::null_mut;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, MutexGuard, PoisonError};

    /// Sizes are rounded up to this; it is also every slot's alignment.
    pub const GRAIN: usize = 8;
    /// Largest size served from slabs; larger entries come from malloc.
    pub const MAX: usize = 1024;
    /// Bytes taken from the system at a time for one size class.
    const SLAB: usize = 32 * 1024;

    struct Class {
        /// Freed slots, each holding the address of the next.
        free: *mut u8,
        bump: *mut u8,
        end: *mut u8,
    }

    // SAFETY: the pointers are only used under the class's lock.
    unsafe impl Send for Class {}

    /// Stripes of size classes; a thread uses the one `STRIPE` gives it.
    const STRIPES: usize = 4;
    static CLASSES: [[Mutex<Class>; MAX / GRAIN]; STRIPES] =
        [const { [const { Mutex::new(Class { free: null_mut(), bump: null_mut(), end: null_mut() }) }; MAX / GRAIN] };
            STRIPES];

    static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }

    pub fn rounded(size: usize) -> usize {
        size.max(GRAIN).next_multiple_of(GRAIN)
    }

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, GRAIN).expect("an entry's size is bounded by its u32/u16/u8 lengths")
    }

    /// This thread's stripe (the first one while the thread is being torn down).
    fn stripe() -> usize {
        STRIPE.try_with(|s| *s).unwrap_or(0)
    }

    fn class(stripe: usize, size: usize) -> MutexGuard<'static, Class> {
        CLASSES[stripe][size / GRAIN - 1].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves another stripe's free slots of this size class to `mine`, if
    /// one has any and is not busy (`try_lock`: never waits, never deadlocks).
    fn steal(mine: &mut Class, stripe: usize, size: usize) {
        for other in (1..STRIPES).map(|i| (stripe + i) % STRIPES) {
            let Ok(mut theirs) = CLASSES[other][size / GRAIN - 1].try_lock() else { continue };
            if !theirs.free.is_null() {
                mine.free = std::mem::replace(&mut theirs.free, null_mut());
                return;
            }
        }
    }

    /// `size` bytes, 8-byte aligned, never null.
    ///
    /// # Safety
    /// Free it with [`free`] and the same size.
    pub unsafe fn alloc(size: usize) -> *mut u8 {
        let size = rounded(size);
        if size > MAX {
            // SAFETY: the size is non-zero.
            let p = unsafe { alloc::alloc(layout(size)) };
            if p.is_null() {
                handle_alloc_error(layout(size));
            }
            return p;
        }
        let stripe = stripe();
        let mut c = class(stripe, size);
        let left = |c: &Class| (c.end as usize) - (c.bump as usize);
        // Other stripes are looked at only when this one's slab is used up,
        // not on every allocation (their locks are other threads' cache lines).
        if c.free.is_null() && left(&c) < size {
            steal(&mut c, stripe, size);
        }
        if !c.free.is_null() {
            let p = c.free;
            // SAFETY: a free slot holds the next free slot's address.
            c.free = unsafe { p.cast::<*mut u8>().read() };
            return p;
        }
        if left(&c) < size {
            // SAFETY: the size is non-zero; the slab is never freed.
            let slab = unsafe { alloc::alloc(layout(SLAB)) };
            if slab.is_null() {
                handle_alloc_error(layout(SLAB));
            }
            // SAFETY: one past the end of the slab.
            (c.bump, c.end) = (slab, unsafe { slab.add(SLAB) });
        }
        let p = c.bump;
        // SAFETY: at least `size` bytes were left in the slab.
        c.bump = unsafe { p.add(size) };
        p
    }

    /// Gives back what [`alloc`] handed out.
    ///
    /// # Safety
    /// `p` came from [`alloc`] with this `size` and is not used again.
    pub unsafe fn free(p: *mut u8, size: usize) {
        let size = rounded(size);
        if size > MAX {
            // SAFETY: allocated by `alloc` above with this layout.
            unsafe { alloc::dealloc(p, layout(size)) };
            return;
        }
        let mut c = class(stripe(), size);
        // SAFETY: the slot is at least 8 bytes and 8-byte aligned, and ours now.
        unsafe { p.cast::<*mut u8>().write(c.free) };
        c.free = p;
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn slots_are_reused_by_size_class_and_big_ones_come_from_malloc() {
            // SAFETY: each pointer is written within its size, freed once with it and not used after.
            unsafe {
                let first: Vec<*mut u8> = (0..64).map(|_| alloc(1020)).collect();
                for p in &first {
                    assert_eq!(*p as usize % GRAIN, 0);
                    p.write_bytes(0xa5, 1020);
                    free(*p, 1020);
                }
                // The same class (1024 bytes) hands the freed slots out again (other tests may take a few).
                let again: Vec<*mut u8> = (0..64).map(|_| alloc(1017)).collect();
                assert!(again.iter().filter(|p| first.contains(p)).count() > 32);
                again.iter().for_each(|p| free(*p, 1017));
                let big = alloc(MAX + 1);
                big.write_bytes(1, MAX + 1);
                free(big, MAX + 1);
            }
            assert_eq!((rounded(1), rounded(12), rounded(17), rounded(1024)), (8, 16, 24, 1024));
        }
    }
}

impl Clone for Entry {
    fn clone(&self) -> Entry {
        // Relaxed is enough to take a new reference from an existing one (as
        // in `Arc`); overflowing the count would free a live entry, so abort.
        if self.header().refs.fetch_add(1, Ordering::Relaxed) == u32::MAX {
            std::process::abort();
        }
        Entry(self.0)
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if self.header().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Pairs with the Release above on the other holders' drops, so their
        // reads of the bytes happen before the memory is freed.
        fence(Ordering::Acquire);
        // SAFETY: this was the last reference; the size is the one allocated.
        unsafe { slab::free(self.0.as_ptr().cast::<u8>(), self.weight()) }
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.key() == other.key() && *self.etag() == *other.etag() && self.body() == other.body()
    }
}

impl Eq for Entry {}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("etag", &String::from_utf8_lossy(&self.etag()))
            .field("body_len", &self.body().len())
            .field("compression", &self.compression())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let v = StoredValue::new(br#"{"a":1}"#.to_vec(), Some(9));
        let e = Entry::new("acct-1", &v).unwrap();
        assert_eq!(e.key(), b"acct-1");
        assert_eq!(e.key_str(), "acct-1");
        assert_eq!(&*e.etag(), b"\"9\"");
        assert_eq!(e.body(), br#"{"a":1}"#);
        assert_eq!(e.weight(), HEADER + 6 + 8 + 7);
    }

    #[test]
    fn the_pointer_is_one_word_and_the_header_small() {
        assert_eq!(std::mem::size_of::<Entry>(), 8);
        assert_eq!(std::mem::size_of::<Option<Entry>>(), 8);
        assert_eq!(HEADER, 12);
    }

    #[test]
    fn empty_body_and_key() {
        let e = Entry::from_parts(b"", b"", b"").unwrap();
        assert!(e.key().is_empty() && e.etag().is_empty() && e.body().is_empty());
    }

    #[test]
    fn limits_are_errors_not_truncation() {
        let long = vec![b'k'; 65_536];
        let err = Entry::from_parts(&long, b"", b"").unwrap_err();
        assert_eq!((err.what, err.len), ("key", 65_536));
        assert!(Entry::from_parts(&long[..65_535], &[b'e'; 252], b"{}").is_ok());
        assert_eq!(Entry::from_parts(b"k", &[b'e'; 253], b"{}").unwrap_err().what, "ETag");
    }

    #[test]
    fn etags_come_back_byte_for_byte_whether_compacted_or_not() {
        let compact = [
            "\"0\"",
            "\"7\"",
            "\"1700000500042\"",
            "\"18446744073709551615\"",
            "\"00ff00ff00ff00ff\"",
            "\"ffffffffffffffff\"",
        ];
        let kept = [
            "\"007\"",
            "\"-5\"",
            "\"18446744073709551616\"",
            "\"00FF00FF00FF00FF\"",
            "W/\"1\"",
            "\"\"",
            "\"abc\"",
            "x",
            "",
        ];
        for etag in compact.iter().chain(&kept) {
            let e = Entry::from_parts(b"key", etag.as_bytes(), b"{\"b\":2}").unwrap();
            assert_eq!((e.key(), &*e.etag(), e.body()), (&b"key"[..], etag.as_bytes(), &b"{\"b\":2}"[..]), "{etag}");
            let size = if compact.contains(etag) { 8 } else { etag.len() };
            assert_eq!(e.weight(), HEADER + 3 + size + 7, "{etag}");
        }
        let hashed = StoredValue::new(b"{}".to_vec(), None);
        assert_eq!(&*Entry::new("k", &hashed).unwrap().etag(), &hashed.etag[..]);
    }

    #[test]
    fn a_compressed_entry_keeps_its_length_dictionary_and_frame() {
        let cases = [(0, 0), (127, 1), (128, 127), (16_383, 128), (16_384, 70_000), (u32::MAX as usize, u32::MAX)];
        for (raw_len, dict) in cases {
            let e = Entry::compressed(b"key", b"\"5\"", dict, raw_len, b"\x01frame").unwrap();
            assert_eq!((e.compression(), e.body(), e.key()), (Some((dict, raw_len)), &b"\x01frame"[..], &b"key"[..]));
            assert_eq!((e.raw_len(), &*e.etag()), (raw_len, &b"\"5\""[..]));
        }
        let small = Entry::compressed(b"k", b"\"1\"", 3, 180, b"f").unwrap();
        assert_eq!(small.weight(), HEADER + 1 + 8 + 3 + 1, "two varints of 2 and 1 bytes");
    }

    #[test]
    fn an_etag_quoting_the_number_that_ends_the_body_takes_no_bytes() {
        let body = br#"{"accountId":"a","updatedAt":1704067200001}"#;
        let e = Entry::from_parts(b"key", b"\"1704067200001\"", body).unwrap();
        assert_eq!((&*e.etag(), e.body(), e.weight()), (&b"\"1704067200001\""[..], &body[..], HEADER + 3 + body.len()));
        let cases: [(&[u8], &[u8]); 7] = [
            (b"\"1704067200002\"", body),
            (b"\"1\"", br#"{"n":01}"#),
            (b"\"0\"", br#"{"n":0}"#),
            (b"\"5\"", br#"{"n":5} "#),
            (b"\"5\"", br#"["n",5]"#),
            (b"\"18446744073709551615\"", br#"{"n":18446744073709551615}"#),
            (b"\"5\"", b"}"),
        ];
        for (etag, body) in cases {
            let e = Entry::from_parts(b"k", etag, body).unwrap();
            assert_eq!((&*e.etag(), e.body()), (etag, body), "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(tail_number(br#"{"n":99999999999999999999}"#), None, "above u64");
        assert_eq!(Entry::from_parts(b"k", b"\"0\"", br#"{"n":0}"#).unwrap().weight(), HEADER + 1 + 7);
    }

    #[test]
    fn equality_respects_the_boundaries_between_parts() {
        let a = Entry::from_parts(b"ab", b"c", b"d").unwrap();
        let b = Entry::from_parts(b"a", b"bc", b"d").unwrap();
        assert_ne!(a, b);
        assert_eq!(a, Entry::from_parts(b"ab", b"c", b"d").unwrap());
    }

    #[test]
    fn clones_share_the_bytes_across_threads_and_the_last_drop_frees() {
        let e = Entry::from_parts(b"key", b"\"1\"", b"{\"x\":1}").unwrap();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let mine = e.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        let again = mine.clone();
                        assert_eq!(again.body(), b"{\"x\":1}");
                    }
                    mine
                })
            })
            .collect();
        let back: Vec<Entry> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(std::ptr::eq(back[0].body().as_ptr(), e.body().as_ptr()));
        assert_eq!(e.header().refs.load(Ordering::Relaxed), 5);
        drop(back);
        assert_eq!(e.header().refs.load(Ordering::Relaxed), 1);
    }
}
