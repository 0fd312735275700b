//! Loading snapshot files (`runtime::snapshot::format::read` for a shard's
//! file, `Manifest::decode` for the manifest) over arbitrary bytes. A torn,
//! corrupt or hostile file must be an error, never a panic, a hang or an
//! allocation beyond the input's size; a file that loads must load the same
//! entries again once written back out (compressed ones with their
//! dictionaries).
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_cache::runtime::snapshot::format::{read, Encoder};
use push_cache::runtime::snapshot::Manifest;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else { return };
    if kind % 2 == 1 {
        if let Ok(m) = Manifest::decode(bytes) {
            assert_eq!(m.files.len(), m.shards);
            assert!(Manifest::decode(&m.encode()).is_ok());
        }
        return;
    }
    let Ok(file) = read(bytes, |i| i < 4) else { return };
    let mut enc = Encoder::new(&file.header, file.stores.len() as u32);
    let mut entries = Vec::new();
    for (index, store) in &file.stores {
        let all: Vec<_> = store.iter().collect();
        enc.store(*index as u32, store.kept_dictionaries().as_ref(), all.len() as u64);
        for e in all.iter().copied() {
            enc.entry(e);
        }
        entries.push(all.len());
    }
    let mut out = enc.take();
    out.extend(enc.finish().0);
    let again = read(&out[..], |i| i < 4).expect("a file written back out loads");
    assert_eq!(again.header, file.header);
    assert_eq!(again.stores.iter().map(|(_, s)| s.len()).collect::<Vec<_>>(), entries);
});
