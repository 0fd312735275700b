//! Confluent framing and Avro decoding (`kafka::decode`) over arbitrary
//! record payloads, as they come off a topic. A poison record must be an
//! error, never a panic, a hang or a huge allocation (SPEC section 5), and
//! whatever decodes must be valid JSON, since the bytes are served as is.
//!
//! The writer schemas are the project's own (`config/schemas/*.avsc`) plus
//! one that uses every kind of node the decoder compiles (unions, enums,
//! maps, fixed, decimals, logical types, a recursive record and two records
//! that contain each other, which no datum can satisfy). The frame's
//! schema ID picks one; the payload is also decoded as a bare datum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_cache::kafka::decode::{decode_datum, parse_frame, WriterSchema};
use std::sync::OnceLock;

const EVERYTHING: &str = r#"{"type":"record","name":"Everything","namespace":"fuzz","fields":[
 {"name":"id","type":"string"},
 {"name":"updatedAt","type":["null","long"]},
 {"name":"flag","type":"boolean"},
 {"name":"n","type":"int"},
 {"name":"f","type":"float"},
 {"name":"d","type":"double"},
 {"name":"raw","type":"bytes"},
 {"name":"colour","type":{"type":"enum","name":"Colour","symbols":["RED","GREEN"]}},
 {"name":"hash","type":{"type":"fixed","name":"Hash","size":4}},
 {"name":"tags","type":{"type":"map","values":["null","string","Colour"]}},
 {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":20,"scale":3}},
 {"name":"fixedPrice","type":{"type":"fixed","name":"Money","size":8,"logicalType":"decimal","precision":18,"scale":2}},
 {"name":"uuid","type":{"type":"string","logicalType":"uuid"}},
 {"name":"day","type":{"type":"int","logicalType":"date"}},
 {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
 {"name":"wait","type":{"type":"fixed","name":"Wait","size":12,"logicalType":"duration"}},
 {"name":"nothing","type":{"type":"array","items":"null"}},
 {"name":"list","type":{"type":"record","name":"Node","fields":[
   {"name":"value","type":"long"},{"name":"next","type":["null","Node"]}]}},
 {"name":"hashes","type":{"type":"array","items":"Hash"}},
 {"name":"loops","type":{"type":"array","items":{"type":"record","name":"A","fields":[
   {"name":"b","type":{"type":"record","name":"B","fields":[{"name":"a","type":"A"}]}}]}}}
]}"#;

fn schemas() -> &'static [WriterSchema] {
    static SCHEMAS: OnceLock<Vec<WriterSchema>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        [
            include_str!("../../config/schemas/customer.avsc"),
            include_str!("../../config/schemas/bill.avsc"),
            include_str!("../../config/schemas/usage.avsc"),
            include_str!("../../config/schemas/ticket.avsc"),
            EVERYTHING,
        ]
        .iter()
        .map(|text| WriterSchema::parse(text).expect("the fuzz schemas are valid"))
        .collect()
    })
}

fn decode(schema: &WriterSchema, datum: &[u8]) {
    if let Ok(value) = decode_datum(schema, datum) {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&value.body) {
            panic!("decoded body is not JSON ({e}): {}", String::from_utf8_lossy(&value.body));
        }
        assert!(value.etag.starts_with(b"\"") && value.etag.ends_with(b"\"") && value.etag.len() >= 2);
    }
}

fuzz_target!(|payload: &[u8]| {
    let schemas = schemas();
    if let Ok((id, datum)) = parse_frame(payload) {
        decode(&schemas[id as usize % schemas.len()], datum);
    }
    let pick = payload.first().map_or(0, |b| usize::from(*b) % schemas.len());
    decode(&schemas[pick], payload.get(1..).unwrap_or_default());
});
