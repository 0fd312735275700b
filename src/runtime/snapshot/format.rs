//! The bytes of one shard's snapshot file, and reading them back.
//!
//! ```text
//! magic "PCSNAPS\0" | version u32 | fingerprint u64 | generation u64 | shard u32 | shards u32
//! positions: count u32, then per partition: topic (u16 length + bytes), partition i32, next offset i64
//! stores: count u32, then per store: store index u32, entries u64,
//!         then per entry: key length u16, ETag length u8, body length u32, key, ETag, body
//! end marker "PCEND\0\0\0" | crc32 (u32) of every byte before it
//! ```
//!
//! Integers are little-endian. Entries are written as a GET serves them
//! (key, ETag with its quotes, JSON body), so the file does not depend on how
//! an entry lays itself out in memory. A shard writes its entries in key
//! order, so that loading appends each to the ordered index after one
//! comparison; any order loads. Reading trusts nothing: every length
//! is bounded by the bytes actually present (a huge claimed length cannot
//! allocate more than the file holds), and the store is handed out only once
//! the checksum over the whole file matches.

use crate::store::entry::Entry;
use crate::store::memory::MemoryStore;
use std::io::Read;

pub const MAGIC: &[u8; 8] = b"PCSNAPS\0";
pub const END: &[u8; 8] = b"PCEND\0\0\0";
pub const VERSION: u32 = 1;

/// What a shard file says about itself, before its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    pub fingerprint: u64,
    pub generation: u64,
    pub shard: u32,
    pub shards: u32,
    /// (topic, partition, next offset) the entries include.
    pub positions: Vec<(String, i32, i64)>,
}

/// Why a snapshot file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("cannot read the snapshot file: {0}")]
    Io(#[from] std::io::Error),
    #[error("the file ends early (torn write?)")]
    Truncated,
    #[error("not a push-cache snapshot (bad magic bytes)")]
    Magic,
    #[error("snapshot format version {0}, this build reads version {VERSION}")]
    Version(u32),
    #[error("checksum mismatch: the file is corrupt")]
    Checksum,
    #[error("malformed snapshot: {0}")]
    Malformed(&'static str),
}

/// Builds a shard file in pieces; `take` hands out what is ready to write.
pub struct Encoder {
    buf: Vec<u8>,
    crc: crc32fast::Hasher,
}

impl Encoder {
    pub fn new(header: &FileHeader, stores: u32) -> Encoder {
        let mut e = Encoder { buf: Vec::with_capacity(1 << 20), crc: crc32fast::Hasher::new() };
        e.buf.extend_from_slice(MAGIC);
        e.buf.extend_from_slice(&VERSION.to_le_bytes());
        e.buf.extend_from_slice(&header.fingerprint.to_le_bytes());
        e.buf.extend_from_slice(&header.generation.to_le_bytes());
        e.buf.extend_from_slice(&header.shard.to_le_bytes());
        e.buf.extend_from_slice(&header.shards.to_le_bytes());
        e.buf.extend_from_slice(&(header.positions.len() as u32).to_le_bytes());
        for (topic, partition, next) in &header.positions {
            let topic = &topic.as_bytes()[..topic.len().min(u16::MAX as usize)];
            e.buf.extend_from_slice(&(topic.len() as u16).to_le_bytes());
            e.buf.extend_from_slice(topic);
            e.buf.extend_from_slice(&partition.to_le_bytes());
            e.buf.extend_from_slice(&next.to_le_bytes());
        }
        e.buf.extend_from_slice(&stores.to_le_bytes());
        e
    }

    /// Starts the entries of one store.
    pub fn store(&mut self, index: u32, entries: u64) {
        self.buf.extend_from_slice(&index.to_le_bytes());
        self.buf.extend_from_slice(&entries.to_le_bytes());
    }

    /// One entry, its body as the API serves it: a compressed store's
    /// bodies are written plain (and compressed again when loaded), so a
    /// snapshot never depends on a dictionary.
    pub fn entry(&mut self, e: &Entry) -> Result<(), String> {
        let body = e.raw_body().map_err(|why| format!("cannot read back key {:?}: {why}", e.key_str()))?;
        let (key, etag, body) = (e.key(), e.etag(), &body[..]);
        self.buf.extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.buf.push(etag.len() as u8);
        self.buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(&etag);
        self.buf.extend_from_slice(body);
        Ok(())
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The bytes encoded since the last call, checksummed.
    pub fn take(&mut self) -> Vec<u8> {
        self.crc.update(&self.buf);
        std::mem::replace(&mut self.buf, Vec::with_capacity(1 << 20))
    }

    /// The last bytes: the end marker and the checksum; returns them and the checksum.
    pub fn finish(mut self) -> (Vec<u8>, u32) {
        self.buf.extend_from_slice(END);
        self.crc.update(&self.buf);
        let crc = self.crc.finalize();
        self.buf.extend_from_slice(&crc.to_le_bytes());
        (self.buf, crc)
    }
}

/// Checks that the last 4 of `len` bytes are the crc32 of the bytes before
/// them; returns the checksum. Reads in 1 MiB pieces, so a file of any size
/// is checked in constant memory before a byte of it is parsed.
pub fn verify(mut reader: impl Read, len: u64) -> Result<u32, FormatError> {
    let body = len.checked_sub(4).ok_or(FormatError::Truncated)?;
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; body.min(1 << 20) as usize];
    let mut left = body;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        reader.read_exact(&mut buf[..n]).map_err(eof)?;
        crc.update(&buf[..n]);
        left -= n as u64;
    }
    let mut stored = [0u8; 4];
    reader.read_exact(&mut stored).map_err(eof)?;
    let expected = crc.finalize();
    if u32::from_le_bytes(stored) != expected {
        return Err(FormatError::Checksum);
    }
    if reader.read(&mut [0u8; 1])? != 0 {
        return Err(FormatError::Malformed("bytes after the checksum"));
    }
    Ok(expected)
}

