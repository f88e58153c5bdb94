"""``passentry-bridge schema show|check|register|diff`` through click's test runner."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from bridge.avro.lock import bundled_schemas
from bridge.avro.registry import canonical
from bridge.avro.schemas import VersionedSchema
from bridge.cli.schema import schema
from tests.support import SCHEMA_FIXTURES


@pytest.fixture
def with_registry(monkeypatch: pytest.MonkeyPatch, registry: SchemaRegistryClient) -> dict:
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "mock://cli")
    return {"registry_client": registry}


def test_show_prints_the_schema_and_its_fingerprint(scan_schema: VersionedSchema) -> None:
    runner = CliRunner()
    shown = runner.invoke(schema, ["show"])
    assert shown.exit_code == 0
    assert json.loads(shown.output) == scan_schema.definition
    printed = runner.invoke(schema, ["show", "--version", "1", "--fingerprint"])
    assert printed.output.strip() == scan_schema.fingerprint.hex()


def test_check_passes_on_the_released_schemas() -> None:
    result = CliRunner().invoke(schema, ["check"])
    assert result.exit_code == 0, result.output
    assert "ok    lock" in result.output
    assert "ok    compat    passentry_scan: consecutive versions are FULL" in result.output


def test_check_fails_on_incompatible_versions_and_an_edited_release(tmp_path: Path) -> None:
    root = tmp_path / "schemas"
    shutil.copytree(bundled_schemas(), root)
    shutil.copytree(SCHEMA_FIXTURES / "string_to_int", root / "ticket")
    (root / "passentry_scan" / "v1.avsc").write_text("{}")
    result = CliRunner().invoke(schema, ["check", "--schemas-dir", str(root)])
    assert result.exit_code == 1
    assert "FAIL  lock      passentry_scan/v1.avsc was edited" in result.output
    assert "FAIL  compat    ticket v1 -> v2: BACKWARD (new reads old data): holder" in result.output


def test_check_honours_the_mode(tmp_path: Path) -> None:
    root = tmp_path / "schemas"
    shutil.copytree(SCHEMA_FIXTURES / "int_to_long", root / "ticket")
    (root / "schemas.lock").write_text("")
    args = ["check", "--schemas-dir", str(root)]
    backward = CliRunner().invoke(schema, [*args, "--mode", "BACKWARD"])
    assert "ok    compat    ticket: consecutive versions are BACKWARD" in backward.output
    full = CliRunner().invoke(schema, [*args, "--mode", "FULL"])
    assert "FAIL  compat    ticket v1 -> v2: FORWARD" in full.output


def test_register_prints_the_ids_per_subject(
    with_registry: dict, registry: SchemaRegistryClient, scan_schema: VersionedSchema
) -> None:
    result = CliRunner().invoke(
        schema, ["register", "--topic", "a", "--topic", "b"], obj=with_registry
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["a-value\t1", "b-value\t2"]
    got = registry.get_schema(2).schema_str
    assert canonical(got) == scan_schema.canonical


def test_register_without_a_registry_fails() -> None:
    result = CliRunner().invoke(schema, ["register", "--topic", "a"])
    assert result.exit_code == 1
    assert "SCHEMA_REGISTRY_URL is not set" in result.output


def test_check_against_the_registry(
    monkeypatch: pytest.MonkeyPatch,
    with_registry: dict,
    registry: SchemaRegistryClient,
    scan_schema: VersionedSchema,
) -> None:
    runner = CliRunner()
    fresh = runner.invoke(schema, ["check", "--topic", "t"], obj=with_registry)
    assert "ok    registry  t-value: not registered yet" in fresh.output
    # A registered schema the local one cannot be FULL-compatible with.
    broken = copy.deepcopy(scan_schema.definition)
    broken["fields"].append({"name": "gate", "type": "string"})
    registry.register_schema("t-value", Schema(json.dumps(broken), "AVRO"))
    result = runner.invoke(schema, ["check", "--topic", "t"], obj=with_registry)
    assert result.exit_code == 1
    assert "FAIL  registry  t-value: local v1 is not FULL-compatible" in result.output
    assert "gate" in result.output
    monkeypatch.setenv("SCHEMA_REGISTRY_MODE", "latest")
    latest = runner.invoke(schema, ["check", "--topic", "t"], obj=with_registry)
    assert "FAIL  registry  registered version 1 of subject 't-value'" in latest.output


def test_diff_between_the_registry_and_the_local_schema(
    with_registry: dict, registry: SchemaRegistryClient, scan_schema: VersionedSchema
) -> None:
    older = copy.deepcopy(scan_schema.definition)
    older["fields"] = [f for f in older["fields"] if f["name"] != "statusDetail"]
    registry.register_schema("scans-value", Schema(json.dumps(older), "AVRO"))
    result = CliRunner().invoke(
        schema, ["diff", "registry", "v1", "--topic", "scans"], obj=with_registry
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "+ statusDetail  [null, string] = null"
    assert "FULL: compatible" in result.output


def test_diff_of_a_version_with_itself_is_empty() -> None:
    result = CliRunner().invoke(schema, ["diff", "1", "latest"])
    assert result.output.splitlines() == ["no field-level differences", "FULL: compatible"]


def test_diff_rejects_an_unknown_spec() -> None:
    result = CliRunner().invoke(schema, ["diff", "yesterday"])
    assert result.exit_code == 2
    assert "expected N, vN, latest, registry or registry@N" in result.output
