//! Ingest on one consumer thread. `decode_customer`: the same customer record
//! as an Avro datum, a Protobuf message and JSON Schema text, each Confluent
//! frame -> JSON body and ETag. `ingest`: the Avro customer decoded, then
//! queued for its owning shard or applied to a shard's map.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use push_cache::config::StoreConfig;
use push_cache::kafka::decode::protobuf::encode_indexes;
use push_cache::kafka::decode::{
    decode_datum, encode_frame, parse_frame, ParsedSchema, SchemaSource, SchemaType, WriterSchema,
};
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

const CUSTOMER_PROTO: &str = r#"syntax = "proto3";
package com.acme;
message Customer {
  string account_id = 1;
  string name = 2;
  string address = 3;
  string phone = 4;
  int64 created_at = 5;
  int64 updated_at = 6;
}
"#;

/// The customer as Protobuf wire bytes (tags, varints, length-delimited strings).
fn proto_message(i: u64) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = encode_indexes(&[0]);
    let strings = [
        format!("acct-{i:08}"),
        format!("Customer Name {i}"),
        format!("{i} Long Street, Some Town, AB1 2CD"),
        "+44 20 7946 0000".to_string(),
    ];
    for (field, s) in strings.iter().enumerate() {
        varint(&mut out, ((field as u64 + 1) << 3) | 2);
        varint(&mut out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    for (field, v) in [(5u64, 1_700_000_000_000 + i), (6, 1_700_000_500_000 + i)] {
        varint(&mut out, field << 3);
        varint(&mut out, v);
    }
    out
}

/// The customer as a JSON Schema producer writes it.
fn json_text(i: u64) -> Vec<u8> {
    format!(
        r#"{{"accountId": "acct-{i:08}", "name": "Customer Name {i}", "address": "{i} Long Street, Some Town, AB1 2CD", "phone": "+44 20 7946 0000", "createdAt": {}, "updatedAt": {}}}"#,
        1_700_000_000_000 + i,
        1_700_000_500_000 + i
    )
    .into_bytes()
}

/// The same customer in each format, through `ParsedSchema::decode_value`
/// (what the consumer calls): records per second on one thread.
fn decode_formats(c: &mut Criterion) {
    let source = |schema_type, text: &str| SchemaSource { schema_type, text: text.into(), references: vec![] };
    let avro = ParsedSchema::compile(&source(SchemaType::Avro, CUSTOMER)).unwrap();
    let proto = ParsedSchema::compile(&source(SchemaType::Protobuf, CUSTOMER_PROTO)).unwrap();
    let json = ParsedSchema::compile(&source(SchemaType::Json, r#"{"title":"Customer","type":"object"}"#)).unwrap();
    let avro_frames: Vec<Vec<u8>> = (0..10_000).map(|i| encode_frame(1, &datum(i))).collect();
    let proto_frames: Vec<Vec<u8>> = (0..10_000).map(|i| encode_frame(2, &proto_message(i))).collect();
    let json_frames: Vec<Vec<u8>> = (0..10_000).map(|i| encode_frame(3, &json_text(i))).collect();
    let mut group = c.benchmark_group("decode_customer");
    group.throughput(Throughput::Elements(1));
    for (name, schema, frames) in
        [("avro", &avro, &avro_frames), ("protobuf", &proto, &proto_frames), ("json_schema", &json, &json_frames)]
    {
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % frames.len();
                let (_, d) = parse_frame(&frames[i]).unwrap();
                black_box(schema.decode_value(d).unwrap())
            })
        });
    }
    // The baseline: the same Protobuf customer through `DynamicMessage`, the
    // path taken by messages the fast one leaves alone.
    let ParsedSchema::Protobuf(reflect) = &proto else { unreachable!("compiled as Protobuf") };
    let mut i = 0;
    group.bench_function("protobuf_dynamic_message", |b| {
        b.iter(|| {
            i = (i + 1) % proto_frames.len();
            let (_, d) = parse_frame(&proto_frames[i]).unwrap();
            black_box(reflect.decode_value_reflect(d).unwrap())
        })
    });
    group.finish();
}

fn ingest(c: &mut Criterion) {
    let schema = WriterSchema::parse(CUSTOMER).unwrap();
    let frames: Vec<(String, Vec<u8>)> =
        (0..10_000).map(|i| (format!("acct-{i:08}"), encode_frame(1, &datum(i)))).collect();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    let (tx, rx) = flume::unbounded();
    let customers = StoreConfig::InMemory {
        name: "customers".into(),
        schemas: vec!["customer".into()],
        fields: Vec::new(),
        compression: None,
    };
    let stores = vec![customers];
    let mut dispatcher = Dispatcher::new(stores, push_cache::placement::ShardQueues::Partitioned(vec![tx]));
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

criterion_group!(benches, decode_formats, ingest);
criterion_main!(benches);
