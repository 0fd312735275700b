//! Sample data for Push Cache's tools and tests, kept out of the service
//! library: nothing here runs in production.
//!
//! - this module: fake but realistic records of the four known types
//!   (customer, bill, usage, ticket) for the `populate_kafka` tool and the
//!   local stack, deterministic for a seed so a run can be reproduced and
//!   checked key by key;
//! - `fixed`: small records with plain, predictable field values and the
//!   exact JSON body the cache must serve for each, for the tests.

pub mod fixed;

use apache_avro::types::Value as Avro;
use serde_json::{json, Value as Json};

/// The record types the tools know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Customer,
    Bill,
    Usage,
    Ticket,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "customer" => Some(Kind::Customer),
            "bill" => Some(Kind::Bill),
            "usage" => Some(Kind::Usage),
            "ticket" => Some(Kind::Ticket),
            _ => None,
        }
    }

    /// The Avro schema, from `config/schemas/`.
    pub fn schema(self) -> &'static str {
        match self {
            Kind::Customer => include_str!("../../config/schemas/customer.avsc"),
            Kind::Bill => include_str!("../../config/schemas/bill.avsc"),
            Kind::Usage => include_str!("../../config/schemas/usage.avsc"),
            Kind::Ticket => include_str!("../../config/schemas/ticket.avsc"),
        }
    }

    /// The topic the local stack uses for this type.
    pub fn default_topic(self) -> &'static str {
        match self {
            Kind::Customer => "customers",
            Kind::Bill => "bills",
            Kind::Usage => "usage",
            Kind::Ticket => "tickets",
        }
    }
}

/// splitmix64: tiny, fast, and the same sequence everywhere for a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// A money amount with two decimals, in [lo, hi).
    fn money(&mut self, lo: u64, hi: u64) -> f64 {
        (lo * 100 + self.below((hi - lo) * 100)) as f64 / 100.0
    }
}

const FIRST: &[&str] = &[
    "Olivia", "Noah", "Amelia", "Oliver", "Isla", "George", "Ava", "Arthur", "Mia", "Leo", "Grace", "Harry", "Freya",
    "Oscar", "Lily", "Muhammad", "Sofia", "Jack", "Zara", "Théo",
];
const LAST: &[&str] = &[
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Robinson", "Wright",
    "Thompson", "Evans", "Walker", "O'Neill", "Nowak", "García", "Khan",
];
const STREETS: &[&str] = &[
    "High Street",
    "Station Road",
    "Church Lane",
    "Victoria Road",
    "Green Lane",
    "Manor Road",
    "Park Avenue",
    "Mill Lane",
    "Kings Road",
    "Queensway",
];
const TOWNS: &[&str] =
    &["Leeds", "Bristol", "Norwich", "York", "Cardiff", "Glasgow", "Exeter", "Bath", "Durham", "Belfast"];
const METHODS: &[&str] = &["card", "direct_debit", "bank_transfer", "paypal"];
const SERVICES: &[(&str, &str)] =
    &[("mobile_data", "GB"), ("voice", "minutes"), ("sms", "messages"), ("broadband", "GB"), ("tv", "hours")];
const ISSUES: &[&str] = &[
    "No signal at home",
    "Bill higher than expected",
    "Router keeps restarting",
    "Cannot log in to the app",
    "Slow broadband in the evening",
    "Roaming charges \"disputed\"",
    "Porting my number",
];
const STATUSES: &[&str] = &["open", "in_progress", "waiting_for_customer", "resolved", "closed"];

/// Base of all timestamps: 2024-01-01T00:00:00Z in milliseconds.
const EPOCH_MS: i64 = 1_704_067_200_000;

/// A generated record: Kafka key, Avro value, and the JSON body the cache
/// must serve for it.
pub struct Sample {
    pub key: String,
    pub avro: Avro,
    pub json: Json,
}

/// Record number `n` of `kind`; `version` > 0 gives an update of the same key.
pub fn record(kind: Kind, n: u64, version: u64, rng: &mut Rng) -> Sample {
    let account = format!("acct-{n:08}");
    match kind {
        Kind::Customer => customer(account, n, version, rng),
        Kind::Bill => bill(account, rng),
        Kind::Usage => usage(account, rng),
        Kind::Ticket => ticket(format!("tkt-{n:08}"), account, rng),
    }
}

fn s(v: &str) -> Avro {
    Avro::String(v.to_string())
}

