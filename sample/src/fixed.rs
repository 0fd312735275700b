//! Fixed test records: plain, predictable field values (`acct-00000042`,
//! `Customer 42 v3`) and, beside each Avro value, the exact JSON body the
//! cache must serve for it, written out by hand so a test compares the
//! decoder's output with an independent expectation. The writer schemas the
//! tests register are here too.

use apache_avro::types::Value;

pub const CUSTOMER_V1: &str = r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[
 {"name":"accountId","type":"string"},{"name":"name","type":"string"},{"name":"address","type":"string"},
 {"name":"phone","type":"string"},{"name":"createdAt","type":"long"},{"name":"updatedAt","type":"long"}]}"#;

pub const CUSTOMER_V2: &str = r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[
 {"name":"accountId","type":"string"},{"name":"name","type":"string"},{"name":"address","type":"string"},
 {"name":"phone","type":"string"},{"name":"createdAt","type":"long"},{"name":"updatedAt","type":"long"},
 {"name":"email","type":["null","string"],"default":null}]}"#;

pub const BILL: &str = r#"{"type":"record","name":"Bill","namespace":"com.acme","fields":[
 {"name":"accountId","type":"string"},{"name":"year","type":"int"},{"name":"totalAmount","type":"double"},
 {"name":"payments","type":{"type":"array","items":{"type":"record","name":"Payment","fields":[
   {"name":"date","type":"string"},{"name":"amount","type":"double"},{"name":"method","type":"string"}]}}}]}"#;

pub const USAGE: &str = r#"{"type":"record","name":"Usage","namespace":"com.acme","fields":[
 {"name":"accountId","type":"string"},{"name":"serviceType","type":"string"},{"name":"amount","type":"double"},
 {"name":"unit","type":"string"},{"name":"timestamp","type":"long"}]}"#;

pub const TICKET: &str = r#"{"type":"record","name":"Ticket","namespace":"com.acme","fields":[
 {"name":"ticketId","type":"string"},{"name":"accountId","type":"string"},{"name":"issue","type":"string"},
 {"name":"status","type":"string"},{"name":"timestamp","type":"long"}]}"#;

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

/// A customer record and the JSON body the cache must serve for it.
pub fn customer(i: u64, version: u64) -> (Value, String) {
    let (id, name, addr, created, updated) = (
        format!("acct-{i:08}"),
        format!("Customer {i} v{version}"),
        format!("{i} Long Street"),
        1_700_000_000_000 + i,
        1_700_000_500_000 + i * 10 + version,
    );
    let value = Value::Record(vec![
        ("accountId".into(), s(&id)),
        ("name".into(), s(&name)),
        ("address".into(), s(&addr)),
        ("phone".into(), s("+44 20 7946 0000")),
        ("createdAt".into(), Value::Long(created as i64)),
        ("updatedAt".into(), Value::Long(updated as i64)),
    ]);
    let json = format!(
        r#"{{"accountId":"{id}","name":"{name}","address":"{addr}","phone":"+44 20 7946 0000","createdAt":{created},"updatedAt":{updated}}}"#
    );
    (value, json)
}

pub fn customer_v2(i: u64, email: Option<&str>) -> (Value, String) {
    let (Value::Record(mut fields), json) = customer(i, 2) else { unreachable!() };
    let (avro, text) = match email {
        Some(e) => (Value::Union(1, Box::new(s(e))), format!("\"{e}\"")),
        None => (Value::Union(0, Box::new(Value::Null)), "null".to_string()),
    };
    fields.push(("email".into(), avro));
    (Value::Record(fields), format!("{},\"email\":{text}}}", &json[..json.len() - 1]))
}

pub fn bill(i: u64) -> (Value, String) {
    let id = format!("acct-{i:08}");
    let payment = |d: &str, a: f64, m: &str| {
        Value::Record(vec![("date".into(), s(d)), ("amount".into(), Value::Double(a)), ("method".into(), s(m))])
    };
    let value = Value::Record(vec![
        ("accountId".into(), s(&id)),
        ("year".into(), Value::Int(2024)),
        ("totalAmount".into(), Value::Double(120.5)),
        (
            "payments".into(),
            Value::Array(vec![
                payment("2024-01-31T10:00:00Z", 60.25, "card"),
                payment("2024-02-29T10:00:00Z", 60.25, "direct_debit"),
            ]),
        ),
    ]);
    let json = format!(
        r#"{{"accountId":"{id}","year":2024,"totalAmount":120.5,"payments":[{{"date":"2024-01-31T10:00:00Z","amount":60.25,"method":"card"}},{{"date":"2024-02-29T10:00:00Z","amount":60.25,"method":"direct_debit"}}]}}"#
    );
    (value, json)
}

pub fn usage(i: u64) -> (Value, String) {
    let id = format!("acct-{i:08}");
    let value = Value::Record(vec![
        ("accountId".into(), s(&id)),
        ("serviceType".into(), s("mobile_data")),
        ("amount".into(), Value::Double(1.5)),
        ("unit".into(), s("GB")),
        ("timestamp".into(), Value::Long(1_700_000_000_000)),
    ]);
    (
        value,
        format!(
            r#"{{"accountId":"{id}","serviceType":"mobile_data","amount":1.5,"unit":"GB","timestamp":1700000000000}}"#
        ),
    )
}

pub fn ticket(i: u64) -> (Value, String) {
    let (tid, id) = (format!("tkt-{i:06}"), format!("acct-{i:08}"));
    let value = Value::Record(vec![
        ("ticketId".into(), s(&tid)),
        ("accountId".into(), s(&id)),
        ("issue".into(), s("No \"signal\" at home")),
        ("status".into(), s("open")),
        ("timestamp".into(), Value::Long(1_700_000_000_000)),
    ]);
    (
        value,
        format!(
            r#"{{"ticketId":"{tid}","accountId":"{id}","issue":"No \"signal\" at home","status":"open","timestamp":1700000000000}}"#
        ),
    )
}
