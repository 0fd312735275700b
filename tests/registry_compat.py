"""Confluent's own Python client against the bundled registry (argv[1] = URL).
Exits non-zero on any mismatch."""
import sys
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

url = sys.argv[1]
client = SchemaRegistryClient({"url": url})
v1 = '{"type":"record","name":"Customer","namespace":"com.acme","fields":[{"name":"accountId","type":"string"}]}'
v2 = ('{"type":"record","name":"Customer","namespace":"com.acme","fields":[{"name":"accountId","type":"string"},'
      '{"name":"email","type":["null","string"],"default":null}]}')

id1 = client.register_schema("customers-value", Schema(v1, "AVRO"))
id1_again = client.register_schema("customers-value", Schema(v1, "AVRO"))
assert id1 == id1_again, (id1, id1_again)
id2 = client.register_schema("customers-value", Schema(v2, "AVRO"))
assert id2 != id1

fetched = client.get_schema(id1)
assert fetched.schema_str == v1, fetched.schema_str

latest = client.get_latest_version("customers-value")
assert latest.schema_id == id2 and latest.version == 2, (latest.schema_id, latest.version)

versions = client.get_versions("customers-value")
assert list(versions) == [1, 2], versions

found = client.lookup_schema("customers-value", Schema(v1, "AVRO"))
assert found.schema_id == id1 and found.version == 1, (found.schema_id, found.version)

assert "customers-value" in client.get_subjects()
print("confluent_kafka SchemaRegistryClient: ok")
