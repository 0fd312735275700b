//! Snapshots for warm restarts: what the shards hold in memory, written to
//! disk now and then and at an orderly stop, and loaded at start instead of
//! replaying the topics from the beginning.
//!
//! A snapshot is one file per shard (`shard_file`, in the `format` this
//! build reads) plus `manifest.json`, which names the generation, the shard
//! count, every file with its size and checksum, the configuration
//! fingerprint, the offsets to resume from and the record types each topic
//! carried (so a tombstone that arrives after a restart still reaches the
//! stores its topic fed). Every file is written to a temporary name, fsynced
//! and renamed, and the directory fsynced; the manifest is renamed last and
//! older files are removed only after it, so a crash at any point leaves the
//! previous snapshot whole.
//!
//! Each shard's file records, per partition, the offset its entries include
//! (everything below it). The manifest keeps the minimum over shards: the
//! consumer resumes there, and the records a shard already had are applied
//! again, in order, which ends in the same state.
//!
//! At start a snapshot is used only if its manifest's checksum, version,
//! fingerprint and shard count match, its offsets lie within what the
//! broker still has, and every shard file's checksum matches; otherwise the
//! reason is logged and the service replays from the beginning.

pub mod format;
pub mod shard_file;

use crate::config::{Config, IndexMode, StoreConfig};
use crate::kafka::consumer::{client_config, Resume};
use crate::kafka::dispatch::KnownTypes;
use crate::metrics::header;
use crate::metrics::MetricsSource;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;
use serde::{Deserialize, Serialize};
use shard_file::{Expected, WriteOrder};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const MANIFEST: &str = "manifest.json";
/// How long start-up keeps asking the broker for watermarks before it gives
/// up on the snapshot and replays.
const BROKER_PATIENCE: Duration = Duration::from_secs(20);

