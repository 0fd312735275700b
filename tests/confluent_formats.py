"""Produces Avro, Protobuf and JSON Schema records with Confluent's own
serializers, under every compression codec, and says what push-cache must serve.

Usage: python3 tests/confluent_formats.py BOOTSTRAP REGISTRY_URL WORKDIR PHASE
  PHASE v1: first schema versions; v2: the next versions (run after v1, in a
  new process, since a Python process can hold only one version of a .proto).

Writes WORKDIR/expected-PHASE.json: a list of [path, body] where body is the
exact JSON text push-cache must serve, or null for a deleted key. The bodies
are computed here, independently of the service: json.dumps with compact
separators for Avro and JSON Schema (logical types converted by hand as
push-cache documents them), and google.protobuf.json_format for Protobuf.

Topics (created by the caller): fmt-avro (Avro keys and values, the value
schema references another subject), fmt-protobuf (Protobuf keys and values,
the value imports a file registered under another subject), fmt-json (JSON
Schema values, keys JSON objects of two fields).
"""
import datetime
import decimal
import importlib
import json
import os
import subprocess
import sys
import urllib.parse
import uuid

from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

CODECS = ["gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 8

ADDRESS = {
    "v1": {"type": "record", "name": "Address", "namespace": "com.acme",
           "fields": [{"name": "street", "type": "string"}, {"name": "city", "type": "string"}]},
    "v2": {"type": "record", "name": "Address", "namespace": "com.acme",
           "fields": [{"name": "street", "type": "string"}, {"name": "city", "type": "string"},
                      {"name": "country", "type": "string", "default": "GB"}]},
}
CUSTOMER_FIELDS = [
    {"name": "accountId", "type": "string"},
    {"name": "name", "type": "string"},
    {"name": "address", "type": "com.acme.Address"},
    {"name": "balance", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
    # 45 digits: wider than any machine integer, served with every digit.
    {"name": "wide", "type": {"type": "bytes", "logicalType": "decimal", "precision": 45, "scale": 10}},
    {"name": "token", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "born", "type": {"type": "int", "logicalType": "date"}},
    {"name": "score", "type": "double"},
    {"name": "tier", "type": {"type": "enum", "name": "Tier", "symbols": ["BASIC", "GOLD"]}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "updatedAt", "type": {"type": "long", "logicalType": "timestamp-millis"}},
]
CUSTOMER = {
    "v1": {"type": "record", "name": "Customer", "namespace": "com.acme", "fields": CUSTOMER_FIELDS},
    "v2": {"type": "record", "name": "Customer", "namespace": "com.acme",
           "fields": CUSTOMER_FIELDS + [{"name": "email", "type": ["null", "string"], "default": None}]},
}
CUSTOMER_KEY = {"type": "record", "name": "CustomerKey", "namespace": "com.acme",
                "fields": [{"name": "accountId", "type": "string"}]}

MONEY_PROTO = """syntax = "proto3";
package shared;
message Money {
  string currency = 1;
  int64 units = 2;
  int32 nanos = 3;
}
"""
BILL_PROTO = {
    "v1": """syntax = "proto3";
package acme;
import "shared/money.proto";
import "google/protobuf/timestamp.proto";
message Bill {
  string account_id = 1;
  int32 year = 2;
  shared.Money total = 3;
  repeated Payment payments = 4;
  Status status = 5;
  google.protobuf.Timestamp issued_at = 6;
  int64 updated_at = 7;
  message Payment { string method = 1; double amount = 2; }
  enum Status { UNKNOWN = 0; OPEN = 1; PAID = 2; }
}
message BillKey { string account_id = 1; }
""",
}
BILL_PROTO["v2"] = BILL_PROTO["v1"].replace(
    "  int64 updated_at = 7;\n", "  int64 updated_at = 7;\n  string note = 8;\n  bool disputed = 9;\n")

TICKET_SCHEMA = {
    "v1": {"$schema": "http://json-schema.org/draft-07/schema#", "title": "com.acme.Ticket", "type": "object",
           "properties": {"ticketId": {"type": "string"}, "issue": {"type": "string"},
                          "priority": {"type": "integer"}, "updatedAt": {"type": "integer"}}},
}
TICKET_SCHEMA["v2"] = json.loads(json.dumps(TICKET_SCHEMA["v1"]))
TICKET_SCHEMA["v2"]["properties"]["labels"] = {"type": "array", "items": {"type": "string"}}
TICKET_KEY_SCHEMA = {"title": "TicketKey", "type": "object",
                     "properties": {"region": {"type": "string"}, "id": {"type": "integer"}}}


def compact(value, ascii_only=True):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only)


def path(route, key):
    return f"/api/{route}/{urllib.parse.quote(key, safe='')}"


def generate_protobuf(workdir, phase):
    """Generates shared/money_pb2.py and acme/bill_pb2.py with protoc."""
    src = os.path.join(workdir, f"proto-{phase}")
    os.makedirs(os.path.join(src, "shared"), exist_ok=True)
    os.makedirs(os.path.join(src, "acme"), exist_ok=True)
    with open(os.path.join(src, "shared", "money.proto"), "w") as f:
        f.write(MONEY_PROTO)
    with open(os.path.join(src, "acme", "bill.proto"), "w") as f:
        f.write(BILL_PROTO[phase])
    from grpc_tools import protoc
    import grpc_tools
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    code = protoc.main(["protoc", f"-I{src}", f"-I{well_known}", f"--python_out={src}",
                        "shared/money.proto", "acme/bill.proto"])
    if code != 0:
        sys.exit(f"protoc failed ({code})")
    sys.path.insert(0, src)
    return importlib.import_module("acme.bill_pb2")


def avro_records(phase, registry, codec, i):
    """(value to serialize, expected JSON body) for one customer."""
    acct = f"acct-{codec}-{i:03d}"
    cents = 123456 + i * 101 - (200000 if i % 3 == 0 else 0)
    balance = decimal.Decimal(cents).scaleb(-2)
    wide = decimal.Decimal(f"{'-' if i % 3 == 0 else ''}{10**34 + 7 * i}.{i:010d}")
    token = uuid.UUID(int=(i + 1) * 0x1234567890ABCDEF)
    born = datetime.date(1980, 1, 1) + datetime.timedelta(days=i * 37)
    updated_ms = 1_700_000_000_000 + i * 1000 + (500 if phase == "v2" else 0)
    name = f"Ann \"{codec}\" Müller\\{i}\n"
    value = {
        "accountId": acct, "name": name,
        "address": {"street": f"{i} Long Street", "city": "Leeds"},
        "balance": balance, "wide": wide, "token": str(token), "born": born,
        "score": 0.25 + i, "tier": "GOLD" if i % 2 else "BASIC", "tags": [f"t{i}", "x"],
        "updatedAt": datetime.datetime.fromtimestamp(updated_ms / 1000, tz=datetime.timezone.utc),
    }
    expected = {
        "accountId": acct, "name": name,
        "address": {"street": f"{i} Long Street", "city": "Leeds"},
        "balance": f"{balance:.2f}", "wide": f"{wide:.10f}", "token": str(token), "born": (born - datetime.date(1970, 1, 1)).days,
        "score": 0.25 + i, "tier": value["tier"], "tags": value["tags"], "updatedAt": updated_ms,
    }
    if phase == "v2":
        value["address"]["country"] = "FR"
        expected["address"]["country"] = "FR"
        email = f"{acct}@example.com" if i % 2 else None
        value["email"] = email
        expected["email"] = email
    return acct, value, compact(expected, ascii_only=False)


def protobuf_record(phase, pb, codec, i):
    from google.protobuf import json_format
    acct = f"acct-{codec}-{i:03d}"
    bill = pb.Bill(account_id=acct, year=2020 + i, status=pb.Bill.PAID if i % 2 else pb.Bill.OPEN,
                   updated_at=1_700_000_000_000 + i + (7 if phase == "v2" else 0))
    bill.total.currency = "EUR"
    bill.total.units = 9_007_199_254_740_993 + i
    bill.total.nanos = 500_000_000
    for j in range(i % 3):
        bill.payments.add(method=f"card-{j}", amount=10.5 * (j + 1))
    bill.issued_at.FromMilliseconds(1_700_000_000_000 + i * 1500)
    if phase == "v2":
        bill.note = f"v2 note {i}"
        bill.disputed = bool(i % 2)
    expected = compact(json_format.MessageToDict(bill), ascii_only=False)
    return acct, bill, pb.BillKey(account_id=acct), expected


def json_record(phase, codec, i):
    key = {"region": codec, "id": i}
    value = {"ticketId": f"tkt-{codec}-{i}", "issue": f"Broken \u00e9 {i}", "priority": i % 4,
             "updatedAt": 1_700_000_000_000 + i}
    if phase == "v2":
        value["labels"] = ["urgent", codec]
    return key, value


def main():
    bootstrap, registry_url, workdir, phase = sys.argv[1:5]
    registry = SchemaRegistryClient({"url": registry_url})
    pb = generate_protobuf(workdir, phase)

    registry.register_schema("com.acme.Address", Schema(json.dumps(ADDRESS[phase]), "AVRO"))
    address_version = registry.get_latest_version("com.acme.Address").version
    customer_schema = Schema(json.dumps(CUSTOMER[phase]), "AVRO",
                             [SchemaReference("com.acme.Address", "com.acme.Address", address_version)])
    avro_value = AvroSerializer(registry, customer_schema)
    avro_key = AvroSerializer(registry, Schema(json.dumps(CUSTOMER_KEY), "AVRO"))
    proto_value = ProtobufSerializer(pb.Bill, registry)
    proto_key = ProtobufSerializer(pb.BillKey, registry)
    indented = lambda obj: json.dumps(obj, indent=2)  # noqa: E731 - written spread out, served compact
    json_value = JSONSerializer(json.dumps(TICKET_SCHEMA[phase]), registry, json_encode=indented)
    json_key = JSONSerializer(json.dumps(TICKET_KEY_SCHEMA), registry, json_encode=indented)

    expected = []
    for codec in CODECS:
        producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 50,
                             "enable.idempotence": False, "batch.num.messages": 1000})
        failures = []
        report = lambda err, msg: failures.append(err) if err else None  # noqa: E731
        # v1 writes every key; v2 rewrites the first half, adds two and deletes one.
        numbers = range(PER_CODEC) if phase == "v1" else list(range(PER_CODEC // 2)) + [PER_CODEC, PER_CODEC + 1]
        for i in numbers:
            ctx = lambda topic, field: SerializationContext(topic, field)  # noqa: E731
            acct, value, body = avro_records(phase, registry, codec, i)
            producer.produce("fmt-avro", key=avro_key({"accountId": acct}, ctx("fmt-avro", MessageField.KEY)),
                             value=avro_value(value, ctx("fmt-avro", MessageField.VALUE)), on_delivery=report)
            expected.append([path("customers", acct), body])

            acct, bill, bill_key, body = protobuf_record(phase, pb, codec, i)
            producer.produce("fmt-protobuf", key=proto_key(bill_key, ctx("fmt-protobuf", MessageField.KEY)),
                             value=proto_value(bill, ctx("fmt-protobuf", MessageField.VALUE)), on_delivery=report)
            expected.append([path("bills", acct), body])

            key, value = json_record(phase, codec, i)
            producer.produce("fmt-json", key=json_key(key, ctx("fmt-json", MessageField.KEY)),
                             value=json_value(value, ctx("fmt-json", MessageField.VALUE)), on_delivery=report)
            expected.append([path("tickets", compact(key)), compact(value)])
        if phase == "v2":
            gone = f"acct-{codec}-{PER_CODEC - 1:03d}"
            key_bytes = avro_key({"accountId": gone}, SerializationContext("fmt-avro", MessageField.KEY))
            producer.produce("fmt-avro", key=key_bytes, value=None, on_delivery=report)
            expected.append([path("customers", gone), None])
        left = producer.flush(30)
        if left or failures:
            sys.exit(f"{codec}: {left} undelivered, failures: {failures}")
    with open(os.path.join(workdir, f"expected-{phase}.json"), "w") as f:
        json.dump(expected, f)
    print(f"confluent_formats {phase}: produced {len(expected)} records under {', '.join(CODECS)}")


if __name__ == "__main__":
    main()
