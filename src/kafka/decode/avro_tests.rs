use super::*;
use crate::kafka::decode::{encode_frame, parse_frame};
use apache_avro::types::Value;

#[allow(deprecated)]
fn encode(schema: &WriterSchema, value: Value) -> Vec<u8> {
    apache_avro::to_avro_datum(schema.schema(), value).unwrap()
}

fn decode_json(schema_json: &str, value: Value) -> String {
    let schema = WriterSchema::parse(schema_json).unwrap();
    let datum = encode(&schema, value);
    String::from_utf8(decode_datum(&schema, &datum).unwrap().body.to_vec()).unwrap()
}

fn s(v: &str) -> Value {
    Value::String(v.into())
}

const CUSTOMER: &str = r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[
 {"name":"accountId","type":"string"},{"name":"name","type":"string"},{"name":"address","type":"string"},
 {"name":"phone","type":"string"},{"name":"createdAt","type":"long"},{"name":"updatedAt","type":"long"}]}"#;

fn customer_value(name: &str) -> Value {
    Value::Record(vec![
        ("accountId".into(), s("acct-1")),
        ("name".into(), s(name)),
        ("address".into(), s("1 Long Street")),
        ("phone".into(), s("+44")),
        ("createdAt".into(), Value::Long(1_700_000_000_000)),
        ("updatedAt".into(), Value::Long(1_700_000_500_000)),
    ])
}

#[test]
fn frames() {
    assert_eq!(parse_frame(&[0, 0, 0, 1, 2, 9, 9]).unwrap(), (258, &[9u8, 9][..]));
    assert!(matches!(parse_frame(&[1, 0, 0, 0, 1]), Err(DecodeError::BadMagic(1))));
    assert!(matches!(parse_frame(&[0, 0, 0]), Err(DecodeError::Truncated)));
    assert!(matches!(parse_frame(&[]), Err(DecodeError::Truncated)));
    assert_eq!(parse_frame(&encode_frame(7, b"xy")).unwrap(), (7, &b"xy"[..]));
}

#[test]
fn customer_round_trip_with_etag() {
    let schema = WriterSchema::parse(CUSTOMER).unwrap();
    assert_eq!(schema.record_type, "customer");
    let v = decode_datum(&schema, &encode(&schema, customer_value("Ann"))).unwrap();
    assert_eq!(
        &v.body[..],
        br#"{"accountId":"acct-1","name":"Ann","address":"1 Long Street","phone":"+44","createdAt":1700000000000,"updatedAt":1700000500000}"#
    );
    assert_eq!(&v.etag[..], b"\"1700000500000\"");
}

#[test]
fn strings_are_escaped() {
    let json = decode_json(CUSTOMER, customer_value("q\"b\\n\nt\tc\u{1}é€"));
    assert!(json.contains(r#""name":"q\"b\\n\nt\tc\u0001é€""#), "{json}");
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["name"], "q\"b\\n\nt\tc\u{1}é€");
}

#[test]
fn bill_with_payments() {
    let schema = r#"{"type":"record","name":"Bill","fields":[{"name":"accountId","type":"string"},{"name":"year","type":"int"},
      {"name":"totalAmount","type":"double"},{"name":"payments","type":{"type":"array","items":{"type":"record","name":"Payment",
      "fields":[{"name":"date","type":"string"},{"name":"amount","type":"double"},{"name":"method","type":"string"}]}}}]}"#;
    let pay = |a: f64| {
        Value::Record(vec![
            ("date".into(), s("2024-01-31T10:00:00Z")),
            ("amount".into(), Value::Double(a)),
            ("method".into(), s("card")),
        ])
    };
    let v = Value::Record(vec![
        ("accountId".into(), s("a")),
        ("year".into(), Value::Int(2024)),
        ("totalAmount".into(), Value::Double(100.0)),
        ("payments".into(), Value::Array(vec![pay(60.25), pay(39.75)])),
    ]);
    assert_eq!(
        decode_json(schema, v),
        r#"{"accountId":"a","year":2024,"totalAmount":100.0,"payments":[{"date":"2024-01-31T10:00:00Z","amount":60.25,"method":"card"},{"date":"2024-01-31T10:00:00Z","amount":39.75,"method":"card"}]}"#
    );
    let empty = Value::Record(vec![
        ("accountId".into(), s("a")),
        ("year".into(), Value::Int(-1)),
        ("totalAmount".into(), Value::Double(f64::NAN)),
        ("payments".into(), Value::Array(vec![])),
    ]);
    assert_eq!(decode_json(schema, empty), r#"{"accountId":"a","year":-1,"totalAmount":null,"payments":[]}"#);
}

