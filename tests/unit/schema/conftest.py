"""Fixtures for the schema tests: a fresh in-memory registry per test, the bridge's schema,
and no ``SCHEMA_REGISTRY_*`` variables leaking in from the shell."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from bridge.avro.schemas import VersionedSchema, latest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "schemas"


@pytest.fixture(autouse=True)
def _no_registry_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SCHEMA_REGISTRY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def registry() -> SchemaRegistryClient:
    # A mock:// client keeps its schemas in the instance, so each test gets its own.
    client: SchemaRegistryClient = SchemaRegistryClient.new_client({"url": "mock://schema-tests"})
    return client


@pytest.fixture
def scan_schema() -> VersionedSchema:
    return latest()
