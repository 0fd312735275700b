"""Checks the bundled schema registry against Confluent's own Python client.

Usage: python3 tests/registry_compat.py URL   (URL may carry user:password@)

Why: the bundled registry claims Confluent API compatibility, so Confluent's
client must work against it unchanged. Every call below goes through
confluent_kafka.schema_registry.SchemaRegistryClient or Confluent's own
serializers (Avro, Protobuf, JSON Schema); a fresh client is used wherever the
client would otherwise answer from its own cache. Exits non-zero on the first
mismatch. Run by the registry's Rust tests (src/registry/serve.rs).

The Protobuf part compiles two .proto files at run time with grpc_tools.protoc
(PyPI grpcio-tools) into Python message classes.
"""
import importlib
import os
import subprocess
import sys
import tempfile
import uuid

from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

V1 = ('{"type":"record","name":"Customer","namespace":"com.acme",'
      '"fields":[{"name":"accountId","type":"string"}]}')
V2 = ('{"type":"record","name":"Customer","namespace":"com.acme",'
      '"fields":[{"name":"accountId","type":"string"},'
      '{"name":"email","type":["null","string"],"default":null}]}')


def fail(what, got, want):
    sys.exit(f"registry_compat: {what}: got {got!r}, want {want!r}")


def check(what, got, want):
    if got != want:
        fail(what, got, want)


def expect_error(what, call, status, code):
    try:
        result = call()
    except SchemaRegistryError as e:
        check(f"{what} (HTTP status)", e.http_status_code, status)
        check(f"{what} (error code)", e.error_code, code)
        return
    fail(what, result, f"SchemaRegistryError {status}/{code}")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: registry_compat.py SCHEMA_REGISTRY_URL")
    url = sys.argv[1]

    def client():
        return SchemaRegistryClient({"url": url})

    # Unique subjects, so the script can run against a registry that has data.
    run = uuid.uuid4().hex[:8]
    subject, other = f"customers-{run}-value", f"other/{run} value"

    id1 = client().register_schema(subject, Schema(V1, "AVRO"))
    check("same schema, same subject, same id", client().register_schema(subject, Schema(V1, "AVRO")), id1)
    check("same schema, other subject, same id", client().register_schema(other, Schema(V1, "AVRO")), id1)
    id2 = client().register_schema(subject, Schema(V2, "AVRO"))
    if id2 == id1:
        fail("new schema gets a new id", id2, f"not {id1}")

    fetched = client().get_schema(id1)
    check("get_schema text", fetched.schema_str, V1)
    check("get_schema type", fetched.schema_type, "AVRO")

    latest = client().get_latest_version(subject)
    check("latest version", (latest.schema_id, latest.version, latest.subject), (id2, 2, subject))
    check("latest schema", latest.schema.schema_str, V2)

    check("versions", list(client().get_versions(subject)), [1, 2])
    first = client().get_version(subject, 1)
    check("version 1", (first.schema_id, first.schema.schema_str), (id1, V1))

    found = client().lookup_schema(subject, Schema(V1, "AVRO"))
    check("lookup", (found.schema_id, found.version, found.subject), (id1, 1, subject))
    check("lookup other subject", client().lookup_schema(other, Schema(V1, "AVRO")).version, 1)

    subjects = client().get_subjects()
    if subject not in subjects or other not in subjects:
        fail("subjects", subjects, f"{subject} and {other} among them")

    expect_error("unknown id", lambda: client().get_schema(987654), 404, 40403)
    expect_error("unknown subject", lambda: client().get_latest_version(f"nope-{run}"), 404, 40401)
    expect_error("unknown version", lambda: client().get_version(subject, 7), 404, 40402)
    expect_error("lookup, unknown subject", lambda: client().lookup_schema(f"nope-{run}", Schema(V1, "AVRO")), 404, 40401)
    expect_error("lookup, unknown schema", lambda: client().lookup_schema(other, Schema(V2, "AVRO")), 404, 40403)
    expect_error("invalid schema", lambda: client().register_schema(subject, Schema('{"type":"nope"}', "AVRO")), 422, 42201)

    check("global compatibility", client().get_compatibility(), "BACKWARD")
    check("set compatibility", client().set_compatibility(level="FULL")["compatibility"], "FULL")
    check("delete version", client().delete_version(subject, 2), 2)
    check("latest after delete", client().get_latest_version(subject).version, 1)
    check("re-register keeps the id", client().register_schema(subject, Schema(V2, "AVRO")), id2)
    check("versions are not reused", list(client().get_versions(subject)), [1, 3])
    expect_error("deleted version", lambda: client().get_version(subject, 2), 404, 40402)
    check("delete subject", list(client().delete_subject(other)), [1])
    check("id outlives its subject", client().get_schema(id1).schema_str, V1)

    types_and_references(client, run)
    serializers(client, run)

    print("registry_compat: confluent_kafka SchemaRegistryClient and serializers work against", url.split("@")[-1])