#[test]
fn unions_enums_maps_bytes_fixed_nested() {
    let schema = r#"{"type":"record","name":"X","fields":[
      {"name":"u","type":["null","string"]},{"name":"n","type":["null","long"]},
      {"name":"e","type":{"type":"enum","name":"Color","symbols":["RED","GREEN"]}},
      {"name":"m","type":{"type":"map","values":"int"}},
      {"name":"b","type":"bytes"},{"name":"f","type":{"type":"fixed","name":"F","size":3}},
      {"name":"r","type":{"type":"record","name":"In","fields":[{"name":"ok","type":"boolean"},{"name":"x","type":"float"}]}},
      {"name":"again","type":"F"}]}"#;
    let v = Value::Record(vec![
        ("u".into(), Value::Union(1, Box::new(s("hi")))),
        ("n".into(), Value::Union(0, Box::new(Value::Null))),
        ("e".into(), Value::Enum(1, "GREEN".into())),
        ("m".into(), Value::Map([("k".to_string(), Value::Int(5))].into_iter().collect())),
        ("b".into(), Value::Bytes(b"hello".to_vec())),
        ("f".into(), Value::Fixed(3, vec![1, 2, 3])),
        ("r".into(), Value::Record(vec![("ok".into(), Value::Boolean(true)), ("x".into(), Value::Float(1.1))])),
        ("again".into(), Value::Fixed(3, vec![255, 255, 255])),
    ]);
    assert_eq!(
        decode_json(schema, v),
        r#"{"u":"hi","n":null,"e":"GREEN","m":{"k":5},"b":"aGVsbG8=","f":"AQID","r":{"ok":true,"x":1.1},"again":"////"}"#
    );
}

#[test]
fn logical_types() {
    let schema = r#"{"type":"record","name":"L","fields":[
      {"name":"d","type":{"type":"int","logicalType":"date"}},
      {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
      {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
      {"name":"id","type":{"type":"string","logicalType":"uuid"}}]}"#;
    let v = Value::Record(vec![
        ("d".into(), Value::Date(19_000)),
        ("ts".into(), Value::TimestampMillis(1_700_000_000_000)),
        ("dec".into(), Value::Decimal(apache_avro::Decimal::from(vec![0xcf, 0xc7]))), // -12345
        ("id".into(), Value::Uuid("67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap())),
    ]);
    assert_eq!(
        decode_json(schema, v),
        r#"{"d":19000,"ts":1700000000000,"dec":"-123.45","id":"67e55044-10b1-426f-9247-bb680e5fe0c8"}"#
    );
}

#[test]
fn floats_are_formatted_like_serde_json() {
    for v in [100.0, 0.1, 1e21, -2.5e-7, 120.5, 0.0] {
        let mut out = Vec::new();
        write_float(&mut out, v, false);
        assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&v).unwrap());
    }
}

