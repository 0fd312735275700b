//! One shard's side of a snapshot: writing its file while it keeps serving,
//! and loading it at start.
//!
//! Writing pins the shard's stores (a point-in-time list of its entries,
//! taken in one pass over the ordered indexes, in key order) with the offsets they
//! include, then encodes the entries in slices of a few hundred
//! microseconds, sleeping between slices so that requests and ingest run.
//! The file I/O (write, fsync, rename, directory fsync) happens on a helper
//! thread fed over a bounded channel, so the shard never waits on the disk.
//!
//! With a replicated index every shard holds every entry, so only shard 0
//! writes entries; the others' files carry only their positions, and at
//! start they share the entries shard 0 loaded.

use super::format::{self, Encoder, FileHeader, FormatError};
use crate::runtime::shard::Shard;
use crate::store::entry::Entry;
use crate::store::memory::MemoryStore;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Encoding work between two yields to the executor.
const SLICE: Duration = Duration::from_micros(250);
/// Bytes handed to the file thread at a time.
const CHUNK: usize = 1 << 20;
/// Entries pinned retired entries are dropped in, between yields.
const DROP_SLICE: usize = 16_384;

/// Asks a shard to write its snapshot file.
pub struct WriteOrder {
    pub dir: PathBuf,
    pub fingerprint: u64,
    pub generation: u64,
    pub reply: flume::Sender<Result<ShardWritten, String>>,
}

/// What a shard wrote.
#[derive(Debug, Clone)]
pub struct ShardWritten {
    pub shard: usize,
    pub file: String,
    pub bytes: u64,
    pub crc: u32,
    pub entries: u64,
    pub positions: Vec<(String, i32, i64)>,
    /// The longest time the shard's thread was busy with the snapshot at once.
    pub longest_stall: Duration,
    /// Of which taking the point-in-time list of entries.
    pub pin: Duration,
}

/// The name of shard `shard`'s file of snapshot `generation`.
pub fn file_name(shard: usize, generation: u64) -> String {
    format!("shard-{shard}-{generation:020}.snap")
}

/// Serves write orders for one shard until the server stops.
pub async fn serve_orders(orders: flume::Receiver<WriteOrder>, shard: Rc<Shard>) {
    while let Ok(order) = orders.recv_async().await {
        let result = write(&shard, &order).await;
        let _ = order.reply.send(result);
    }
}

async fn write(shard: &Shard, order: &WriteOrder) -> Result<ShardWritten, String> {
    let begun = Instant::now();
    let holds_entries = shard.fanout().is_none() || shard.id == 0;
    // SAFETY: `unpin_all` runs below after `pinned` is dropped, on every path
    // (the encoding in between cannot fail, only the file thread can).
    let pinned = if holds_entries { unsafe { shard.pin_all() } } else { Vec::new() };
    let dictionaries = shard.kept_dictionaries();
    let positions = shard.applied_positions();
    let pin = begun.elapsed();
    let mut longest = pin;
    let name = file_name(shard.id, order.generation);
    let (chunks, done) = spawn_file_writer(order.dir.clone(), name.clone());
    let header = FileHeader {
        fingerprint: order.fingerprint,
        generation: order.generation,
        shard: shard.id as u32,
        shards: shard.count as u32,
        positions: positions.clone(),
    };
    let stores: Vec<_> = pinned.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|s| (i, s))).collect();
    let mut enc = Encoder::new(&header, stores.len() as u32);
    let (mut entries, mut bytes, mut sent_ok) = (0u64, 0u64, true);
    for (index, list) in stores {
        enc.store(index as u32, dictionaries[index].as_ref(), list.len() as u64);
        let mut at = 0;
        while at < list.len() {
            let slice = Instant::now();
            while at < list.len() && (at % 64 != 0 || slice.elapsed() < SLICE) {
                enc.entry(&list[at]);
                at += 1;
            }
            let chunk = (enc.buffered() >= CHUNK).then(|| enc.take());
            longest = longest.max(slice.elapsed());
            if let Some(chunk) = chunk {
                bytes += chunk.len() as u64;
                sent_ok &= chunks.send_async(Some(chunk)).await.is_ok();
            }
            glommio::timer::sleep(Duration::from_micros(1)).await;
        }
        entries += list.len() as u64;
    }
    drop(pinned);
    if holds_entries {
        release(shard.unpin_all()).await;
    }
    let tail = enc.take();
    let (end, crc) = enc.finish();
    bytes += (tail.len() + end.len()) as u64;
    sent_ok &= chunks.send_async(Some(tail)).await.is_ok() && chunks.send_async(Some(end)).await.is_ok();
    sent_ok &= chunks.send_async(None).await.is_ok();
    drop(chunks);
    let written = done.recv_async().await.map_err(|_| "the snapshot file thread died".to_string())?;
    written.map_err(|e| format!("{}: {e}", order.dir.join(&name).display()))?;
    if !sent_ok {
        return Err("the snapshot file thread stopped early".into());
    }
    Ok(ShardWritten { shard: shard.id, file: name, bytes, crc, entries, positions, longest_stall: longest, pin })
}