MONEY_AVRO = ('{"type":"record","name":"Money","namespace":"com.acme",'
              '"fields":[{"name":"cents","type":"long"},{"name":"currency","type":"string"}]}')
BILL_AVRO = ('{"type":"record","name":"Bill","namespace":"com.acme",'
             '"fields":[{"name":"accountId","type":"string"},{"name":"total","type":"com.acme.Money"}]}')
MONEY_PROTO = 'syntax = "proto3";\npackage acme;\n\nmessage Money {\n  int64 cents = 1;\n  string currency = 2;\n}\n'
BILL_PROTO = ('syntax = "proto3";\npackage acme;\n\nimport "acme/money.proto";\n'
              'import "google/protobuf/timestamp.proto";\n\n'
              'message Line {\n  string text = 1;\n}\n\n'
              'message Bill {\n  string account_id = 1;\n  acme.Money total = 2;\n'
              '  repeated Line lines = 3;\n  google.protobuf.Timestamp issued_at = 4;\n}\n')
TICKET_JSON = ('{"$schema":"http://json-schema.org/draft-07/schema#","title":"Ticket","type":"object",'
               '"properties":{"ticketId":{"type":"string"},"status":{"type":"string"}},'
               '"required":["ticketId"]}')


def schema_id_of(framed, what):
    """The schema ID of Confluent-framed bytes: magic byte 0, then 4 bytes big-endian."""
    check(f"{what}: magic byte", framed[0], 0)
    return int.from_bytes(framed[1:5], "big")


def types_and_references(client, run):
    """schemaType and references through SchemaRegistryClient's own calls."""
    money_subject, bill_subject = f"money-{run}", f"bill-{run}-value"
    money_id = client().register_schema(money_subject, Schema(MONEY_AVRO, "AVRO"))
    money_ref = SchemaReference("com.acme.Money", money_subject, 1)
    bill = Schema(BILL_AVRO, "AVRO", references=[money_ref])
    bill_id = client().register_schema(bill_subject, bill)
    check("avro with a reference, again", client().register_schema(bill_subject, bill), bill_id)
    fetched = client().get_schema(bill_id)
    check("avro reference served", [(r.name, r.subject, r.version) for r in fetched.references],
          [("com.acme.Money", money_subject, 1)])
    check("avro type served", fetched.schema_type, "AVRO")
    found = client().lookup_schema(bill_subject, bill)
    check("lookup with references", (found.schema_id, found.version), (bill_id, 1))
    expect_error("lookup without the reference",
                 lambda: client().lookup_schema(bill_subject, Schema(BILL_AVRO, "AVRO")), 422, 42201)
    check("referenced by", list(client().get_referenced_by(money_subject, 1)), [bill_id])
    expect_error("dangling reference",
                 lambda: client().register_schema(f"x-{run}", Schema(BILL_AVRO, "AVRO",
                                                  references=[SchemaReference("com.acme.Money", f"nope-{run}", 1)])),
                 422, 42201)
    expect_error("referenced subject cannot be deleted", lambda: client().delete_subject(money_subject), 422, 42206)

    proto_money_subject, proto_bill_subject = f"acme-money-{run}", f"bill-proto-{run}-value"
    proto_money_id = client().register_schema(proto_money_subject, Schema(MONEY_PROTO, "PROTOBUF"))
    proto_ref = SchemaReference("acme/money.proto", proto_money_subject, 1)
    proto_bill = Schema(BILL_PROTO, "PROTOBUF", references=[proto_ref])
    proto_bill_id = client().register_schema(proto_bill_subject, proto_bill)
    check("same protobuf, other subject, same id",
          client().register_schema(f"other-{proto_bill_subject}", proto_bill), proto_bill_id)
    fetched = client().get_schema(proto_bill_id)
    check("protobuf served", (fetched.schema_str, fetched.schema_type), (BILL_PROTO, "PROTOBUF"))
    check("protobuf references served", [(r.name, r.subject, r.version) for r in fetched.references],
          [("acme/money.proto", proto_money_subject, 1)])
    latest = client().get_latest_version(proto_bill_subject)
    check("protobuf latest", (latest.schema_id, latest.version, latest.schema.schema_type),
          (proto_bill_id, 1, "PROTOBUF"))
    check("protobuf lookup", client().lookup_schema(proto_bill_subject, proto_bill).schema_id, proto_bill_id)
    check("protobuf referenced by", list(client().get_referenced_by(proto_money_subject, "latest")), [proto_bill_id])
    serialized = client().get_version(proto_money_subject, 1, True, "serialized").schema.schema_str
    if serialized == MONEY_PROTO or "Money" not in __import__("base64").b64decode(serialized).decode("latin-1"):
        fail("format=serialized", serialized, "a base64 FileDescriptorProto of Money")
    expect_error("protobuf import not referenced",
                 lambda: client().register_schema(f"y-{run}", Schema(BILL_PROTO, "PROTOBUF")), 422, 42201)
    if proto_money_id in (money_id, bill_id):
        fail("protobuf gets its own id", proto_money_id, "a new id")

    json_subject = f"ticket-{run}-value"
    json_id = client().register_schema(json_subject, Schema(TICKET_JSON, "JSON"))
    check("json served", (client().get_schema(json_id).schema_type, client().get_schema(json_id).schema_str),
          ("JSON", TICKET_JSON))
    check("json lookup", client().lookup_schema(json_subject, Schema(TICKET_JSON, "JSON")).version, 1)
    expect_error("json not json", lambda: client().register_schema(json_subject, Schema("{nope", "JSON")), 422, 42201)
    check("types", sorted(client().get_schema_types()), ["AVRO", "JSON", "PROTOBUF"])


