//! The populate tool's sample records decode to exactly the JSON bodies the
//! sample crate says the cache must serve, and a seed reproduces its records.

use push_cache::kafka::decode::{decode_datum, WriterSchema};
use push_cache_sample::{encode, record, Kind, Rng};

#[test]
fn every_kind_decodes_to_its_json() {
    for kind in [Kind::Customer, Kind::Bill, Kind::Usage, Kind::Ticket] {
        let schema = WriterSchema::parse(kind.schema()).unwrap();
        let mut rng = Rng::new(7);
        for n in 0..200 {
            let sample = record(kind, n, n % 3, &mut rng);
            let datum = encode(schema.schema(), &sample.avro).unwrap();
            let value = decode_datum(&schema, &datum).unwrap();
            assert_eq!(String::from_utf8(value.body.to_vec()).unwrap(), sample.json.to_string(), "{kind:?} {n}");
        }
    }
}

#[test]
fn seeds_reproduce() {
    let a: Vec<String> = (0..5).map(|n| record(Kind::Bill, n, 0, &mut Rng::new(1)).json.to_string()).collect();
    let b: Vec<String> = (0..5).map(|n| record(Kind::Bill, n, 0, &mut Rng::new(1)).json.to_string()).collect();
    assert_eq!(a, b);
}
