"""Every record the bridge publishes, in both encodings, decoded by a second Avro
implementation: the Apache ``avro`` package (the bridge itself uses fastavro).

The writer schema is found the way an outside consumer would find it: by the CRC-64-AVRO
fingerprint in the single-object header, computed here from the specification (not by the
bridge's code), or by the schema id in the registry wire format, fetched from the registry.
The decoded values must equal what the simulator served.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from bridge.avro.registry import RegistryFramer
from bridge.avro.schemas import latest
from bridge.config import RegistrySettings
from bridge.service import RunOptions, Service
from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import Scan, WorldConfig
from tests.integration.harness import (
    Record,
    assert_matches_source,
    avro_decode,
    bridge_config,
    drain,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


# --- the Avro specification, written out independently ------------------------------------


def _crc64_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (0xC15D213AA4D7A795 & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _crc64_table()


def crc64_avro(data: bytes) -> bytes:
    """The spec's 64-bit Rabin fingerprint, little-endian as single-object encoding uses it."""
    fp = 0xC15D213AA4D7A795
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


def canonical_form(schema: Any, namespace: str | None = None, seen: set[str] | None = None) -> str:
    """Parsing Canonical Form: [PRIMITIVES] [FULLNAMES] [STRIP] [ORDER] [STRINGS] [WHITESPACE]."""
    seen = set() if seen is None else seen

    def text(value: str) -> str:
        return json.dumps(value, ensure_ascii=False)

    def full(name: str, ns: str | None) -> str:
        return name if "." in name or not ns else f"{ns}.{name}"

    if isinstance(schema, str):
        return text(schema if schema in PRIMITIVES else full(schema, namespace))
    if isinstance(schema, list):
        return "[" + ",".join(canonical_form(b, namespace, seen) for b in schema) + "]"
    kind = schema["type"]
    if not isinstance(kind, str):
        return canonical_form(kind, namespace, seen)
    if kind in PRIMITIVES:  # a logicalType and any other attribute are stripped
        return text(kind)
    if kind == "array":
        return '{"type":"array","items":' + canonical_form(schema["items"], namespace, seen) + "}"
    if kind == "map":
        return '{"type":"map","values":' + canonical_form(schema["values"], namespace, seen) + "}"
    name = full(schema["name"], schema.get("namespace", namespace))
    if name in seen:
        return text(name)
    seen.add(name)
    inner_ns = name.rpartition(".")[0] or None
    head = '{"name":' + text(name) + ',"type":' + text(kind)
    if kind == "record":
        fields = ",".join(
            '{"name":'
            + text(f["name"])
            + ',"type":'
            + canonical_form(f["type"], inner_ns, seen)
            + "}"
            for f in schema["fields"]
        )
        return head + ',"fields":[' + fields + "]}"
    if kind == "enum":
        return head + ',"symbols":[' + ",".join(text(s) for s in schema["symbols"]) + "]}"
    return head + ',"size":' + str(schema["size"]) + "}"


def schemas_by_fingerprint() -> dict[bytes, str]:
    """Every ``schemas/<name>/v<N>.avsc``, read straight from the repository."""
    out = {}
    for path in sorted(SCHEMAS.glob("*/v*.avsc")):
        text = path.read_text(encoding="utf-8")
        out[crc64_avro(canonical_form(json.loads(text)).encode())] = text
    return out


def test_the_independent_canonical_form_agrees_with_the_avro_package() -> None:
    for path in SCHEMAS.glob("*/v*.avsc"):
        text = path.read_text(encoding="utf-8")
        ours = canonical_form(json.loads(text))
        # avro 1.12 keeps {"type":"long"} where a logicalType was stripped; the spec (and
        # Java's SchemaNormalization) writes "long". Everything else must agree.
        theirs = re.sub(r'\{"type":"(\w+)"\}', r'"\1"', avro.schema.parse(text).canonical_form)
        assert ours == theirs, path
        assert crc64_avro(ours.encode()) == avro.schema.parse(ours).fingerprint()


# --- decoding with the avro package ------------------------------------------------------


@dataclass(frozen=True)
class Decoded(Record):
    """A record whose ``decoded()`` is the avro package's answer, for assert_matches_source."""

    independent: dict[str, Any] = field(default_factory=dict)

    def decoded(self) -> dict[str, Any]:
        return self.independent


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return str(value) if isinstance(value, uuid.UUID) else value


