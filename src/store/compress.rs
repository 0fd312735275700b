//! zstd dictionary compression of cached bodies: the dictionaries, the
//! per-store policy that trains them, and the decoder the read path uses.
//!
//! Cached JSON bodies are small (hundreds of bytes) and alike; compressed one
//! by one they barely shrink, but with a dictionary trained on the store's own
//! records they shrink several times. Each compressing store (one per shard)
//! keeps bodies uncompressed until it has a sample, trains a dictionary on a
//! helper thread (training takes tens of milliseconds, too long for a shard),
//! then compresses every new body with it and the sampled ones in small slices.
//! When the bodies drift and the ratio of recent records grows worse than at
//! training time by [`RETRAIN_FACTOR`], it samples and trains again; new bodies
//! use the new dictionary and old ones keep theirs.
//!
//! Dictionaries are immutable once trained and live in one process-wide
//! registry under a unique id, which compressed entries carry. Any thread can
//! decode any entry: a shard answering a GET forwarded from another shard
//! receives the entry itself (a reference-count bump), so the requester must be
//! able to find the dictionary without asking the owner again. Each thread
//! caches the dictionaries it has used and keeps one reused decoding context,
//! so a GET allocates nothing. A dictionary no entry uses any more leaves the
//! registry.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use zstd::zstd_safe::{CCtx, CDict, CParameter, DCtx, DDict, WriteBuf};

/// Bodies (or bytes of bodies, whichever comes first) a dictionary is trained on.
pub const SAMPLE_RECORDS: usize = 2_000;
pub const SAMPLE_BYTES: usize = 1 << 20;
/// Dictionary size. On the populate tool's customers (175-byte bodies) every
/// size from 4 to 110 KiB compressed them to 0.30x (`examples/compression_ratio.rs`):
/// 16 KiB is as good and small.
pub const DICT_SIZE: usize = 16 * 1024;
/// zstd level for bodies and the dictionary's prepared tables.
pub const LEVEL: i32 = 3;
/// Records over which the running ratio is compared with the training ratio.
pub const WINDOW: usize = 10_000;
/// How much worse the running ratio may get before a new dictionary is trained.
pub const RETRAIN_FACTOR: f64 = 1.5;
/// Sampled bodies compressed after each write once a dictionary is ready
/// (about 5 us each, so a slice stays well under a millisecond).
pub const BACKLOG_SLICE: usize = 32;

/// Why a body could not be compressed or read back.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("zstd dictionary {0} is not loaded; the entry cannot be read (report this as a bug)")]
    UnknownDictionary(u32),
    #[error("zstd failed: {0}; the entry is damaged (report this as a bug)")]
    Zstd(&'static str),
    #[error("training a zstd dictionary failed: {0}; bodies stay uncompressed until the next sample")]
    Training(String),
}

/// A trained dictionary, prepared for both directions.
pub struct Dictionary {
    pub id: u32,
    cdict: CDict<'static>,
    ddict: DDict<'static>,
    /// Compressed/raw ratio of the training sample, for drift detection.
    trained_ratio: f64,
    /// The dictionary as trained, for snapshots.
    content: Box<[u8]>,
}

impl Dictionary {
    /// A dictionary read back from a snapshot, registered under a new id
    /// (ids are the process's own; the entries that use it are rewritten).
    pub fn restore(content: &[u8], trained_ratio: f64) -> Arc<Dictionary> {
        let dict = Arc::new(Dictionary::prepared(content.into(), trained_ratio));
        register(dict.clone());
        dict
    }

    fn prepared(content: Box<[u8]>, trained_ratio: f64) -> Dictionary {
        Dictionary {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            cdict: CDict::create(&content, LEVEL),
            ddict: DDict::create(&content),
            trained_ratio,
            content,
        }
    }

    /// The dictionary's bytes as trained.
    pub fn content(&self) -> &[u8] {
        &self.content
    }

    /// Compressed/raw ratio of the training sample.
    pub fn trained_ratio(&self) -> f64 {
        self.trained_ratio
    }

