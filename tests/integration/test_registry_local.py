"""The local schema registry (scripts/registry-local: Apicurio Registry, in-memory) speaks
Confluent's API well enough for confluent_kafka's SchemaRegistryClient and its Avro serdes:
register, fetch by id, latest version, compatibility, and ids that resolve on
GET /schemas/ids/{id} (what a Confluent deserializer does with the id in the wire format).

Runs against ``SCHEMA_REGISTRY_TEST_URL`` instead when that is set.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.integration.registry_fixtures import (
    REGISTRY_LOCAL,
    registry_source,
    schema_registry_url,  # noqa: F401 (session fixture)
)

# The first test may pay for a cold start (Maven resolves the registry once).
pytestmark = pytest.mark.timeout(900)


def _record(*fields: dict[str, Any]) -> str:
    # Compact JSON: the form registries hand back (Confluent and Apicurio both normalise Avro).
    schema = {"type": "record", "name": "Scan", "namespace": "io.passentry.test", "fields": fields}
    return json.dumps(schema, separators=(",", ":"))


V1 = _record({"name": "pass_id", "type": "string"})
# BACKWARD compatible with V1: a new field with a default.
V2 = _record(
    {"name": "pass_id", "type": "string"},
    {"name": "gate", "type": ["null", "string"], "default": None},
)
# Not BACKWARD compatible with V1: a field changes type.
V_BAD = _record({"name": "pass_id", "type": "long"})


def _subject() -> str:
    return f"registry-local-{uuid.uuid4().hex[:12]}-value"


@pytest.fixture
def client(schema_registry_url: str) -> Iterator[SchemaRegistryClient]:  # noqa: F811
    with SchemaRegistryClient({"url": schema_registry_url}) as c:
        yield c


def test_register_then_fetch_by_id_and_latest(client: SchemaRegistryClient) -> None:
    subject = _subject()
    schema_id = client.register_schema(subject, Schema(V1, "AVRO"))
    assert isinstance(schema_id, int)
    assert schema_id > 0

    # by id, from a client without caches: a real GET /schemas/ids/{id}
    client.clear_caches()
    fetched = client.get_schema(schema_id)
    assert fetched.schema_type == "AVRO"
    assert fetched.schema_str == V1
    assert json.loads(fetched.schema_str) == json.loads(V1)

    latest = client.get_latest_version(subject)
    assert latest.subject == subject
    assert latest.version == 1
    assert latest.schema_id == schema_id
    assert latest.schema.schema_str == V1

    # registering the same schema again is idempotent (same id, no new version)
    assert client.register_schema(subject, Schema(V1, "AVRO")) == schema_id
    assert client.get_versions(subject) == [1]
    assert client.lookup_schema(subject, Schema(V1, "AVRO")).version == 1


def test_compatibility_is_checked_backward_by_default(client: SchemaRegistryClient) -> None:
    subject = _subject()
    first = client.register_schema(subject, Schema(V1, "AVRO"))

    assert client.test_compatibility(subject, Schema(V2, "AVRO")) is True
    assert client.test_compatibility(subject, Schema(V_BAD, "AVRO")) is False

    # Confluent's default global level; enforced on register with 409
    assert client.get_compatibility() == "BACKWARD"
    with pytest.raises(SchemaRegistryError) as rejected:
        client.register_schema(subject, Schema(V_BAD, "AVRO"))
    assert rejected.value.http_status_code == 409

    second = client.register_schema(subject, Schema(V2, "AVRO"))
    assert second != first
    assert client.get_versions(subject) == [1, 2]
    latest = client.get_latest_version(subject)
    assert (latest.version, latest.schema_id, latest.schema.schema_str) == (2, second, V2)
    assert client.get_version(subject, 1).schema_id == first


def test_same_schema_in_two_subjects_gets_one_id(client: SchemaRegistryClient) -> None:
    # Confluent semantics: an id names a schema (content), not a subject version.
    a, b = _subject(), _subject()
    id_a = client.register_schema(a, Schema(V2, "AVRO"))
    id_b = client.register_schema(b, Schema(V2, "AVRO"))
    assert id_a == id_b
    assert {a, b} <= set(client.get_subjects_by_schema_id(id_a))


def test_avro_serializer_ids_resolve_for_a_fresh_deserializer(schema_registry_url: str) -> None:  # noqa: F811
    topic = f"registry-local-{uuid.uuid4().hex[:12]}"
    ctx = SerializationContext(topic, MessageField.VALUE)
    value = {"pass_id": "p-1", "gate": "north"}

    with SchemaRegistryClient({"url": schema_registry_url}) as writer_client:
        serializer = AvroSerializer(writer_client, V2, conf={"auto.register.schemas": True})
        payload = serializer(value, ctx)
    assert payload is not None
    assert payload[0] == 0  # Confluent wire format: magic byte, then the 4-byte schema id
    wire_id = int.from_bytes(payload[1:5], "big")

    with SchemaRegistryClient({"url": schema_registry_url}) as reader_client:
        assert reader_client.get_latest_version(f"{topic}-value").schema_id == wire_id
        deserializer = AvroDeserializer(reader_client)
        assert deserializer(payload, ctx) == value


def test_script_status_reports_the_running_registry(
    schema_registry_url: str,  # noqa: F811
    session_environ: dict[str, str],
) -> None:
    if registry_source(session_environ) != "local":
        pytest.skip("SCHEMA_REGISTRY_TEST_URL is set: scripts/registry-local is not in use")
    status = subprocess.run(
        [str(REGISTRY_LOCAL), "status"],
        env=session_environ,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip().splitlines()[-1] == schema_registry_url
    assert schema_registry_url.startswith("http://127.0.0.1:")
    assert schema_registry_url.endswith("/apis/ccompat/v7")
