"""``passentry-bridge schema asyncapi``: the committed copy is what the command prints, and
the document follows the configuration and says what the records really carry. (The
official AsyncAPI CLI validates it: tests/integration/test_asyncapi_cli.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from bridge.avro.encoder import Encoder
from bridge.avro.framing import SingleObjectFramer
from bridge.avro.schemas import VersionedSchema
from bridge.cli.schema import schema
from bridge.config import load_config
from bridge.contract.asyncapi import asyncapi_document
from bridge.kafka.records import RecordBuilder
from bridge.kafka.routing import Router
from bridge.passentry.pages import Rejected
from tests.unit.scan_docs import Generator, decoded

COMMITTED = Path(__file__).resolve().parents[3] / "schemas" / "asyncapi.yaml"


def printed(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(schema, ["asyncapi", *args])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = yaml.safe_load(result.output)
    return document


def test_the_committed_document_is_what_the_command_prints() -> None:
    result = CliRunner().invoke(schema, ["asyncapi"])
    assert result.exit_code == 0, result.output
    assert COMMITTED.read_text(encoding="utf-8") == result.output, (
        "schemas/asyncapi.yaml is stale: regenerate it with"
        " `passentry-bridge schema asyncapi > schemas/asyncapi.yaml`"
    )


def test_json_and_yaml_give_the_same_document() -> None:
    import json

    result = CliRunner().invoke(schema, ["asyncapi", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == printed()


def test_the_default_document_names_the_topics_key_payload_and_guarantee(
    scan_schema: VersionedSchema,
) -> None:
    doc = printed()
    assert doc["asyncapi"] == "3.0.0"
    assert {c["address"] for c in doc["channels"].values()} == {
        "passentry.scans",
        "passentry.scans.dlq",
    }
    scans = doc["channels"]["passentry_scans"]
    assert scans["bindings"]["kafka"] == {
        "topic": "passentry.scans",
        "partitions": 6,
        "bindingVersion": "0.5.0",
    }
    message = doc["components"]["messages"]["ScanEvent"]
    assert message["payload"]["schema"] == scan_schema.definition
    assert message["payload"]["schemaFormat"].startswith("application/vnd.apache.avro")
    assert message["bindings"]["kafka"]["key"]["type"] == "string"
    assert message["bindings"]["kafka"]["schemaIdPayloadEncoding"] == "apache"
    assert message["contentType"] == "application/avro; encoding=single-object"
    headers = doc["components"]["schemas"]["ScanEventHeaders"]["properties"]
    assert headers["ce_dataschema"]["const"] == (
        f"urn:avro:crc-64-avro:{scan_schema.fingerprint.hex()}"
    )
    assert headers["ce_type"]["const"] == "com.passentry.scan.v1"
    for operation in doc["operations"].values():
        assert operation["action"] == "send"
        assert "read_committed" in operation["description"]
    assert "isolation.level=read_committed" in doc["info"]["description"]
    assert "when the bridge published the record" in doc["info"]["description"]


def test_registry_mode_routed_topics_and_sasl_change_the_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "https://sr.example:8081,https://sr2.example:8081")
    monkeypatch.setenv("SCHEMA_REGISTRY_SUBJECT_NAME_STRATEGY", "record")
    config = tmp_path / "bridge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "kafka": {
                    "bootstrap_servers": "b1:9093,b2:9093",
                    "security_protocol": "SASL_SSL",
                    "sasl_mechanism": "SCRAM-SHA-512",
                    "sasl_username": "bridge",
                    "sasl_password": "secret-value",
                },
                "bridge": {
                    "topic_template": "scans.{status}.{scan_type}",
                    "dlq_topic": "scans.dlq",
                    "topic_partitions": 12,
                    "topic_replication_factor": 3,
                },
            }
        )
    )
    doc = printed("--config", str(config))
    assert [c["address"] for c in doc["channels"].values()] == [
        "scans.successful.nfc",
        "scans.successful.barcode",
        "scans.failed.nfc",
        "scans.failed.barcode",
        "scans.dlq",
    ]
    binding = doc["channels"]["scans_failed_nfc"]["bindings"]["kafka"]
    assert (binding["partitions"], binding["replicas"]) == (12, 3)
    server = doc["servers"]["kafka"]
    assert (server["host"], server["protocol"]) == ("b1:9093", "kafka-secure")
    assert server["bindings"]["kafka"]["schemaRegistryUrl"] == "https://sr.example:8081"
    assert doc["components"]["securitySchemes"]["sasl"]["type"] == "scramSha512"
    message = doc["components"]["messages"]["ScanEvent"]
    assert message["contentType"] == "application/vnd.confluent.avro"
    kafka = message["bindings"]["kafka"]
    assert kafka["schemaIdPayloadEncoding"] == "confluent"
    assert kafka["schemaLookupStrategy"] == "RecordIdStrategy"
    dataschema = doc["components"]["schemas"]["ScanEventHeaders"]["properties"]["ce_dataschema"]
    assert dataschema["format"] == "uri"
    assert "secret-value" not in yaml.safe_dump(doc)


def test_a_bad_config_exits_2_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_TOPIC_PARTITIONS", "0")
    result = CliRunner().invoke(schema, ["asyncapi"])
    assert result.exit_code == 2
    assert "BRIDGE_TOPIC_PARTITIONS" in result.output


def test_the_documented_headers_are_the_ones_records_carry(scan_schema: VersionedSchema) -> None:
    """A header added to or dropped from the records must show in the document."""
    doc = asyncapi_document(load_config(), scan_schema)
    gen = Generator(5)
    passes, readers = gen.world()
    items = [c.item for c in decoded(gen.page(20, passes, readers), "src")]
    builder = RecordBuilder("src", "dlq", Router("scans", None), SingleObjectFramer(scan_schema))
    records = builder.scans(items, Encoder(scan_schema, "src").encode(items))
    documented = doc["components"]["schemas"]["ScanEventHeaders"]
    for record in records:
        names = {name for name, _ in record.headers}
        assert names <= set(documented["properties"]), names - set(documented["properties"])
        assert set(documented["required"]) <= names
    dead = builder.dead_letter(
        Rejected("late_scan", "late", b"{}", "0194d6a9-95b5-7556-896c-693a6ef61c4d", "r"), "u"
    )
    documented = doc["components"]["schemas"]["DeadLetterHeaders"]
    names = {name for name, _ in dead.headers}
    # Added after the builder: by a repair or a replay, and by tracing.
    later = {"repaired-by", "traceparent", "tracestate"}
    assert names | later == set(documented["properties"])
    assert set(documented["required"]) <= names