def protobuf_classes(directory):
    """Compiles acme/money.proto and acme/bill.proto to Python; returns the bill module."""
    package = os.path.join(directory, "acme")
    os.makedirs(package)
    for name, text in (("money.proto", MONEY_PROTO), ("bill.proto", BILL_PROTO)):
        with open(os.path.join(package, name), "w") as f:
            f.write(text)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{directory}", f"--python_out={directory}",
                    "acme/money.proto", "acme/bill.proto"], check=True)
    sys.path.insert(0, directory)
    return importlib.import_module("acme.bill_pb2")


def serializers(client, run):
    """Confluent's serializers register through this registry and frame with its IDs."""
    topic = f"bills-{run}"
    ctx = SerializationContext(topic, MessageField.VALUE)

    money_subject = f"serde-money-{run}"
    client().register_schema(money_subject, Schema(MONEY_AVRO, "AVRO"))
    bill = Schema(BILL_AVRO, "AVRO", references=[SchemaReference("com.acme.Money", money_subject, 1)])
    record = {"accountId": "acct-1", "total": {"cents": 1234, "currency": "EUR"}}
    framed = AvroSerializer(client(), bill, conf={"auto.register.schemas": True})(record, ctx)
    avro_id = schema_id_of(framed, "avro")
    check("avro serializer registered under {topic}-value",
          client().lookup_schema(f"{topic}-value", bill).schema_id, avro_id)
    check("avro round trip", AvroDeserializer(client())(framed, ctx), record)

    with tempfile.TemporaryDirectory() as directory:
        bill_pb2 = protobuf_classes(directory)
        message = bill_pb2.Bill(account_id="acct-2", total={"cents": 99, "currency": "USD"},
                                lines=[bill_pb2.Line(text="calls")])
        message.issued_at.seconds = 1700000000
        proto_ctx = SerializationContext(f"proto-{topic}", MessageField.VALUE)
        framed = ProtobufSerializer(bill_pb2.Bill, client(), {"auto.register.schemas": True})(message, proto_ctx)
        proto_id = schema_id_of(framed, "protobuf")
        # Bill is the second message of its file: message indexes [1], as zigzag varints (count 1, index 1).
        check("protobuf message indexes", framed[5:7], b"\x02\x02")
        check("protobuf payload", bill_pb2.Bill.FromString(framed[7:]), message)
        registered = client().get_schema(proto_id)
        check("protobuf serializer's references",
              [(r.name, r.subject, r.version) for r in registered.references],
              [("acme/money.proto", "acme/money.proto", 1)])
        if "message Bill {" not in registered.schema_str or "message Line {" not in registered.schema_str:
            fail("protobuf registered as a descriptor is served as .proto text", registered.schema_str, "text")
        check("protobuf serializer's dependency registered",
              list(client().get_versions("acme/money.proto")), [1])
        decoded = ProtobufDeserializer(bill_pb2.Bill, {}, client())(framed, proto_ctx)
        check("protobuf round trip", decoded, message)
        line = bill_pb2.Line(text="first message")
        framed = ProtobufSerializer(bill_pb2.Line, client(), {"auto.register.schemas": True})(line, ctx)
        check("protobuf first message index", framed[5:6], b"\x00")

    ticket = {"ticketId": "t-1", "status": "open"}
    json_ctx = SerializationContext(f"tickets-{run}", MessageField.VALUE)
    framed = JSONSerializer(TICKET_JSON, client(), conf={"auto.register.schemas": True})(ticket, json_ctx)
    json_id = schema_id_of(framed, "json")
    check("json serializer registered", client().get_schema(json_id).schema_type, "JSON")
    check("json payload", framed[5:], b'{"ticketId":"t-1","status":"open"}')
    check("json round trip", JSONDeserializer(TICKET_JSON, schema_registry_client=client())(framed, json_ctx), ticket)


if __name__ == "__main__":
    main()
