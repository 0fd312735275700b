"""Checks the bundled schema registry against Confluent's own Python client.

Usage: python3 tests/registry_compat.py URL   (URL may carry user:password@)

Why: the bundled registry claims Confluent API compatibility, so Confluent's
client must work against it unchanged. Every call below goes through
confluent_kafka.schema_registry.SchemaRegistryClient; a fresh client is used
wherever the client would otherwise answer from its own cache. Exits non-zero
on the first mismatch. Run by the server's Rust tests.
"""
import sys
import uuid

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

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
    check("delete subject", list(client().delete_subject(other)), [1])
    check("id outlives its subject", client().get_schema(id1).schema_str, V1)

    print("registry_compat: confluent_kafka SchemaRegistryClient works against", url.split("@")[-1])


if __name__ == "__main__":
    main()