/// Drops the entries a pin kept alive, a slice at a time.
async fn release(mut retired: Vec<Entry>) {
    while !retired.is_empty() {
        let keep = retired.len().saturating_sub(DROP_SLICE);
        retired.truncate(keep);
        glommio::timer::sleep(Duration::from_micros(1)).await;
    }
}

/// A thread that writes the chunks it receives to `dir/name.tmp`; on `None`
/// it fsyncs, renames to `dir/name` and fsyncs the directory. A closed
/// channel before `None` removes the temporary file.
fn spawn_file_writer(
    dir: PathBuf,
    name: String,
) -> (flume::Sender<Option<Vec<u8>>>, flume::Receiver<std::io::Result<()>>) {
    let (tx, rx) = flume::bounded::<Option<Vec<u8>>>(4);
    let (done_tx, done_rx) = flume::bounded(1);
    let spawned = std::thread::Builder::new().name("snapshot-file".into()).spawn(move || {
        let _ = done_tx.send(write_file(&dir, &name, &rx));
    });
    if let Err(e) = spawned {
        let (fail_tx, fail_rx) = flume::bounded(1);
        let _ = fail_tx.send(Err(e));
        return (tx, fail_rx);
    }
    (tx, done_rx)
}

fn write_file(dir: &Path, name: &str, chunks: &flume::Receiver<Option<Vec<u8>>>) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        loop {
            match chunks.recv() {
                Ok(Some(chunk)) => file.write_all(&chunk)?,
                Ok(None) => break,
                Err(_) => return Err(std::io::Error::other("the shard stopped before the snapshot was complete")),
            }
        }
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, dir.join(name))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Makes a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A shard file read at start: its header, and per store index its entries.
pub struct Loaded {
    pub header: FileHeader,
    pub stores: Vec<(usize, MemoryStore)>,
    pub bytes: u64,
}

/// What the file must say about itself to be used.
pub struct Expected {
    pub fingerprint: u64,
    pub generation: u64,
    pub shard: usize,
    pub shards: usize,
    pub bytes: u64,
    pub crc: u32,
}

/// Reads and checks one shard file (on the shard's own thread, at start).
pub fn load(path: &Path, expected: &Expected, memory_stores: &[bool]) -> Result<Loaded, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes = file.metadata().map_err(|e| e.to_string())?.len();
    if bytes != expected.bytes {
        return Err(format!("{} has {bytes} bytes, the manifest says {} (torn?)", path.display(), expected.bytes));
    }
    let crc = format::verify(file, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    let read = format::parse(reader, bytes, crc, |i| memory_stores.get(i).copied().unwrap_or(false))
        .map_err(|e: FormatError| format!("{}: {e}", path.display()))?;
    let h = &read.header;
    let ours = (expected.fingerprint, expected.generation, expected.shard as u32, expected.shards as u32);
    if (h.fingerprint, h.generation, h.shard, h.shards) != ours {
        return Err(format!("{} belongs to another snapshot or shard", path.display()));
    }
    if read.crc != expected.crc {
        return Err(format!("{}: checksum differs from the manifest's", path.display()));
    }
    Ok(Loaded { header: read.header, stores: read.stores, bytes })
}