/// A reader that knows how many bytes are left, so no claimed length can
/// make it allocate more than the file holds.
struct Bounded<R> {
    inner: R,
    left: u64,
    scratch: Vec<u8>,
}

impl<R: Read> Bounded<R> {
    fn exact<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut b = [0u8; N];
        self.take(N)?;
        self.inner.read_exact(&mut b).map_err(eof)?;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<(), FormatError> {
        self.left = self.left.checked_sub(n as u64).ok_or(FormatError::Truncated)?;
        Ok(())
    }

    fn u16(&mut self) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.exact()?))
    }

    fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.exact()?))
    }

    fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.exact()?))
    }

    /// Reads `len` bytes into the scratch buffer.
    fn bytes(&mut self, len: usize) -> Result<(), FormatError> {
        self.take(len)?;
        self.scratch.resize(len, 0);
        self.inner.read_exact(&mut self.scratch).map_err(eof)
    }
}

fn eof(e: std::io::Error) -> FormatError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        FormatError::Truncated
    } else {
        FormatError::Io(e)
    }
}

/// A whole shard file, read and checked.
pub struct ShardFile {
    pub header: FileHeader,
    /// (store index, its entries) in file order.
    pub stores: Vec<(usize, MemoryStore)>,
    /// The checksum, verified.
    pub crc: u32,
}

/// Reads a shard file held in memory: `verify`, then `parse`.
pub fn read(bytes: &[u8], accepts: impl Fn(usize) -> bool) -> Result<ShardFile, FormatError> {
    let crc = verify(bytes, bytes.len() as u64)?;
    parse(bytes, bytes.len() as u64, crc, accepts)
}

/// Parses a shard file of `len` bytes whose checksum `verify` accepted.
/// `accepts(index)` says which store indexes may appear (the in-memory
/// stores of this configuration).
pub fn parse(reader: impl Read, len: u64, crc: u32, accepts: impl Fn(usize) -> bool) -> Result<ShardFile, FormatError> {
    let mut r = Bounded { inner: reader, left: len, scratch: Vec::new() };
    let header = read_header(&mut r)?;
    let count = r.u32()?;
    let mut stores: Vec<(usize, MemoryStore)> = Vec::new();
    for _ in 0..count {
        let index = r.u32()? as usize;
        if !accepts(index) || stores.iter().any(|(i, _)| *i == index) {
            return Err(FormatError::Malformed("a store index this configuration does not keep in memory"));
        }
        let entries = r.u64()?;
        let mut store = MemoryStore::default();
        // Room for every entry the file can hold (7 bytes at least each), not
        // for whatever count it claims.
        store.reserve(entries.min(r.left / 7) as usize);
        for _ in 0..entries {
            store.upsert(read_entry(&mut r)?);
        }
        stores.push((index, store));
    }
    if &r.exact::<8>()? != END {
        return Err(FormatError::Malformed("no end marker after the last store"));
    }
    if r.left != 4 {
        return Err(FormatError::Malformed("bytes between the end marker and the checksum"));
    }
    Ok(ShardFile { header, stores, crc })
}

