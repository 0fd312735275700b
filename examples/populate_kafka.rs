//! populate_kafka: registers a record type's schema under `{topic}-value`
//! and produces fake but realistic records in the Confluent wire format,
//! keyed by the type's key field.
//!
//!   cargo run --release --example populate_kafka -- -c config/local.yaml -m bill -n 10000
//!
//! Options: --config/-c FILE (required), --secrets/-s DIR (default secrets),
//! --message-type/-m customer|bill|usage|ticket (default customer),
//! --topic/-t NAME (default: the config's topic for the type), --count/-n N
//! (default 100), --seed N (default 1), --updates N (re-send N keys with new
//! values), --tombstones N (delete N keys), --expect FILE (write the final
//! body per key as JSON lines, for checking what the cache serves).

use push_cache::config::Config;
use push_cache::kafka::consumer::client_config;
use push_cache::kafka::decode::encode_frame;
use push_cache::kafka::registry_client::RegistryClient;
use push_cache_sample::{encode, record, Kind, Rng};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

struct Args {
    config: String,
    secrets: String,
    kind: Kind,
    topic: Option<String>,
    count: u64,
    seed: u64,
    updates: u64,
    tombstones: u64,
    expect: Option<String>,
}

fn usage_exit(msg: &str) -> ! {
    eprintln!("populate_kafka: {msg}\nusage: populate_kafka -c CONFIG [-s SECRETS] [-m customer|bill|usage|ticket] [-t TOPIC] [-n COUNT] [--seed N] [--updates N] [--tombstones N] [--expect FILE]");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        config: String::new(),
        secrets: "secrets".into(),
        kind: Kind::Customer,
        topic: None,
        count: 100,
        seed: 1,
        updates: 0,
        tombstones: 0,
        expect: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage_exit(&format!("{flag} needs a value")));
        let number =
            |v: String| v.parse::<u64>().unwrap_or_else(|_| usage_exit(&format!("{flag} expects a number, got `{v}`")));
        match flag.as_str() {
            "-c" | "--config" => a.config = value(),
            "-s" | "--secrets" => a.secrets = value(),
            "-m" | "--message-type" => {
                let v = value();
                a.kind = Kind::parse(&v).unwrap_or_else(|| usage_exit(&format!("unknown message type `{v}`")));
            }
            "-t" | "--topic" => a.topic = Some(value()),
            "-n" | "--count" => a.count = number(value()),
            "--seed" => a.seed = number(value()),
            "--updates" => a.updates = number(value()),
            "--tombstones" => a.tombstones = number(value()),
            "--expect" => a.expect = Some(value()),
            "-h" | "--help" => usage_exit("help"),
            other => usage_exit(&format!("unknown argument `{other}`")),
        }
    }
    if a.config.is_empty() {
        usage_exit("--config is required");
    }
    a
}

/// The config's topic for this type: the one named like the type's default
/// topic when the config lists several, else the only one.
fn topic_for(config: &Config, kind: Kind) -> String {
    let topics = config.kafka.topic.names();
    topics
        .iter()
        .find(|t| *t == kind.default_topic())
        .or(topics.first())
        .cloned()
        .unwrap_or_else(|| kind.default_topic().to_string())
}

struct Stats {
    sent: u64,
    bytes: u64,
    min: usize,
    max: usize,
}

impl Stats {
    fn add(&mut self, size: usize) {
        self.sent += 1;
        self.bytes += size as u64;
        self.min = self.min.min(size);
        self.max = self.max.max(size);
    }
}

fn progress(done: u64, total: u64) {
    if total >= 10_000 && (done.is_multiple_of(total / 100) || done == total) {
        let pct = done * 100 / total;
        eprint!("\r[{:<50}] {pct:>3}% {done}/{total}", "=".repeat(pct as usize / 2));
        if done == total {
            eprintln!();
        }
    }
}