/// The configuration that shaped a snapshot's contents, as text, and its hash.
pub fn fingerprint(config: &Config, shards: usize) -> (u64, String) {
    let mut text = format!(
        "format {}\nshards {shards}\ntopics {:?}\nkey_format {:?}\n",
        format::VERSION,
        config.kafka.topic.names(),
        config.kafka.key_format
    );
    for (i, store) in config.cache.stores.iter().enumerate() {
        let _ = match store {
            StoreConfig::InMemory { .. } => writeln!(text, "store {i} {store:?}"),
            StoreConfig::Redis { name, .. } => writeln!(text, "store {i} redis {name}"),
        };
    }
    // A replicated index keeps every entry in shard 0's file only; the line
    // is absent for the partitioned default, whose fingerprints stay as they were.
    if config.runtime.index == IndexMode::Replicated {
        text.push_str("index replicated\n");
    }
    (fnv1a(text.as_bytes()), text)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// `manifest.json`: the JSON below, a newline, and the crc32 of the JSON in hex.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub generation: u64,
    pub fingerprint: String,
    pub shards: usize,
    pub created_unix_ms: u64,
    pub offsets: Vec<PartitionOffset>,
    pub known_types: BTreeMap<String, Vec<String>>,
    pub files: Vec<FileRecord>,
    /// The configuration text the fingerprint hashes, for a person reading a mismatch.
    pub shaped_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: i32,
    pub next: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRecord {
    pub name: String,
    pub bytes: u64,
    pub crc32: u32,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a manifest serialises");
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(format!("\n{crc:08x}\n").as_bytes());
        out
    }

    /// Parses `manifest.json`, refusing it unless its checksum matches.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        let text = bytes.strip_suffix(b"\n").ok_or("the manifest is torn (no final newline)")?;
        let at = text.iter().rposition(|b| *b == b'\n').ok_or("the manifest has no checksum line")?;
        let (json, crc) = (&text[..at], &text[at + 1..]);
        let crc =
            std::str::from_utf8(crc).ok().and_then(|c| u32::from_str_radix(c, 16).ok()).ok_or("bad checksum line")?;
        if crc32fast::hash(json) != crc {
            return Err("the manifest's checksum does not match (corrupt)".into());
        }
        let m: Manifest = serde_json::from_slice(json).map_err(|e| format!("the manifest is malformed: {e}"))?;
        if m.version != format::VERSION {
            return Err(format!("snapshot format version {}, this build reads {}", m.version, format::VERSION));
        }
        if m.files.len() != m.shards {
            return Err("the manifest does not name one file per shard".into());
        }
        Ok(m)
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Snapshot metrics: `/metrics` reads them, the writer and start-up set them.
#[derive(Debug, Default)]
pub struct SnapshotStats {
    /// 0: no snapshots configured, 1: started from a snapshot, 2: replayed.
    start_mode: AtomicU8,
    last_unix_ms: AtomicU64,
    bytes: AtomicU64,
    write_us: AtomicU64,
    longest_stall_us: AtomicU64,
    load_us: AtomicU64,
}

impl SnapshotStats {
    pub fn started_from_snapshot(&self, yes: bool) {
        self.start_mode.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
    }

    fn snapshot_is(&self, created_unix_ms: u64, bytes: u64) {
        self.last_unix_ms.store(created_unix_ms, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
    }
}

impl MetricsSource for SnapshotStats {
    fn render(&self, out: &mut String) {
        let mode = self.start_mode.load(Ordering::Relaxed);
        if mode == 0 {
            return;
        }
        header(
            out,
            "push_cache_start_mode",
            "gauge",
            "1 for how this process started: from a snapshot or by replaying the topics.",
        );
        let _ = writeln!(
            out,
            "push_cache_start_mode{{mode=\"snapshot\"}} {}\npush_cache_start_mode{{mode=\"replay\"}} {}",
            u8::from(mode == 1),
            u8::from(mode == 2)
        );
        let last = self.last_unix_ms.load(Ordering::Relaxed);
        header(
            out,
            "push_cache_snapshot_age_seconds",
            "gauge",
            "Age of the newest complete snapshot (written or loaded).",
        );
        if last > 0 {
            let _ = writeln!(out, "push_cache_snapshot_age_seconds {:.3}", now_ms().saturating_sub(last) as f64 / 1e3);
        }
        header(out, "push_cache_snapshot_bytes", "gauge", "Bytes of the newest complete snapshot's files.");
        let _ = writeln!(out, "push_cache_snapshot_bytes {}", self.bytes.load(Ordering::Relaxed));
        let gauges = [
            ("push_cache_snapshot_write_seconds", "Time the last snapshot took to write.", &self.write_us),
            (
                "push_cache_snapshot_longest_stall_seconds",
                "Longest a shard was busy with the last snapshot at once.",
                &self.longest_stall_us,
            ),
            ("push_cache_snapshot_load_seconds", "Time the snapshot loaded at start took.", &self.load_us),
        ];
        for (name, help, value) in gauges {
            header(out, name, "gauge", help);
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed) as f64 / 1e6);
        }
    }
}

/// A snapshot found at start that looks usable; the shards still check their files.
#[derive(Debug, Clone)]
pub struct Plan {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub fingerprint: u64,
}

impl Plan {
    /// Shard `shard`'s file and what it must contain.
    pub fn shard(&self, shard: usize) -> (PathBuf, Expected) {
        let f = &self.manifest.files[shard];
        let expected = Expected {
            fingerprint: self.fingerprint,
            generation: self.manifest.generation,
            shard,
            shards: self.manifest.shards,
            bytes: f.bytes,
            crc: f.crc32,
        };
        (self.dir.join(&f.name), expected)
    }

    /// Where the consumer resumes once every shard has loaded its file.
    pub fn resume(&self) -> Resume {
        let offsets = self.manifest.offsets.iter().map(|o| ((o.topic.clone(), o.partition), o.next)).collect();
        Resume { offsets, known_types: Arc::new(Mutex::new(self.manifest.known_types.clone())) }
    }
}

