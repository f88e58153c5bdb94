"""Fixtures of the consumer tests: topics the bridge filled from the simulator, in
single-object encoding and in registry mode (the Apicurio registry of
tests/integration/registry_fixtures.py), shared by the tests of this folder."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient

from tests.integration.consumers.consumer_support import BOOTSTRAP, Filled, fill
from tests.integration.registry_fixtures import schema_registry_url  # noqa: F401

BACKLOG = 60


@pytest.fixture(scope="session")
def single_object_topic(kafka_bootstrap: str, kafka_admin: AdminClient) -> Filled:
    BOOTSTRAP["servers"] = kafka_bootstrap
    return fill(kafka_admin, kafka_bootstrap, backlog=BACKLOG)


@pytest.fixture(scope="session")
def registry_topic(
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    schema_registry_url: str,  # noqa: F811
) -> Filled:
    BOOTSTRAP["servers"] = kafka_bootstrap
    return fill(kafka_admin, kafka_bootstrap, backlog=BACKLOG, registry_url=schema_registry_url)
