//! The bytes of one shard's snapshot file, and reading them back.
//!
//! ```text
//! magic "PCSNAPS\0" | version u32 | fingerprint u64 | generation u64 | shard u32 | shards u32
//! positions: count u32, then per partition: topic (u16 length + bytes), partition i32, next offset i64
//! stores: count u32, then per store:
//!   store index u32, compressed u8 (1: a `compression: zstd` store)
//!   dictionaries: count u32, then per dictionary: id u32, trained ratio f64, length u32, bytes
//!   current dictionary id u32 (0: none)
//!   entries u64, then per entry: key length u16, ETag length u8, kind u8, body length u32, key, ETag, body
//!     kind 0: the body is the JSON as served
//!     kind 1: the body is dictionary id u32, JSON length u32, then the zstd frame
//! end marker "PCEND\0\0\0" | crc32 (u32) of every byte before it
//! ```
//!
//! Integers and floats are little-endian. Plain entries are written as a GET
//! serves them (key, ETag with its quotes, JSON body). A compressed store's
//! entries keep their zstd frames and the file carries the dictionaries
//! they were compressed with, so a warm start neither recompresses nor
//! retrains: each dictionary is registered again under a new id, each frame
//! is decompressed once to check it, and the store goes on compressing with
//! the dictionary that was current. A shard writes its entries in key
//! order, so that loading appends each to the ordered index after one
//! comparison; any order loads. Reading trusts nothing: every length is
//! bounded by the bytes actually present (a huge claimed length cannot
//! allocate more than the file holds), and the store is handed out only once
//! the checksum over the whole file matches.

use crate::store::compress::{decompress_into, Compressor, Dictionary};
use crate::store::entry::Entry;
use crate::store::memory::MemoryStore;
use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

