"""Schema evolution, shown working: a v2 of the scan schema (tests/fixtures/evolution: v1
plus one optional field, ``eventId``) passes the FULL compatibility gate, consumers built
on v1 read v2 records, and consumers built on v2 read v1 records, in Python and Java, in
both encodings.

The bridge writes v1 only (released schemas are locked), so a small stand-in producer writes
the v2 records here: the bridge's own records, decoded, given an ``eventId`` and encoded
with v2, keyed, partitioned and headed as the bridge does."""

from __future__ import annotations

import dataclasses
import io
import uuid
from collections.abc import Callable
from typing import Any

import fastavro
import httpx
import pytest
from click.testing import CliRunner
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from bridge.avro.decoder import RecordDecoder
from bridge.avro.schemas import VersionedSchema, from_text, latest
from bridge.cli.schema import schema as schema_command
from bridge.cloudevents import fingerprint_uri, registry_schema_url
from tests.integration.consumers.consumer_support import (
    BOOTSTRAP,
    BUILD_TIMEOUT_S,
    EVOLUTION,
    SCHEMAS,
    V2_SCHEMA,
    Filled,
    assert_prints_the_truth,
    build,
    create_topic,
    java_command,
    python_command,
    run_consumer,
)
from tests.integration.harness import drain

# A cold build of the examples (Maven, Go) may be part of the first test.
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S + 300)


def v2() -> VersionedSchema:
    return from_text(V2_SCHEMA.read_text(encoding="utf-8"), version=2)


def event_id(scan_id: str) -> str:
    return f"event-{scan_id[-6:]}"


def republish_as_v2(
    admin: AdminClient,
    source: Filled,
    frame: Callable[[bytes], bytes],
    dataschema: str,
) -> Filled:
    """``source``'s records, written again with v2 into a new topic (same partitions, keys
    and headers, except the ones that name the schema)."""
    schema = v2()
    registry = SchemaRegistryClient({"url": source.registry_url}) if source.registry_url else None
    decoder = RecordDecoder(registry)
    try:
        values = [decoder.decode(record.value) for record in source.records]
    finally:
        if registry is not None:
            registry.close()
    topic = create_topic(admin, 3)
    producer = Producer({"bootstrap.servers": BOOTSTRAP["servers"], "enable.idempotence": True})
    for record, value in zip(source.records, values, strict=True):
        value["eventId"] = event_id(str(value["scanId"]))
        body = io.BytesIO()
        fastavro.schemaless_writer(body, schema.parsed, value)
        headers = dict(record.headers)
        headers["schema-version"] = b"2"
        headers["ce_dataschema"] = dataschema.encode()
        producer.produce(
            topic,
            frame(body.getvalue()),
            record.key,
            partition=record.partition,
            headers=list(headers.items()),
        )
    assert producer.flush(30) == 0
    records = drain(BOOTSTRAP["servers"], topic, until=lambda rs: len(rs) >= len(source.records))
    return dataclasses.replace(source, topic=topic, records=records)


@pytest.fixture(scope="module")
def v2_topic(kafka_admin: AdminClient, single_object_topic: Filled) -> Filled:
    schema = v2()
    return republish_as_v2(
        kafka_admin,
        single_object_topic,
        lambda body: b"\xc3\x01" + schema.fingerprint + body,
        fingerprint_uri(schema.fingerprint),
    )