#[test]
fn decimal_text() {
    let mut out = Vec::new();
    write_decimal(&mut out, &[0x01], 3).unwrap();
    assert_eq!(out, br#""0.001""#);
    out.clear();
    write_decimal(&mut out, &[0x30, 0x39], 0).unwrap();
    assert_eq!(out, br#""12345""#);
    out.clear();
    write_decimal(&mut out, &[], 2).unwrap();
    assert_eq!(out, br#""0.00""#, "empty bytes are zero");
    out.clear();
    write_decimal(&mut out, &[0xff, 0x85], 1).unwrap();
    assert_eq!(out, br#""-12.3""#);
}

/// Wider than an i128: the exact digits, checked against a decimal
/// long-multiplication of the same bytes, for both signs and many widths.
#[test]
fn decimals_of_any_width_keep_every_digit() {
    fn reference(bytes: &[u8]) -> String {
        // Unsigned value of the bytes in base 10, little-endian digits.
        let mut digits = vec![0u32];
        for b in bytes {
            let mut carry = u32::from(*b);
            for d in digits.iter_mut() {
                let v = *d * 256 + carry;
                *d = v % 10;
                carry = v / 10;
            }
            while carry > 0 {
                digits.push(carry % 10);
                carry /= 10;
            }
        }
        while digits.len() > 1 && digits.last() == Some(&0) {
            digits.pop();
        }
        digits.iter().rev().map(|d| char::from(b'0' + *d as u8)).collect()
    }
    let mut rng = crate::kafka::decode::test_rng::Rng(0x9e37_79b9_7f4a_7c15);
    for width in [1, 15, 16, 17, 20, 33, 64, 200, 512] {
        let mut bytes: Vec<u8> = (0..width).map(|_| rng.next() as u8).collect();
        bytes[0] &= 0x7f;
        let mut out = Vec::new();
        write_decimal(&mut out, &bytes, 0).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), format!("\"{}\"", reference(&bytes)), "width {width}");
        // The negative: two's complement of the same magnitude.
        let mut negated: Vec<u8> = bytes.iter().map(|b| !b).collect();
        for b in negated.iter_mut().rev() {
            let (sum, carry) = b.overflowing_add(1);
            *b = sum;
            if !carry {
                break;
            }
        }
        if negated[0] & 0x80 != 0 {
            let mut out = Vec::new();
            write_decimal(&mut out, &negated, 0).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), format!("\"-{}\"", reference(&bytes)), "width {width}");
        }
    }
    let mut out = Vec::new();
    assert!(write_decimal(&mut out, &vec![1; MAX_DECIMAL_BYTES + 1], 0).is_err());
}