pub const MAGIC: &[u8; 8] = b"PCSNAPS\0";
pub const END: &[u8; 8] = b"PCEND\0\0\0";
pub const VERSION: u32 = 2;
/// The largest JSON body a compressed entry may claim (as the decoders' cap).
const MAX_RAW_BODY: u32 = 16 << 20;
const PLAIN: u8 = 0;
const COMPRESSED: u8 = 1;

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

    /// Starts one store: `dicts` (with the current one's id) for a
    /// compressed store, then `entries` entries.
    pub fn store(&mut self, index: u32, kept: Option<&(Vec<Arc<Dictionary>>, Option<u32>)>, entries: u64) {
        self.buf.extend_from_slice(&index.to_le_bytes());
        self.buf.push(u8::from(kept.is_some()));
        let (dicts, current) = kept.map_or((&[][..], None), |(d, c)| (&d[..], *c));
        self.buf.extend_from_slice(&(dicts.len() as u32).to_le_bytes());
        for dict in dicts {
            self.buf.extend_from_slice(&dict.id.to_le_bytes());
            self.buf.extend_from_slice(&dict.trained_ratio().to_le_bytes());
            self.buf.extend_from_slice(&(dict.content().len() as u32).to_le_bytes());
            self.buf.extend_from_slice(dict.content());
        }
        self.buf.extend_from_slice(&current.unwrap_or(0).to_le_bytes());
        self.buf.extend_from_slice(&entries.to_le_bytes());
    }

    /// One entry, its body as stored: the JSON, or the zstd frame with its
    /// dictionary's id and the JSON's length.
    pub fn entry(&mut self, e: &Entry) {
        let (key, etag, body) = (e.key(), e.etag(), e.body());
        let compression = e.compression();
        let prefix = if compression.is_some() { 8 } else { 0 };
        self.buf.extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.buf.push(etag.len() as u8);
        self.buf.push(if compression.is_some() { COMPRESSED } else { PLAIN });
        self.buf.extend_from_slice(&((prefix + body.len()) as u32).to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(&etag);
        if let Some((dict, raw_len)) = compression {
            self.buf.extend_from_slice(&dict.to_le_bytes());
            self.buf.extend_from_slice(&(raw_len as u32).to_le_bytes());
        }
        self.buf.extend_from_slice(body);
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
        stores.push((index, read_store(&mut r)?));
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

/// One store's section after its index: its dictionaries and entries.
fn read_store(r: &mut Bounded<impl Read>) -> Result<MemoryStore, FormatError> {
    let compressed = match r.exact::<1>()?[0] {
        0 => false,
        1 => true,
        _ => return Err(FormatError::Malformed("a store is neither plain nor compressed")),
    };
    let dicts = read_dictionaries(r)?;
    let current = r.u32()?;
    if !compressed && (!dicts.is_empty() || current != 0) {
        return Err(FormatError::Malformed("dictionaries in a plain store"));
    }
    let current = match current {
        0 => None,
        id => Some(dicts.get(&id).ok_or(FormatError::Malformed("the current dictionary is not in the file"))?.id),
    };
    let mut store = match compressed {
        true => MemoryStore::resumed(Compressor::resume(dicts.values().cloned().collect(), current)),
        false => MemoryStore::default(),
    };
    let entries = r.u64()?;
    // Room for every entry the file can hold (8 bytes at least each), not
    // for whatever count it claims.
    store.reserve(entries.min(r.left / 8) as usize);
    let mut raw = Vec::new();
    for _ in 0..entries {
        store.upsert(read_entry(r, &dicts, &mut raw)?);
    }
    store.drop_unused_dictionaries();
    Ok(store)
}

/// A store's dictionaries, each registered again, by the id the file gives it.
fn read_dictionaries(r: &mut Bounded<impl Read>) -> Result<HashMap<u32, Arc<Dictionary>>, FormatError> {
    let count = r.u32()?;
    let mut dicts = HashMap::new();
    for _ in 0..count {
        let id = r.u32()?;
        let ratio = f64::from_le_bytes(r.exact()?);
        let len = r.u32()? as usize;
        r.bytes(len)?;
        if id == 0 || !ratio.is_finite() || dicts.contains_key(&id) {
            return Err(FormatError::Malformed("a dictionary with a bad id or ratio"));
        }
        dicts.insert(id, Dictionary::restore(&r.scratch, ratio));
    }
    Ok(dicts)
}

fn read_entry(
    r: &mut Bounded<impl Read>,
    dicts: &HashMap<u32, Arc<Dictionary>>,
    raw: &mut Vec<u8>,
) -> Result<Entry, FormatError> {
    let key_len = r.u16()? as usize;
    let etag_len = r.exact::<1>()?[0] as usize;
    let kind = r.exact::<1>()?[0];
    let body_len = r.u32()? as usize;
    r.bytes(key_len + etag_len + body_len)?;
    let (key, rest) = r.scratch.split_at(key_len);
    let (etag, body) = rest.split_at(etag_len);
    if std::str::from_utf8(key).is_err() {
        return Err(FormatError::Malformed("a key is not UTF-8"));
    }
    let too_long = |_| FormatError::Malformed("an entry too long to cache");
    match kind {
        PLAIN => Entry::from_parts(key, etag, body).map_err(too_long),
        COMPRESSED => {
            let bad = FormatError::Malformed("a compressed body that does not decompress to its length");
            let (head, frame) =
                body.split_first_chunk::<8>().ok_or(FormatError::Malformed("a short compressed body"))?;
            let dict = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
            let raw_len = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
            let dict = dicts.get(&dict).ok_or(FormatError::Malformed("an entry's dictionary is not in the file"))?;
            if raw_len > MAX_RAW_BODY {
                return Err(bad);
            }
            raw.clear();
            decompress_into(dict.id, frame, raw_len as usize, raw).map_err(|_| bad)?;
            if raw.len() != raw_len as usize {
                return Err(FormatError::Malformed("a compressed body that does not decompress to its length"));
            }
            Entry::compressed_raw(key, etag, dict.id, raw, frame).map_err(too_long)
        }
        _ => Err(FormatError::Malformed("an entry of unknown kind")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(entries: &[(&str, &str, &str)]) -> Vec<u8> {
        let header =
            FileHeader { fingerprint: 7, generation: 3, shard: 1, shards: 2, positions: vec![("t".into(), 0, 42)] };
        let mut e = Encoder::new(&header, 1);
        e.store(0, None, entries.len() as u64);
        for (k, etag, body) in entries {
            e.entry(&Entry::from_parts(k.as_bytes(), etag.as_bytes(), body.as_bytes()).unwrap());
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

    /// A compressed store comes back with its frames and dictionaries:
    /// every body and ETag as before, nothing recompressed or retrained,
    /// and new bodies compressed with the dictionary that was current.
    #[test]
    fn a_compressed_store_round_trips_with_its_dictionaries() {
        let customer = |i: usize| {
            format!(
                r#"{{"accountId":"acct-{i:08}","name":"Customer {i}","address":"{i} Long Street","updatedAt":{}}}"#,
                1_700_000_000_000u64 + i as u64
            )
        };
        let mut store = MemoryStore::compressed();
        for i in 0..3_000 {
            let body = customer(i);
            let etag = format!("\"{}\"", 1_700_000_000_000u64 + i as u64);
            store.upsert(Entry::from_parts(format!("k{i:05}").as_bytes(), etag.as_bytes(), body.as_bytes()).unwrap());
        }
        store.upsert(Entry::from_parts(b"plain", b"W/\"x\"", b"{}").unwrap());
        store.settle();
        let kept = store.kept_dictionaries().unwrap();
        assert_eq!(kept.0.len(), 1);
        let header = FileHeader { fingerprint: 1, generation: 1, shard: 0, shards: 1, positions: vec![] };
        let mut e = Encoder::new(&header, 1);
        e.store(0, Some(&kept), store.len() as u64);
        let mut entries: Vec<&Entry> = store.iter().collect();
        entries.sort_by_key(|e| (e.is_compressed(), e.key().to_vec()));
        let mut compressed = 0;
        for entry in &entries {
            compressed += usize::from(entry.is_compressed());
            e.entry(entry);
        }
        let last = entries.last().unwrap();
        assert!(compressed > 2_900, "{compressed} compressed");
        let mut bytes = e.take();
        bytes.extend(e.finish().0);
        let file = read(&bytes[..], |i| i == 0).unwrap();
        let mut loaded = file.stores.into_iter().next().unwrap().1;
        assert!(loaded.is_compressed());
        assert_eq!(loaded.len(), store.len());
        for entry in store.iter() {
            let back = loaded.get(entry.key()).unwrap();
            assert_eq!(back.is_compressed(), entry.is_compressed());
            assert_eq!((&*back.etag(), back.raw_body().unwrap()), (&*entry.etag(), entry.raw_body().unwrap()));
        }
        assert_eq!(loaded.dictionaries(), (0, 1), "no training after the load; the one dictionary kept");
        loaded.upsert(Entry::from_parts(b"new", b"\"1\"", customer(9_999).as_bytes()).unwrap());
        assert!(loaded.get(b"new").unwrap().is_compressed(), "new bodies use the current dictionary");
        // A frame that does not decompress to its stated length is refused,
        // even under a valid checksum: the last entry's length, one more.
        let mut bad = bytes.clone();
        let at = bad.len() - 8 - 4 - last.body().len() - 4;
        let raw_len = u32::from_le_bytes(bad[at..at + 4].try_into().unwrap());
        assert_eq!(raw_len as usize, last.raw_len());
        bad[at..at + 4].copy_from_slice(&(raw_len + 1).to_le_bytes());
        let body = bad.len() - 4;
        let crc = crc32fast::hash(&bad[..body]);
        bad[body..].copy_from_slice(&crc.to_le_bytes());
        assert!(read(&bad[..], |i| i == 0).is_err());
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