def run_bridge(
    kafka_bootstrap: str, new_topic: Any, framer: RegistryFramer | None = None
) -> tuple[list[Record], dict[str, Scan]]:
    scans, dlq = new_topic(partitions=3), new_topic(partitions=1)
    world = WorldConfig(readers=6, passes=80, seed=17, backlog=300)
    with SimulatorServer(SimulatorConfig(world=world)) as sim:
        config = bridge_config(
            sim.url, sim.token, kafka_bootstrap, scans_topic=scans, dlq_topic=dlq
        )
        if framer is not None:
            # A mock:// registry is private to its client: hand the service this one.
            framer.check_startup([scans])
        options = RunOptions(once=True, since_ms=0, serve_http=False)
        assert Service(config, options, framer=framer).run() == 0
        source = {s.id: s for s in sim.store.all_scans()}
    records = drain(kafka_bootstrap, scans, until=lambda rs: len(rs) >= len(source))
    assert len(records) == len(source) == 300
    assert drain(kafka_bootstrap, dlq) == []
    return records, source


def check_against_source(
    record: Record, value: dict[str, Any], scan: Scan, fast: dict[str, Any]
) -> None:
    fields = {f: getattr(record, f) for f in Record.__dataclass_fields__}
    assert_matches_source(Decoded(**fields, independent=value), scan)
    # Every field, nested ones included, equals fastavro's reading of the same bytes.
    assert _plain(value) == _plain(fast)


def test_single_object_records_decode_with_the_avro_package(
    kafka_bootstrap: str, new_topic: Any
) -> None:
    writers = schemas_by_fingerprint()
    records, source = run_bridge(kafka_bootstrap, new_topic)
    for record in records:
        assert record.value[:2] == b"\xc3\x01"
        assert record.headers["content-type"] == b"application/avro; encoding=single-object"
        writer = writers[record.value[2:10]]  # KeyError: a fingerprint we cannot explain
        value = avro_decode(writer, record.value[10:])
        check_against_source(record, value, source[str(value["scanId"])], record.decoded())


def test_registry_records_decode_with_the_avro_package_and_avro_deserializer(
    kafka_bootstrap: str, new_topic: Any
) -> None:
    url = f"mock://independent-{uuid.uuid4().hex[:8]}"
    # A mock:// client keeps its schemas per instance: the test reads the bridge's client.
    client: SchemaRegistryClient = SchemaRegistryClient.new_client({"url": url})
    framer = RegistryFramer(RegistrySettings(url=url), latest(), client)
    records, source = run_bridge(kafka_bootstrap, new_topic, framer)
    topic = records[0].topic
    registered = client.get_latest_version(f"{topic}-value")
    deserialize = AvroDeserializer(client)
    for record in records:
        assert record.value[:1] == b"\x00"
        schema_id = int.from_bytes(record.value[1:5], "big")
        assert schema_id == registered.schema_id
        assert record.headers["content-type"] == b"application/vnd.confluent.avro"
        assert record.headers["schema-version"] == b"1"
        value = avro_decode(client.get_schema(schema_id).schema_str, record.value[5:])
        documented = deserialize(record.value, SerializationContext(topic, MessageField.VALUE))
        check_against_source(record, value, source[str(value["scanId"])], documented)


def test_registry_mode_with_a_topic_template_shares_one_record_subject(
    kafka_bootstrap: str,
) -> None:
    prefix = f"route-{uuid.uuid4().hex[:8]}"
    url = f"mock://independent-{prefix}"
    client: SchemaRegistryClient = SchemaRegistryClient.new_client({"url": url})
    framer = RegistryFramer(
        RegistrySettings(url=url, subject_name_strategy="record"), latest(), client
    )
    with SimulatorServer(SimulatorConfig(world=WorldConfig(seed=3, backlog=120))) as sim:
        config = bridge_config(
            sim.url, sim.token, kafka_bootstrap,
            scans_topic=f"{prefix}-x", dlq_topic=f"{prefix}-dlq",
            bridge={"topic_template": prefix + ".{status}"},
        )  # fmt: skip
        options = RunOptions(once=True, since_ms=0, serve_http=False)
        assert Service(config, options, framer=framer).run() == 0
        statuses = {json.loads(s.json)["attributes"]["status"] for s in sim.store.all_scans()}
    assert client.get_subjects() == ["com.passentry.bridge.v1.ScanEvent"]
    (schema_id,) = {framer.framing(t).prefix for t in ("a", "b")}
    for status in statuses:
        for record in drain(kafka_bootstrap, f"{prefix}.{status}"):
            assert record.value[:5] == schema_id
            text = client.get_schema(int.from_bytes(record.value[1:5], "big")).schema_str
            assert avro_decode(text, record.value[5:])["status"] == status