    /// Bytes `bodies` take compressed with this dictionary (kept raw when
    /// that is smaller, as a store does); for measuring dictionary sizes.
    pub fn packed_size<'a>(&self, bodies: impl Iterator<Item = &'a [u8]>) -> Result<usize, CompressError> {
        let (mut cctx, mut scratch) = (frame_context(), Vec::new());
        let mut total = 0;
        for body in bodies {
            total += compress_with(&mut cctx, &mut scratch, self, body)?.len().min(body.len());
        }
        Ok(total)
    }
}

static NEXT_ID: AtomicU32 = AtomicU32::new(1);
static REGISTRY: RwLock<Vec<(u32, Arc<Dictionary>)>> = RwLock::new(Vec::new());

fn register(dict: Arc<Dictionary>) {
    REGISTRY.write().unwrap_or_else(|e| e.into_inner()).push((dict.id, dict));
}

fn unregister(id: u32) {
    REGISTRY.write().unwrap_or_else(|e| e.into_inner()).retain(|(i, _)| *i != id);
    LOCAL.with(|l| l.borrow_mut().dicts.remove(&id));
}

fn lookup(id: u32) -> Option<Arc<Dictionary>> {
    let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    registry.iter().find(|(i, _)| *i == id).map(|(_, d)| d.clone())
}

/// Dictionaries currently loaded in the process.
pub fn loaded_dictionaries() -> usize {
    REGISTRY.read().unwrap_or_else(|e| e.into_inner()).len()
}

/// One thread's decoding context and the dictionaries it has used.
struct Local {
    dctx: DCtx<'static>,
    dicts: HashMap<u32, Arc<Dictionary>>,
    /// The stored frame with its magic number put back in front.
    frame: Vec<u8>,
}

thread_local! {
    static LOCAL: RefCell<Local> =
        RefCell::new(Local { dctx: DCtx::create(), dicts: HashMap::new(), frame: Vec::new() });
}

/// The 4 bytes every zstd frame starts with, left out of stored frames.
const MAGIC: [u8; 4] = 0xFD2F_B528u32.to_le_bytes();

/// The bytes of a `Vec` from `start` on, so zstd writes into its spare capacity.
struct Tail<'a> {
    vec: &'a mut Vec<u8>,
    start: usize,
}

// SAFETY: the pointer and capacity describe the Vec's allocation after
// `start`; `filled_until` sets the length only to bytes zstd wrote.
unsafe impl WriteBuf for Tail<'_> {
    fn as_slice(&self) -> &[u8] {
        &self.vec[self.start..]
    }
    fn capacity(&self) -> usize {
        self.vec.capacity() - self.start
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: `start` is at most the length, within the allocation.
        unsafe { self.vec.as_mut_ptr().add(self.start) }
    }
    unsafe fn filled_until(&mut self, n: usize) {
        self.vec.set_len(self.start + n);
    }
}

/// Appends the `raw_len` bytes `frame` (as [`Compressor`] stores it, without
/// its magic number) decompresses to, with dictionary `id`, to `out`: one
/// reservation, no other allocation once the thread has seen the dictionary
/// and a frame this long.
pub fn decompress_into(id: u32, frame: &[u8], raw_len: usize, out: &mut Vec<u8>) -> Result<(), CompressError> {
    LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        let Local { dctx, dicts, frame: whole } = &mut *local;
        whole.clear();
        whole.extend_from_slice(&MAGIC);
        whole.extend_from_slice(frame);
        let dict = match dicts.get(&id) {
            Some(d) => d,
            None => {
                let found = lookup(id).ok_or(CompressError::UnknownDictionary(id))?;
                dicts.entry(id).or_insert(found)
            }
        };
        out.reserve(raw_len);
        let start = out.len();
        let mut tail = Tail { vec: out, start };
        let n = dctx.decompress_using_ddict(&mut tail, whole, &dict.ddict).map_err(zstd_error)?;
        if n != raw_len {
            out.truncate(start);
            return Err(CompressError::Zstd("decompressed length differs from the recorded one"));
        }
        Ok(())
    })
}

fn zstd_error(code: usize) -> CompressError {
    CompressError::Zstd(zstd::zstd_safe::get_error_name(code))
}