fn main() {
    let args = parse_args();
    let config = Config::load(args.config.as_ref(), Some(args.secrets.as_ref())).unwrap_or_else(|e| {
        eprintln!("populate_kafka: {e}");
        std::process::exit(2)
    });
    let topic = args.topic.clone().unwrap_or_else(|| topic_for(&config, args.kind));
    let registry = RegistryClient::new(&config.kafka.schema_registry_url).unwrap_or_else(|e| fail(&e.to_string()));
    let id = registry.register(&format!("{topic}-value"), args.kind.schema()).unwrap_or_else(|e| fail(&e.to_string()));
    let schema = apache_avro::Schema::parse_str(args.kind.schema()).expect("bundled schemas are valid");
    let mut client = client_config(&config);
    client.set("linger.ms", "5").set("queue.buffering.max.messages", "200000");
    let producer: BaseProducer = client.create().unwrap_or_else(|e| fail(&e.to_string()));
    let mut rng = Rng::new(args.seed);
    let mut expected: BTreeMap<String, Option<serde_json::Value>> = BTreeMap::new();
    let mut stats = Stats { sent: 0, bytes: 0, min: usize::MAX, max: 0 };
    let started = Instant::now();
    let total = args.count + args.updates.min(args.count) + args.tombstones.min(args.count);
    let send = |key: &str, payload: Option<&[u8]>, stats: &mut Stats| {
        let mut rec = BaseRecord::<str, [u8]>::to(&topic).key(key);
        if let Some(p) = payload {
            rec = rec.payload(p);
        }
        while let Err((e, r)) = producer.send(rec) {
            if !matches!(e, rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull))
            {
                fail(&format!("cannot produce to {topic}: {e}"));
            }
            producer.poll(Duration::from_millis(5));
            rec = r;
        }
        producer.poll(Duration::ZERO);
        stats.add(key.len() + payload.map_or(0, <[u8]>::len));
        progress(stats.sent, total);
    };
    for n in 0..args.count {
        let sample = record(args.kind, n, 0, &mut rng);
        let frame = encode_frame(id, &encode(&schema, &sample.avro).expect("samples fit their schema"));
        send(&sample.key, Some(&frame), &mut stats);
        expected.insert(sample.key, Some(sample.json));
    }
    for i in 0..args.updates.min(args.count) {
        let n = (i * 7919) % args.count;
        let sample = record(args.kind, n, 1 + i / args.count, &mut rng);
        let frame = encode_frame(id, &encode(&schema, &sample.avro).expect("samples fit their schema"));
        send(&sample.key, Some(&frame), &mut stats);
        expected.insert(sample.key, Some(sample.json));
    }
    let keys: Vec<String> = expected.keys().cloned().collect();
    for i in 0..args.tombstones.min(args.count) {
        let key = &keys[((i * 104_729) % args.count) as usize];
        send(key, None, &mut stats);
        expected.insert(key.clone(), None);
    }
    producer
        .flush(Duration::from_secs(60))
        .unwrap_or_else(|e| fail(&format!("not every record was acknowledged: {e}")));
    let elapsed = started.elapsed();
    if let Some(path) = &args.expect {
        write_expected(path, &expected);
    }
    println!("topic: {topic} (schema id {id}, type {:?})", args.kind);
    println!(
        "messages: {} ({} records, {} updates, {} tombstones)",
        stats.sent,
        args.count,
        args.updates.min(args.count),
        args.tombstones.min(args.count)
    );
    println!("elapsed: {:.3} s", elapsed.as_secs_f64());
    println!("rate: {:.0} messages/s", stats.sent as f64 / elapsed.as_secs_f64().max(1e-9));
    if stats.sent > 0 {
        println!(
            "message size: min {} B, max {} B, avg {:.1} B",
            stats.min,
            stats.max,
            stats.bytes as f64 / stats.sent as f64
        );
    }
}

fn write_expected(path: &str, expected: &BTreeMap<String, Option<serde_json::Value>>) {
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(path).unwrap_or_else(|e| fail(&format!("{path}: {e}"))));
    for (key, body) in expected {
        let _ = writeln!(out, "{}", serde_json::json!({ "key": key, "body": body }));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("populate_kafka: {msg}");
    std::process::exit(1)
}