fn customer(account: String, n: u64, version: u64, rng: &mut Rng) -> Sample {
    let name = format!("{} {}", rng.pick(FIRST), rng.pick(LAST));
    let address = format!(
        "{} {}, {}, {}{} {}{}",
        1 + rng.below(250),
        rng.pick(STREETS),
        rng.pick(TOWNS),
        ["LS", "BS", "NR", "YO"][rng.below(4) as usize],
        1 + rng.below(20),
        1 + rng.below(9),
        ["AB", "CD", "EF", "GH"][rng.below(4) as usize]
    );
    let phone = format!("+44 20 7946 {:04}", rng.below(10_000));
    let created = EPOCH_MS + (n as i64 % 86_400) * 1000;
    let updated = created + 1000 * version as i64 + 1;
    let avro = Avro::Record(vec![
        ("accountId".into(), s(&account)),
        ("name".into(), s(&name)),
        ("address".into(), s(&address)),
        ("phone".into(), s(&phone)),
        ("createdAt".into(), Avro::Long(created)),
        ("updatedAt".into(), Avro::Long(updated)),
    ]);
    let json = json!({"accountId": account, "name": name, "address": address, "phone": phone, "createdAt": created, "updatedAt": updated});
    Sample { key: account, avro, json }
}

fn bill(account: String, rng: &mut Rng) -> Sample {
    let year = 2020 + rng.below(6) as i32;
    let payments: Vec<(String, f64, &str)> = (0..1 + rng.below(4))
        .map(|m| {
            (format!("{year}-{:02}-{:02}T09:30:00Z", m + 1, 1 + rng.below(28)), rng.money(5, 150), rng.pick(METHODS))
        })
        .collect();
    let total = (payments.iter().map(|p| p.1).sum::<f64>() * 100.0).round() / 100.0;
    let avro_payments = payments
        .iter()
        .map(|(d, a, m)| {
            Avro::Record(vec![("date".into(), s(d)), ("amount".into(), Avro::Double(*a)), ("method".into(), s(m))])
        })
        .collect();
    let avro = Avro::Record(vec![
        ("accountId".into(), s(&account)),
        ("year".into(), Avro::Int(year)),
        ("totalAmount".into(), Avro::Double(total)),
        ("payments".into(), Avro::Array(avro_payments)),
    ]);
    let json_payments: Vec<Json> =
        payments.iter().map(|(d, a, m)| json!({"date": d, "amount": a, "method": m})).collect();
    let json = json!({"accountId": account, "year": year, "totalAmount": total, "payments": json_payments});
    Sample { key: account, avro, json }
}

fn usage(account: String, rng: &mut Rng) -> Sample {
    let (service, unit) = SERVICES[rng.below(SERVICES.len() as u64) as usize];
    let amount = rng.money(0, 500);
    let ts = EPOCH_MS + rng.below(365 * 86_400) as i64 * 1000;
    let avro = Avro::Record(vec![
        ("accountId".into(), s(&account)),
        ("serviceType".into(), s(service)),
        ("amount".into(), Avro::Double(amount)),
        ("unit".into(), s(unit)),
        ("timestamp".into(), Avro::Long(ts)),
    ]);
    let json = json!({"accountId": account, "serviceType": service, "amount": amount, "unit": unit, "timestamp": ts});
    Sample { key: account, avro, json }
}

fn ticket(id: String, account: String, rng: &mut Rng) -> Sample {
    let (issue, status) = (rng.pick(ISSUES), rng.pick(STATUSES));
    let ts = EPOCH_MS + rng.below(365 * 86_400) as i64 * 1000;
    let avro = Avro::Record(vec![
        ("ticketId".into(), s(&id)),
        ("accountId".into(), s(&account)),
        ("issue".into(), s(issue)),
        ("status".into(), s(status)),
        ("timestamp".into(), Avro::Long(ts)),
    ]);
    let json = json!({"ticketId": id, "accountId": account, "issue": issue, "status": status, "timestamp": ts});
    Sample { key: id, avro, json }
}

/// The Avro binary datum of a sample under `schema`.
pub fn encode(schema: &apache_avro::Schema, value: &Avro) -> Result<Vec<u8>, apache_avro::Error> {
    apache_avro::writer::datum::GenericDatumWriter::builder(schema).build()?.write_value_to_vec(value.clone())
}