/// Trains a dictionary on concatenated `samples` of the given `sizes` and
/// registers it.
pub fn train(samples: &[u8], sizes: &[usize], dict_size: usize) -> Result<Arc<Dictionary>, CompressError> {
    let bytes =
        zstd::dict::from_continuous(samples, sizes, dict_size).map_err(|e| CompressError::Training(e.to_string()))?;
    let mut dict = Dictionary::prepared(bytes.into(), 1.0);
    let mut cctx = frame_context();
    let mut scratch = Vec::new();
    let (mut raw, mut packed, mut at) = (0usize, 0usize, 0usize);
    for &len in sizes {
        let body = &samples[at..at + len];
        at += len;
        packed += compress_with(&mut cctx, &mut scratch, &dict, body)?.len().min(len);
        raw += len;
    }
    dict.trained_ratio = packed.max(1) as f64 / raw.max(1) as f64;
    let dict = Arc::new(dict);
    register(dict.clone());
    Ok(dict)
}

/// A compression context whose frames carry only what decoding needs: no
/// content size, dictionary id or checksum (the magic number is cut off by
/// [`compress_with`]).
fn frame_context() -> CCtx<'static> {
    let mut cctx = CCtx::create();
    for param in [CParameter::ContentSizeFlag(false), CParameter::DictIdFlag(false), CParameter::ChecksumFlag(false)] {
        cctx.set_parameter(param).expect("zstd accepts its frame parameters");
    }
    cctx
}

/// `body` compressed with `dict` by a [`frame_context`], without the frame's
/// magic number.
fn compress_with<'s>(
    cctx: &mut CCtx<'static>,
    scratch: &'s mut Vec<u8>,
    dict: &Dictionary,
    body: &[u8],
) -> Result<&'s [u8], CompressError> {
    scratch.clear();
    scratch.reserve(zstd::zstd_safe::compress_bound(body.len()));
    cctx.ref_cdict(&dict.cdict).map_err(zstd_error)?;
    cctx.compress2(scratch, body).map_err(zstd_error)?;
    scratch.strip_prefix(&MAGIC).ok_or(CompressError::Zstd("a frame without the magic number"))
}

enum Phase {
    /// Collecting bodies to train on.
    Sampling { samples: Vec<u8>, sizes: Vec<usize> },
    /// A helper thread trains; the shard looks at it after each write.
    Training(JoinHandle<Result<Arc<Dictionary>, CompressError>>),
    /// Compressing with the current dictionary.
    Steady,
}

/// Hands back to the system what training took (zstd's working memory for
/// a 1 MiB sample is several times that): glibc keeps freed memory in the
/// helper thread's arena otherwise, for the life of the process. Runs on the
/// helper thread, so no shard waits for it.
fn release_training_memory() {
    // SAFETY: malloc_trim only returns free memory to the system; it is
    // thread-safe and touches no live allocation.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A body compressed with `dict`, borrowed from the compressor's scratch buffer.
pub struct Packed<'a> {
    pub dict: u32,
    pub frame: &'a [u8],
}

/// One store's (on one shard) compression state: sample, train, compress,
/// watch the ratio, retrain. Works on bytes; `MemoryStore` applies it to entries.
pub struct Compressor {
    phase: Phase,
    current: Option<Arc<Dictionary>>,
    /// Dictionaries this store's entries use, with how many entries use each.
    uses: HashMap<u32, (Arc<Dictionary>, usize)>,
    cctx: CCtx<'static>,
    scratch: Vec<u8>,
    window_raw: usize,
    window_packed: usize,
    window_records: usize,
    pub trainings: u64,
    pub failures: u64,
}

impl Default for Compressor {
    fn default() -> Self {
        Compressor {
            phase: Phase::Sampling { samples: Vec::new(), sizes: Vec::new() },
            current: None,
            uses: HashMap::new(),
            cctx: frame_context(),
            scratch: Vec::new(),
            window_raw: 0,
            window_packed: 0,
            window_records: 0,
            trainings: 0,
            failures: 0,
        }
    }
}