@pytest.fixture(scope="module")
def v2_registry_topic(kafka_admin: AdminClient, registry_topic: Filled) -> Filled:
    """v2 registered as the next version of a subject whose compatibility level is FULL:
    the registry's own gate accepts it."""
    url = registry_topic.registry_url
    assert url is not None
    subject = f"evolution-{uuid.uuid4().hex[:8]}-value"
    client = SchemaRegistryClient({"url": url})
    try:
        client.register_schema(subject, Schema(latest().text, "AVRO"))
        answer = httpx.put(f"{url}/config/{subject}", json={"compatibility": "FULL"}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert client.test_compatibility(subject, Schema(v2().text, "AVRO"))
        v2_id = client.register_schema(subject, Schema(v2().text, "AVRO"))
        assert [v.version for v in [client.get_latest_version(subject)]] == [2]
    finally:
        client.close()
    return republish_as_v2(
        kafka_admin,
        registry_topic,
        lambda body: b"\x00" + v2_id.to_bytes(4, "big") + body,
        registry_schema_url(url, v2_id),
    )


def extras(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line["extra"] for line in lines]


# --- the gate --------------------------------------------------------------------------------


def test_v2_passes_the_full_compatibility_gate_and_adds_one_optional_field() -> None:
    # The fixture's v1 is a copy of the released file, byte for byte.
    assert (EVOLUTION / "passentry_scan" / "v1.avsc").read_bytes() == (
        SCHEMAS / "v1.avsc"
    ).read_bytes()
    runner = CliRunner()
    checked = runner.invoke(schema_command, ["check", "--schemas-dir", str(EVOLUTION)])
    assert checked.exit_code == 0, checked.output
    assert "ok    compat    passentry_scan: consecutive versions are FULL" in checked.output
    old, new = latest().definition, v2().definition
    added = [f for f in new["fields"] if f["name"] not in {g["name"] for g in old["fields"]}]
    assert added == [
        {
            "name": "eventId",
            "type": ["null", "string"],
            "default": None,
            "doc": added[0]["doc"],
        }
    ]


# --- Python ----------------------------------------------------------------------------------


def test_python_v1_consumer_reads_v2_records_once_it_has_the_v2_file(v2_topic: Filled) -> None:
    run = run_consumer(python_command(v2_topic, "--writer-schema", str(V2_SCHEMA)))
    assert_prints_the_truth(run, v2_topic, "python v1 on v2")
    assert extras(run.lines) == [{}] * len(run.lines)  # v1's shape: eventId skipped


def test_python_v1_consumer_without_the_v2_file_stops_at_the_first_v2_record(
    v2_topic: Filled,
) -> None:
    """Single-object encoding names the writer schema by fingerprint only: a consumer that
    was not given the new file cannot read the record, and stops (without committing it)."""
    run = run_consumer(python_command(v2_topic))
    assert run.returncode == 1
    assert run.lines == []
    assert f"unknown schema fingerprint {v2().fingerprint.hex()}" in run.stderr


def test_python_v2_consumer_reads_v1_records_with_the_default(single_object_topic: Filled) -> None:
    run = run_consumer(python_command(single_object_topic, "--reader-schema", str(V2_SCHEMA)))
    assert_prints_the_truth(run, single_object_topic, "python v2 on v1")
    assert extras(run.lines) == [{"eventId": None}] * len(run.lines)


def test_python_v2_consumer_reads_v2_records_with_the_new_field(v2_topic: Filled) -> None:
    command = python_command(v2_topic, "--reader-schema", str(V2_SCHEMA))
    run = run_consumer([*command, "--writer-schema", str(V2_SCHEMA)])
    assert_prints_the_truth(run, v2_topic, "python v2 on v2")
    assert [line["extra"]["eventId"] for line in run.lines] == [
        event_id(line["scanId"]) for line in run.lines
    ]


def test_python_v1_consumer_reads_v2_registry_records_with_no_change(
    v2_registry_topic: Filled,
) -> None:
    """With a registry the writer schema comes by id: nothing to hand to consumers first."""
    run = run_consumer(python_command(v2_registry_topic))
    assert_prints_the_truth(run, v2_registry_topic, "python v1 on v2 (registry)")
    assert extras(run.lines) == [{}] * len(run.lines)


# --- Java ------------------------------------------------------------------------------------


def test_java_v1_consumer_reads_v2_records_once_it_has_the_v2_file(v2_topic: Filled) -> None:
    command = java_command(build("java"), v2_topic, "--writer-schema", str(V2_SCHEMA))
    run = run_consumer(command)
    assert_prints_the_truth(run, v2_topic, "java v1 on v2")
    assert all("eventId" not in line["avro"] for line in run.lines)


def test_java_v1_consumer_reads_v2_registry_records_with_no_change(
    v2_registry_topic: Filled,
) -> None:
    run = run_consumer(java_command(build("java"), v2_registry_topic))
    assert_prints_the_truth(run, v2_registry_topic, "java v1 on v2 (registry)")
    assert all("eventId" not in line["avro"] for line in run.lines)


def test_java_v2_consumer_reads_v1_records_with_the_default(single_object_topic: Filled) -> None:
    run = run_consumer(java_command(build("java-v2"), single_object_topic))
    assert_prints_the_truth(run, single_object_topic, "java v2 on v1")
    assert [line["avro"]["eventId"] for line in run.lines] == [None] * len(run.lines)


def test_java_v2_consumer_reads_v1_registry_records_with_the_default(
    registry_topic: Filled,
) -> None:
    run = run_consumer(java_command(build("java-v2"), registry_topic))
    assert_prints_the_truth(run, registry_topic, "java v2 on v1 (registry)")
    assert [line["avro"]["eventId"] for line in run.lines] == [None] * len(run.lines)


def test_java_v2_consumer_reads_v2_records_with_the_new_field(v2_topic: Filled) -> None:
    run = run_consumer(java_command(build("java-v2"), v2_topic))
    assert_prints_the_truth(run, v2_topic, "java v2 on v2")
    assert [line["avro"]["eventId"] for line in run.lines] == [
        event_id(line["scanId"]) for line in run.lines
    ]