/// Looks for a usable snapshot in `snapshot.dir`; logs why one is not used.
pub fn plan(config: &Config) -> Option<Plan> {
    let dir = config.snapshot.dir.as_ref()?;
    let shards = config.shard_count().ok()?;
    let path = dir.join(MANIFEST);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(dir = %dir.display(), "no snapshot yet; replaying the topics from the beginning");
            return None;
        }
        Err(e) => return discard(&path, &e.to_string()),
    };
    let manifest = match Manifest::decode(&bytes) {
        Ok(m) => m,
        Err(why) => return discard(&path, &why),
    };
    let (fingerprint, text) = fingerprint(config, shards);
    if manifest.fingerprint != format!("{fingerprint:016x}") || manifest.shards != shards {
        let why = format!("it was made for another configuration:\n{}\nthis one is:\n{text}", manifest.shaped_by);
        return discard(&path, &why);
    }
    if let Err(why) = check_offsets(config, &manifest.offsets) {
        return discard(&path, &why);
    }
    Some(Plan { dir: dir.clone(), manifest, fingerprint })
}

fn discard(path: &Path, why: &str) -> Option<Plan> {
    tracing::warn!(manifest = %path.display(), "snapshot not used, replaying the topics from the beginning: {why}");
    None
}

/// Every offset must lie within what the broker still has: above it the
/// topic was re-created or truncated, below its low watermark records are gone.
fn check_offsets(config: &Config, offsets: &[PartitionOffset]) -> Result<(), String> {
    let consumer: BaseConsumer =
        client_config(config).create().map_err(|e| format!("cannot create a Kafka client: {e}"))?;
    let give_up = Instant::now() + BROKER_PATIENCE;
    let mut beyond_high = Vec::new();
    for o in offsets {
        let (low, high) = loop {
            match consumer.fetch_watermarks(&o.topic, o.partition, Duration::from_secs(2)) {
                Ok(w) => break w,
                Err(e) if Instant::now() > give_up => {
                    return Err(format!("cannot read the watermarks of {}/{}: {e}", o.topic, o.partition))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        };
        if o.next < low {
            return Err(format!(
                "{}/{} resumes at offset {} but the broker starts at {low} (truncated?)",
                o.topic, o.partition, o.next
            ));
        }
        if o.next > high {
            beyond_high.push((o, high));
        }
    }
    if let Some((o, high)) = missing_offsets(config, &beyond_high)? {
        return Err(format!(
            "{}/{} resumes at offset {} but the broker's log ends at {high} (topic re-created or truncated?)",
            o.topic, o.partition, o.next
        ));
    }
    Ok(())
}

/// The first partition that no longer holds offset `next - 1`, read from the
/// log itself (all partitions at once; one whose record does not arrive
/// within a few seconds counts as missing). Asked only where the broker's
/// high watermark is below `next`: some brokers (tansu) report the last
/// batch's base offset + 1 as the high watermark, below the true end when
/// that batch holds many records.
fn missing_offsets<'a>(
    config: &Config,
    probes: &[(&'a PartitionOffset, i64)],
) -> Result<Option<(&'a PartitionOffset, i64)>, String> {
    if probes.is_empty() {
        return Ok(None);
    }
    let mut c = client_config(config);
    c.set("enable.auto.commit", "false").set("auto.offset.reset", "error").set("enable.partition.eof", "false");
    let consumer: BaseConsumer = c.create().map_err(|e| format!("cannot create a Kafka client: {e}"))?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for (o, _) in probes {
        tpl.add_partition_offset(&o.topic, o.partition, rdkafka::Offset::Offset(o.next - 1))
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let mut open: Vec<_> = probes.to_vec();
    let give_up = Instant::now() + Duration::from_secs(5);
    while !open.is_empty() && Instant::now() < give_up {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else { continue };
        let Some(at) = open.iter().position(|(o, _)| o.partition == m.partition() && o.topic == m.topic()) else {
            continue;
        };
        if m.offset() < open[at].0.next - 1 {
            return Ok(Some(open[at]));
        }
        open.swap_remove(at);
    }
    Ok(open.first().copied())
}

/// Writes snapshots: every `interval_seconds` on its own thread, and once
/// more when asked to finish.
pub struct SnapshotWriter {
    dir: PathBuf,
    fingerprint: u64,
    shaped_by: String,
    orders: Vec<flume::Sender<WriteOrder>>,
    known_types: KnownTypes,
    stats: Arc<SnapshotStats>,
    generation: u64,
}

/// The running writer thread.
pub struct WriterHandle {
    finish: flume::Sender<()>,
    done: flume::Receiver<()>,
}

impl SnapshotWriter {
    pub fn new(
        config: &Config,
        orders: Vec<flume::Sender<WriteOrder>>,
        known_types: KnownTypes,
        stats: Arc<SnapshotStats>,
        loaded: Option<&Plan>,
    ) -> Option<SnapshotWriter> {
        let dir = config.snapshot.dir.clone()?;
        let (fingerprint, shaped_by) = fingerprint(config, orders.len());
        if let Some(plan) = loaded {
            let bytes = plan.manifest.files.iter().map(|f| f.bytes).sum();
            stats.snapshot_is(plan.manifest.created_unix_ms, bytes);
        }
        let generation = loaded.map_or(0, |p| p.manifest.generation);
        Some(SnapshotWriter { dir, fingerprint, shaped_by, orders, known_types, stats, generation })
    }

    /// Starts the periodic thread.
    pub fn start(self, interval: Duration) -> std::io::Result<WriterHandle> {
        let (finish, finish_rx) = flume::bounded(1);
        let (done_tx, done) = flume::bounded(1);
        std::thread::Builder::new().name("snapshots".into()).spawn(move || {
            let mut me = self;
            loop {
                let last =
                    matches!(finish_rx.recv_timeout(interval), Ok(()) | Err(flume::RecvTimeoutError::Disconnected));
                if let Err(e) = me.write() {
                    tracing::warn!("snapshot failed, the previous one stays in place: {e}");
                }
                if last {
                    break;
                }
            }
            let _ = done_tx.send(());
        })?;
        Ok(WriterHandle { finish, done })
    }

    /// Writes one complete snapshot: every shard's file, then the manifest.
    pub fn write(&mut self) -> Result<(), String> {
        let begun = Instant::now();
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        self.generation = self.generation.max(now_ms()).saturating_add(1);
        let created_unix_ms = now_ms();
        let mut replies = Vec::new();
        for orders in &self.orders {
            let (reply, rx) = flume::bounded(1);
            let order =
                WriteOrder { dir: self.dir.clone(), fingerprint: self.fingerprint, generation: self.generation, reply };
            orders.send(order).map_err(|_| "the shards have stopped".to_string())?;
            replies.push(rx);
        }
        let mut written = Vec::new();
        for rx in replies {
            written.push(rx.recv().map_err(|_| "a shard stopped during the snapshot".to_string())??);
        }
        let manifest = self.manifest(&written, created_unix_ms);
        write_atomically(&self.dir, MANIFEST, &manifest.encode())
            .map_err(|e| format!("{}: {e}", self.dir.join(MANIFEST).display()))?;
        self.remove_others(&manifest);
        let bytes: u64 = written.iter().map(|w| w.bytes).sum();
        let stall = written.iter().map(|w| w.longest_stall).max().unwrap_or_default();
        self.stats.snapshot_is(created_unix_ms, bytes);
        self.stats.write_us.store(begun.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.stats.longest_stall_us.store(stall.as_micros() as u64, Ordering::Relaxed);
        let entries: u64 = written.iter().map(|w| w.entries).sum();
        let pin_us = written.iter().map(|w| w.pin).max().unwrap_or_default().as_micros() as u64;
        let elapsed_ms = begun.elapsed().as_millis() as u64;
        let longest_stall_us = stall.as_micros() as u64;
        tracing::info!(
            generation = self.generation,
            entries,
            bytes,
            elapsed_ms,
            longest_stall_us,
            pin_us,
            "snapshot written"
        );
        Ok(())
    }

    fn manifest(&self, written: &[shard_file::ShardWritten], created_unix_ms: u64) -> Manifest {
        Manifest {
            version: format::VERSION,
            generation: self.generation,
            fingerprint: format!("{:016x}", self.fingerprint),
            shards: written.len(),
            created_unix_ms,
            offsets: min_offsets(written.iter().map(|w| w.positions.as_slice())),
            known_types: self.known_types.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            files: written.iter().map(|w| FileRecord { name: w.file.clone(), bytes: w.bytes, crc32: w.crc }).collect(),
            shaped_by: self.shaped_by.clone(),
        }
    }

    /// Removes the files of older snapshots and torn temporary files.
    fn remove_others(&self, manifest: &Manifest) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.starts_with("shard-") && (name.ends_with(".snap") || name.ends_with(".snap.tmp"));
            if ours && !manifest.files.iter().any(|f| f.name == name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

impl WriterHandle {
    /// Writes the final snapshot and waits for it, at most `limit`.
    pub fn finish(self, limit: Duration) -> bool {
        let _ = self.finish.try_send(());
        self.done.recv_timeout(limit).is_ok()
    }
}

/// Per partition, the smallest offset over the shards; a partition some
/// shard lacks is left out (it is replayed from the beginning).
pub fn min_offsets<'a>(shards: impl Iterator<Item = &'a [(String, i32, i64)]>) -> Vec<PartitionOffset> {
    let mut min: BTreeMap<(String, i32), (i64, usize)> = BTreeMap::new();
    let mut count = 0;
    for positions in shards {
        count += 1;
        for (topic, partition, next) in positions {
            let slot = min.entry((topic.clone(), *partition)).or_insert((*next, 0));
            slot.0 = slot.0.min(*next);
            slot.1 += 1;
        }
    }
    min.into_iter()
        .filter(|(_, (_, seen))| *seen == count)
        .map(|((topic, partition), (next, _))| PartitionOffset { topic, partition, next })
        .collect()
}

/// Writes `dir/name` through a fsynced temporary file and a rename.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    shard_file::sync_dir(dir)
}

/// Load statistics for the log and metrics.
pub fn loaded(stats: &SnapshotStats, bytes: u64, elapsed: Duration) {
    stats.load_us.store(elapsed.as_micros() as u64, Ordering::Relaxed);
    let mb_s = bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-6);
    tracing::warn!(
        bytes,
        elapsed_ms = elapsed.as_millis() as u64,
        mb_per_s = format!("{mb_s:.0}"),
        "started from the snapshot"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_round_trips_and_refuses_any_change() {
        let m = Manifest {
            version: format::VERSION,
            generation: 9,
            fingerprint: "00000000000000ff".into(),
            shards: 1,
            created_unix_ms: 1,
            offsets: vec![PartitionOffset { topic: "t".into(), partition: 0, next: 5 }],
            known_types: BTreeMap::from([("t".into(), vec!["customer".into()])]),
            files: vec![FileRecord { name: "shard-0".into(), bytes: 10, crc32: 3 }],
            shaped_by: "x".into(),
        };
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes).unwrap().offsets, m.offsets);
        for len in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..len]).is_err(), "truncated to {len}");
        }
        let mut bad = bytes.clone();
        let at = bytes.iter().position(|b| *b == b'5').unwrap();
        bad[at] = b'6';
        assert!(Manifest::decode(&bad).is_err());
    }

    #[test]
    fn offsets_are_the_minimum_over_shards_and_need_every_shard() {
        let a = vec![("t".to_string(), 0, 10), ("t".to_string(), 1, 4)];
        let b = vec![("t".to_string(), 0, 7)];
        let min = min_offsets([a.as_slice(), b.as_slice()].into_iter());
        assert_eq!(min, vec![PartitionOffset { topic: "t".into(), partition: 0, next: 7 }]);
    }

    #[test]
    fn the_fingerprint_follows_what_shapes_the_data() {
        let base = "kafka: {brokers: b, group_id: g, topic: t, schema_registry_url: 'http://r'}
cache: {stores: [{name: s, type: in_memory, schemas: [customer]}], routes: [{path: /c, store: s}]}
";
        let c = Config::from_yaml(base).unwrap();
        let same = Config::from_yaml(&base.replace("brokers: b", "brokers: other")).unwrap();
        let schemas = Config::from_yaml(&base.replace("[customer]", "[bill]")).unwrap();
        let topic = Config::from_yaml(&base.replace("topic: t", "topic: u")).unwrap();
        assert_eq!(fingerprint(&c, 2).0, fingerprint(&same, 2).0);
        assert_ne!(fingerprint(&c, 2).0, fingerprint(&c, 3).0);
        assert_ne!(fingerprint(&c, 2).0, fingerprint(&schemas, 2).0);
        assert_ne!(fingerprint(&c, 2).0, fingerprint(&topic, 2).0);
    }
}