fn read_header(r: &mut Bounded<impl Read>) -> Result<FileHeader, FormatError> {
    if &r.exact::<8>()? != MAGIC {
        return Err(FormatError::Magic);
    }
    let version = r.u32()?;
    if version != VERSION {
        return Err(FormatError::Version(version));
    }
    let (fingerprint, generation, shard, shards) = (r.u64()?, r.u64()?, r.u32()?, r.u32()?);
    let count = r.u32()?;
    let mut positions = Vec::new();
    for _ in 0..count {
        let len = r.u16()? as usize;
        r.bytes(len)?;
        let topic =
            String::from_utf8(r.scratch.clone()).map_err(|_| FormatError::Malformed("a topic name is not UTF-8"))?;
        let partition = i32::from_le_bytes(r.exact()?);
        let next = i64::from_le_bytes(r.exact()?);
        positions.push((topic, partition, next));
    }
    Ok(FileHeader { fingerprint, generation, shard, shards, positions })
}

fn read_entry(r: &mut Bounded<impl Read>) -> Result<Entry, FormatError> {
    let key_len = r.u16()? as usize;
    let etag_len = r.exact::<1>()?[0] as usize;
    let body_len = r.u32()? as usize;
    r.bytes(key_len + etag_len + body_len)?;
    let (key, rest) = r.scratch.split_at(key_len);
    let (etag, body) = rest.split_at(etag_len);
    if std::str::from_utf8(key).is_err() {
        return Err(FormatError::Malformed("a key is not UTF-8"));
    }
    Entry::from_parts(key, etag, body).map_err(|_| FormatError::Malformed("an entry too long to cache"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(entries: &[(&str, &str, &str)]) -> Vec<u8> {
        let header =
            FileHeader { fingerprint: 7, generation: 3, shard: 1, shards: 2, positions: vec![("t".into(), 0, 42)] };
        let mut e = Encoder::new(&header, 1);
        e.store(0, entries.len() as u64);
        for (k, etag, body) in entries {
            e.entry(&Entry::from_parts(k.as_bytes(), etag.as_bytes(), body.as_bytes()).unwrap()).unwrap();
        }
        let mut out = e.take();
        out.extend(e.finish().0);
        out
    }

    #[test]
    fn round_trip_keeps_every_byte() {
        let entries =
            [("a", "\"1700000000000\"", "{\"a\":1}"), ("b", "\"00ff00ff00ff00ff\"", "{}"), ("c", "W/\"x\"", "[]")];
        let f = read(&file(&entries)[..], |i| i == 0).unwrap();
        assert_eq!(f.header.positions, vec![("t".to_string(), 0, 42)]);
        assert_eq!((f.header.fingerprint, f.header.generation, f.header.shard, f.header.shards), (7, 3, 1, 2));
        let store = &f.stores[0].1;
        assert_eq!(store.len(), 3);
        for (k, etag, body) in entries {
            let e = store.get(k.as_bytes()).unwrap();
            assert_eq!((&*e.etag(), e.body()), (etag.as_bytes(), body.as_bytes()));
        }
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let bytes = file(&[("key-1", "\"1\"", "{\"name\":\"x\"}"), ("key-2", "\"2\"", "{}")]);
        for len in 0..bytes.len() {
            assert!(read(&bytes[..len], |_| true).is_err(), "truncated to {len}");
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            assert!(read(&bad[..], |_| true).is_err(), "flipped byte {at}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(read(&longer[..], |_| true).is_err());
    }

    #[test]
    fn a_file_made_from_the_documented_layout_loads() {
        // Written by a few lines of Python from the layout in this module's doc.
        let seed = include_bytes!("../../../fuzz/corpus/snapshot_load/shard_two_entries");
        let f = read(&seed[1..], |i| i == 0).unwrap();
        assert_eq!(f.header.positions, vec![("customers".to_string(), 0, 42), ("customers".to_string(), 1, 7)]);
        assert_eq!(f.stores[0].1.get(b"k2").unwrap().body(), b"{}");
        let torn = include_bytes!("../../../fuzz/corpus/snapshot_load/shard_torn");
        assert!(matches!(read(&torn[1..], |_| true), Err(FormatError::Checksum)));
    }

    #[test]
    fn a_store_this_config_does_not_keep_is_refused() {
        assert!(matches!(read(&file(&[])[..], |i| i == 1), Err(FormatError::Malformed(_))));
    }

    #[test]
    fn a_huge_claimed_length_allocates_nothing_big() {
        let mut bytes = file(&[("k", "\"1\"", "{}")]);
        let at = bytes.len() - 8 - 4 - (1 + 3 + 2) - 4;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(read(&bytes[..], |_| true), Err(FormatError::Checksum)));
        // Even with a checksum that matches, the length is bounded by the file.
        let body = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(read(&bytes[..], |_| true), Err(FormatError::Truncated)));
    }
}
