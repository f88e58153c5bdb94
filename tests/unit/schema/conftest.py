"""Fixtures for the schema tests: a fresh in-memory registry per test and the bridge's schema.
(``SCHEMA_REGISTRY_*`` variables are cleared for every test by tests/conftest.py.)"""

from __future__ import annotations

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from bridge.avro.schemas import VersionedSchema, latest


@pytest.fixture
def registry() -> SchemaRegistryClient:
    # A mock:// client keeps its schemas in the instance, so each test gets its own.
    client: SchemaRegistryClient = SchemaRegistryClient.new_client({"url": "mock://schema-tests"})
    return client


@pytest.fixture
def scan_schema() -> VersionedSchema:
    return latest()
