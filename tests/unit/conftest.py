"""Fixtures for every unit test: a fresh metrics registry, the bridge's schema, and an
in-memory schema registry. (``SCHEMA_REGISTRY_*`` variables are cleared for every test by
tests/conftest.py.)"""

from __future__ import annotations

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from bridge.avro.schemas import VersionedSchema, latest
from bridge.ops.metrics import Metrics


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def scan_schema() -> VersionedSchema:
    return latest()


@pytest.fixture
def registry() -> SchemaRegistryClient:
    # A mock:// client keeps its schemas in the instance, so each test gets its own.
    client: SchemaRegistryClient = SchemaRegistryClient.new_client({"url": "mock://schema-tests"})
    return client
