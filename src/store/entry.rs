//! One cached key as a shard keeps it: key, ETag and JSON body in a single
//! reference-counted allocation behind a one-word pointer.
//!
//! Why not `Arc<[u8]>`: at a million keys the per-entry overhead is what
//! separates resident memory from the raw bytes. `Arc<[u8]>` is a two-word
//! pointer (16 bytes in every table slot) to a 16-byte pair of counters; this
//! entry is an 8-byte pointer to a 12-byte header (one 32-bit count, the three
//! lengths). A shard can still hand an entry to another shard (a forwarded
//! GET) by bumping the count instead of copying the body, so the count is
//! atomic; it is touched once per forward, never on a local hit.
//!
//! The two ETag forms `StoredValue` makes (`"{updatedAt}"` and a quoted
//! 16-digit hex hash) are kept as the 8-byte number they quote and written
//! back out on each read: 7 to 10 bytes less per key for a few nanoseconds of
//! formatting. Any other ETag is kept as written.

use super::value::StoredValue;
use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, Ordering};

/// The header in front of `[key][etag][body]`.
#[repr(C)]
struct Header {
    refs: AtomicU32,
    body_len: u32,
    key_len: u16,
    etag_len: u8,
}

const HEADER: usize = std::mem::size_of::<Header>();
const ALIGN: usize = std::mem::align_of::<Header>();

/// `etag_len` values that mean "8-byte number" rather than a length.
const ETAG_DECIMAL: u8 = u8::MAX;
const ETAG_HEX: u8 = u8::MAX - 1;
const ETAG_MAX_RAW: usize = ETAG_HEX as usize - 1;

/// A shared, immutable cached entry.
pub struct Entry(NonNull<Header>);

// SAFETY: the bytes behind the pointer are never written after `from_parts`
// returns, and the reference count is atomic, like `Arc<[u8]>`.
unsafe impl Send for Entry {}
unsafe impl Sync for Entry {}

/// A key, ETag or body too long for the entry layout.
#[derive(Debug, thiserror::Error)]
#[error("{what} of {len} bytes is too long to cache (limits: keys 65 535 bytes, ETags 253, bodies 4 GiB)")]
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
        let number;
        let (etag_len, etag) = match compact_etag(etag) {
            Some((kind, n)) => {
                number = n.to_le_bytes();
                (kind, &number[..])
            }
            None if etag.len() > ETAG_MAX_RAW => return Err(TooLong { what: "ETag", len: etag.len() }),
            None => (etag.len() as u8, etag),
        };
        let header = Header {
            refs: AtomicU32::new(1),
            body_len: fits("body", body.len())?,
            key_len: fits("key", key.len())?,
            etag_len,
        };
        let layout = layout(HEADER + key.len() + etag.len() + body.len());
        // SAFETY: the layout is non-zero (it holds the header); every byte of
        // it is written below before the entry is handed out.
        unsafe {
            let raw = alloc(layout);
            let Some(ptr) = NonNull::new(raw.cast::<Header>()) else { handle_alloc_error(layout) };
            ptr.as_ptr().write(header);
            let mut at = raw.add(HEADER);
            for part in [key, etag, body] {
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
            _ => Etag::Stored(stored),
        }
    }

    /// The JSON body, exactly as served.
    pub fn body(&self) -> &[u8] {
        &self.data()[usize::from(self.header().key_len) + self.etag_size()..]
    }

    /// Heap bytes this entry holds (for the per-store byte gauges).
    pub fn weight(&self) -> usize {
        HEADER + self.data_len()
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

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, ALIGN).expect("an entry's size is bounded by its u32/u16/u8 lengths")
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
        let layout = layout(self.weight());
        // SAFETY: this was the last reference; the layout is the one used to allocate.
        unsafe { dealloc(self.0.as_ptr().cast::<u8>(), layout) }
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
        assert!(Entry::from_parts(&long[..65_535], &[b'e'; 253], b"{}").is_ok());
        assert_eq!(Entry::from_parts(b"k", &[b'e'; 254], b"{}").unwrap_err().what, "ETag");
    }

    #[test]
    fn etags_come_back_byte_for_byte_whether_compacted_or_not() {
        let compact = ["\"0\"", "\"7\"", "\"1700000500042\"", "\"18446744073709551615\"", "\"00ff00ff00ff00ff\"", "\"ffffffffffffffff\""];
        let kept = ["\"007\"", "\"-5\"", "\"18446744073709551616\"", "\"00FF00FF00FF00FF\"", "W/\"1\"", "\"\"", "\"abc\"", "x", ""];
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
