//! Ingest on one consumer thread: Confluent frame + Avro datum -> JSON body
//! and ETag -> entry queued for its owning shard, per customer record.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use push_cache::config::StoreConfig;
use push_cache::kafka::decode::{decode_datum, encode_frame, parse_frame, WriterSchema};
use push_cache::kafka::dispatch::Dispatcher;

const CUSTOMER: &str = r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[
 {"name":"accountId","type":"string"},{"name":"name","type":"string"},{"name":"address","type":"string"},
 {"name":"phone","type":"string"},{"name":"createdAt","type":"long"},{"name":"updatedAt","type":"long"}]}"#;

/// Avro binary for a customer, written by hand (zig-zag lengths and longs).
fn datum(i: u64) -> Vec<u8> {
    fn long(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }
    fn string(out: &mut Vec<u8>, s: &str) {
        long(out, s.len() as i64);
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = Vec::new();
    string(&mut out, &format!("acct-{i:08}"));
    string(&mut out, &format!("Customer Name {i}"));
    string(&mut out, &format!("{i} Long Street, Some Town, AB1 2CD"));
    string(&mut out, "+44 20 7946 0000");
    long(&mut out, 1_700_000_000_000 + i as i64);
    long(&mut out, 1_700_000_500_000 + i as i64);
    out
}

fn ingest(c: &mut Criterion) {
    let schema = WriterSchema::parse(CUSTOMER).unwrap();
    let frames: Vec<(String, Vec<u8>)> = (0..10_000).map(|i| (format!("acct-{i:08}"), encode_frame(1, &datum(i)))).collect();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("decode_customer", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            let (_, d) = parse_frame(&frames[i].1).unwrap();
            black_box(decode_datum(&schema, d).unwrap())
        })
    });
    let (tx, rx) = flume::unbounded();
    let stores = vec![StoreConfig::InMemory { name: "customers".into(), schemas: vec!["customer".into()] }];
    let mut dispatcher = Dispatcher::new(stores, vec![tx], Vec::new());
    group.bench_function("decode_and_dispatch_customer", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            let (key, frame) = &frames[i];
            let (_, d) = parse_frame(frame).unwrap();
            let value = decode_datum(&schema, d).unwrap();
            dispatcher.upsert("customers", &schema.record_type, key, &value).unwrap();
            if i == 0 {
                dispatcher.flush().unwrap();
                rx.drain().for_each(drop);
            }
        })
    });
    let mut store = push_cache::store::memory::MemoryStore::default();
    group.bench_function("decode_and_apply_customer", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            let (key, frame) = &frames[i];
            let (_, d) = parse_frame(frame).unwrap();
            let value = decode_datum(&schema, d).unwrap();
            black_box(store.upsert(push_cache::store::entry::Entry::new(key, &value).unwrap()))
        })
    });
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