#[test]
fn schema_evolution_each_version_with_its_writer_schema() {
    let v2 = CUSTOMER.replace(
        r#"{"name":"updatedAt","type":"long"}]"#,
        r#"{"name":"updatedAt","type":"long"},{"name":"email","type":["null","string"],"default":null}]"#,
    );
    let old = decode_json(CUSTOMER, customer_value("A"));
    let Value::Record(mut fields) = customer_value("A") else { unreachable!() };
    fields.push(("email".into(), Value::Union(1, Box::new(s("a@x")))));
    let new = decode_json(&v2, Value::Record(fields));
    assert!(!old.contains("email"));
    assert!(new.ends_with(r#""updatedAt":1700000500000,"email":"a@x"}"#), "{new}");
}

#[test]
fn bad_datums_are_errors_not_panics() {
    let schema = WriterSchema::parse(CUSTOMER).unwrap();
    let good = encode(&schema, customer_value("Ann"));
    for cut in 0..good.len() {
        assert!(matches!(decode_datum(&schema, &good[..cut]), Err(DecodeError::Malformed(_))), "cut {cut}");
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(decode_datum(&schema, &trailing).is_err());
    // A huge string length must not allocate.
    assert!(decode_datum(&schema, &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
    // Pseudo-random garbage against a schema with arrays, maps and unions.
    let rich = WriterSchema::parse(
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"array","items":{"type":"map","values":["null","string","R"]}}}]}"#,
    )
    .unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..2000 {
        let bytes: Vec<u8> = (0..len % 64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = decode_datum(&rich, &bytes);
        let _ = decode_datum(&schema, &bytes);
    }
}

#[test]
fn deep_recursion_is_bounded() {
    let schema =
        WriterSchema::parse(r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#)
            .unwrap();
    let mut datum = vec![2u8; 10_000]; // union index 1 (Node), again and again
    datum.push(0);
    assert!(decode_datum(&schema, &datum).is_err());
    assert_eq!(&decode_datum(&schema, &[2, 0]).unwrap().body[..], br#"{"next":{"next":null}}"#);
}

#[test]
fn records_that_contain_each_other_are_an_error_not_a_stack_overflow() {
    // Found by review while writing the fuzz targets: an array of A overflowed the stack.
    let schema = WriterSchema::parse(
        r#"{"type":"record","name":"Top","fields":[{"name":"xs","type":{"type":"array","items":
            {"type":"record","name":"A","fields":[{"name":"b","type":{"type":"record","name":"B","fields":[{"name":"a","type":"A"}]}}]}}}]}"#,
    )
    .unwrap();
    assert!(matches!(decode_datum(&schema, &[2, 0]), Err(DecodeError::Malformed(_))));
    assert_eq!(&decode_datum(&schema, &[0]).unwrap().body[..], br#"{"xs":[]}"#);
}

#[test]
fn non_records_are_refused() {
    assert!(matches!(WriterSchema::parse(r#""string""#), Err(DecodeError::NotARecord(_))));
    assert!(matches!(WriterSchema::parse("{not json"), Err(DecodeError::NotARecord(_))));
    let e =
        WriterSchema::parse(r#"{"type":"record","name":"E","fields":[{"name":"updatedAt","type":["null","long"]}]}"#)
            .unwrap();
    assert_eq!(e.updated_at, Some(0));
    assert_eq!(&decode_datum(&e, &[2, 20]).unwrap().etag[..], b"\"10\"");
    assert_eq!(decode_datum(&e, &[0]).unwrap().etag.len(), 18, "null updatedAt: body hash");
}

#[test]
fn arrays_of_empty_items_cannot_blow_up_the_body() {
    // 806 bytes that would decode to a 1 GB body: 200 blocks of 2^20 nulls each.
    let schema = WriterSchema::parse(
        r#"{"type":"record","name":"Z","fields":[{"name":"nothing","type":{"type":"array","items":"null"}}]}"#,
    )
    .unwrap();
    let mut datum = Vec::new();
    for _ in 0..200 {
        datum.extend_from_slice(&[0x80, 0x80, 0x80, 0x01]);
    }
    datum.push(0);
    assert!(matches!(decode_datum(&schema, &datum), Err(DecodeError::TooLarge)));
    assert_eq!(DecodeError::TooLarge.reason(), "too_large");
}

#[test]
fn schemas_that_double_at_every_level_cannot_blow_up_the_body() {
    // R40 holds two R39s, ... R1 holds two empty R0s: an empty datum means 2^40 `{}`.
    let mut schema = r#"{"type":"record","name":"R0","fields":[]}"#.to_string();
    for i in 1..=40 {
        schema = format!(
            r#"{{"type":"record","name":"R{i}","fields":[{{"name":"a","type":{schema}}},{{"name":"b","type":"R{}"}}]}}"#,
            i - 1
        );
    }
    let schema = WriterSchema::parse(&schema).unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(decode_datum(&schema, &[]), Err(DecodeError::TooLarge)));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn named_types_from_references() {
    let address =
        r#"{"type":"record","name":"Address","namespace":"com.acme","fields":[{"name":"city","type":"string"}]}"#;
    let tier = r#"{"type":"enum","name":"Tier","namespace":"com.acme","symbols":["BASIC","GOLD"]}"#;
    let customer = r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[
      {"name":"home","type":"Address"},{"name":"tier","type":"com.acme.Tier"},{"name":"updatedAt","type":"long"}]}"#;
    let schema = WriterSchema::parse_with_references(customer, &[address, tier]).unwrap();
    assert_eq!(schema.record_type, "customer");
    // home.city = "Leeds", tier = GOLD, updatedAt = 5
    let datum = [&[10u8][..], b"Leeds", &[2, 10]].concat();
    let value = decode_datum(&schema, &datum).unwrap();
    assert_eq!(&value.body[..], br#"{"home":{"city":"Leeds"},"tier":"GOLD","updatedAt":5}"#);
    assert_eq!(&value.etag[..], b"\"5\"");
    assert!(WriterSchema::parse_with_references(customer, &[address]).is_err(), "a missing reference");
}

#[test]
fn keys_of_any_type() {
    let schema = WriterSchema::parse_with_references(r#""long""#, &[]).unwrap();
    assert!(!schema.is_record());
    assert_eq!(schema.record_type, "long");
    assert_eq!(super::decode_any(&schema, &[3]).unwrap(), b"-2");
    assert!(decode_datum(&schema, &[3]).is_err(), "a value must be a record");
    assert!(super::decode_any(&schema, &[3, 3]).is_err(), "bytes left over");
}