impl Compressor {
    /// Takes note of a new body; returns it compressed when a dictionary is
    /// ready and compressing makes it smaller.
    pub fn admit(&mut self, body: &[u8]) -> Option<Packed<'_>> {
        self.poll_training();
        if let Phase::Sampling { samples, sizes } = &mut self.phase {
            if !body.is_empty() {
                samples.extend_from_slice(body);
                sizes.push(body.len());
            }
            if sizes.len() >= SAMPLE_RECORDS || samples.len() >= SAMPLE_BYTES {
                self.start_training();
            }
        }
        let dict = self.current.clone()?;
        let frame_len = compress_with(&mut self.cctx, &mut self.scratch, &dict, body).ok()?.len();
        self.watch(body.len(), frame_len.min(body.len()), &dict);
        (frame_len < body.len()).then(|| Packed { dict: dict.id, frame: &self.scratch[MAGIC.len()..] })
    }

    /// Compresses a body sampled before the dictionary was ready.
    pub fn compress_backlog(&mut self, body: &[u8]) -> Option<Packed<'_>> {
        let dict = self.current.clone()?;
        let frame = compress_with(&mut self.cctx, &mut self.scratch, &dict, body).ok()?;
        (frame.len() < body.len()).then_some(Packed { dict: dict.id, frame })
    }

    /// A compressor that goes on with dictionaries read back from a
    /// snapshot: `current` (an id among them) compresses new bodies, and
    /// every one of them decodes the entries that come with it. Call
    /// [`Compressor::drop_unused`] once those entries are stored.
    pub fn resume(dicts: Vec<Arc<Dictionary>>, current: Option<u32>) -> Compressor {
        let current = current.and_then(|id| dicts.iter().find(|d| d.id == id).cloned());
        let phase = match current {
            Some(_) => Phase::Steady,
            None => Phase::Sampling { samples: Vec::new(), sizes: Vec::new() },
        };
        let uses = dicts.into_iter().map(|d| (d.id, (d, 0))).collect();
        Compressor { phase, current, uses, ..Compressor::default() }
    }

    /// Lets go of resumed dictionaries that no stored entry uses.
    pub fn drop_unused(&mut self) {
        let current = self.current.as_ref().map(|d| d.id);
        let unused: Vec<u32> = self.uses.iter().filter(|(_, (_, n))| *n == 0).map(|(id, _)| *id).collect();
        for id in unused {
            self.uses.remove(&id);
            if Some(id) != current {
                unregister(id);
            }
        }
    }

    /// The dictionaries this store's entries use and the current one, and
    /// the current one's id: what a snapshot keeps beside the entries.
    pub fn kept_dictionaries(&self) -> (Vec<Arc<Dictionary>>, Option<u32>) {
        let mut dicts: Vec<Arc<Dictionary>> = self.uses.values().map(|(d, _)| d.clone()).collect();
        if let Some(current) = self.current.as_ref().filter(|d| !self.uses.contains_key(&d.id)) {
            dicts.push(current.clone());
        }
        dicts.sort_by_key(|d| d.id);
        (dicts, self.current.as_ref().map(|d| d.id))
    }

    /// Whether a dictionary is ready (so the backlog can be worked off).
    pub fn ready(&self) -> bool {
        self.current.is_some()
    }

    /// Blocks until a training under way finishes (tools and tests only: the
    /// shard never waits).
    pub fn wait_for_training(&mut self) {
        if let Phase::Training(handle) = std::mem::replace(&mut self.phase, Phase::Steady) {
            self.finish_training(handle.join());
        }
    }

    /// An entry compressed with `dict` is now stored.
    pub fn retain(&mut self, dict: u32) {
        if let Some((_, n)) = self.uses.get_mut(&dict) {
            *n += 1;
        } else if let Some(d) = self.current.as_ref().filter(|d| d.id == dict) {
            self.uses.insert(dict, (d.clone(), 1));
        }
    }

    /// An entry compressed with `dict` left the store; the dictionary goes
    /// when no entry uses it and it is not the current one.
    pub fn release(&mut self, dict: u32) {
        let Some((_, n)) = self.uses.get_mut(&dict) else { return };
        *n -= 1;
        let current = self.current.as_ref().is_some_and(|d| d.id == dict);
        if *n == 0 && !current {
            self.uses.remove(&dict);
            unregister(dict);
        }
    }

    /// Dictionaries this store's entries use (the current one included).
    pub fn dictionaries(&self) -> usize {
        let current_unused = self.current.as_ref().is_some_and(|d| !self.uses.contains_key(&d.id));
        self.uses.len() + usize::from(current_unused)
    }

    fn start_training(&mut self) {
        let Phase::Sampling { samples, sizes } = std::mem::replace(&mut self.phase, Phase::Steady) else { return };
        let spawned = std::thread::Builder::new().name("zstd-train".into()).spawn(move || {
            let trained = train(&samples, &sizes, DICT_SIZE);
            drop((samples, sizes));
            release_training_memory();
            trained
        });
        match spawned {
            Ok(handle) => self.phase = Phase::Training(handle),
            Err(_) => self.failures += 1,
        }
    }

    fn poll_training(&mut self) {
        if !matches!(&self.phase, Phase::Training(h) if h.is_finished()) {
            return;
        }
        self.wait_for_training();
    }

    fn finish_training(&mut self, result: std::thread::Result<Result<Arc<Dictionary>, CompressError>>) {
        match result {
            Ok(Ok(dict)) => {
                self.trainings += 1;
                if let Some(old) = self.current.replace(dict) {
                    if !self.uses.contains_key(&old.id) {
                        unregister(old.id);
                    }
                }
                (self.window_raw, self.window_packed, self.window_records) = (0, 0, 0);
            }
            Ok(Err(e)) => {
                tracing::warn!("{e}");
                self.failures += 1;
            }
            Err(_) => self.failures += 1,
        }
    }

    /// Counts one compressed record; starts a new sample when the ratio of
    /// the last `WINDOW` records is `RETRAIN_FACTOR` worse than at training.
    fn watch(&mut self, raw: usize, packed: usize, dict: &Dictionary) {
        self.window_raw += raw;
        self.window_packed += packed;
        self.window_records += 1;
        if self.window_records < WINDOW {
            return;
        }
        let ratio = self.window_packed as f64 / self.window_raw.max(1) as f64;
        if ratio > dict.trained_ratio * RETRAIN_FACTOR && matches!(self.phase, Phase::Steady) {
            self.phase = Phase::Sampling { samples: Vec::new(), sizes: Vec::new() };
        }
        (self.window_raw, self.window_packed, self.window_records) = (0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn body(i: usize) -> Vec<u8> {
        format!(
            r#"{{"accountId":"acct-{i:08}","name":"Customer {i}","email":"customer{i}@example.com","plan":"{}","country":"{}","updatedAt":{}}}"#,
            ["free", "pro", "team"][i % 3],
            ["DE", "FR", "US", "JP"][i % 4],
            1_700_000_000_000u64 + i as u64
        )
        .into_bytes()
    }

    fn round_trip(c: &mut Compressor, b: &[u8]) -> Vec<u8> {
        let mut out = b"prefix".to_vec();
        match c.admit(b) {
            Some(p) => {
                let (dict, frame) = (p.dict, p.frame.to_vec());
                decompress_into(dict, &frame, b.len(), &mut out).unwrap();
            }
            None => out.extend_from_slice(b),
        }
        assert_eq!(&out[..6], b"prefix");
        out.split_off(6)
    }

    #[test]
    fn trains_after_the_sample_and_compresses_after() {
        let mut c = Compressor::default();
        for i in 0..SAMPLE_RECORDS {
            assert!(c.admit(&body(i)).is_none());
        }
        c.wait_for_training();
        assert!(c.ready());
        let b = body(5_000_000);
        let packed = c.admit(&b).unwrap().frame.len();
        assert!(packed * 3 < b.len(), "{packed} of {}", b.len());
        assert_eq!(round_trip(&mut c, &b), b);
    }

    #[test]
    fn an_unknown_dictionary_is_an_error() {
        let mut out = Vec::new();
        assert!(matches!(decompress_into(u32::MAX, b"x", 1, &mut out), Err(CompressError::UnknownDictionary(_))));
    }
}
