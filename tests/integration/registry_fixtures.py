"""A real, Confluent-compatible schema registry for integration tests.

``schema_registry_url`` (session): the base URL for Confluent clients
(``SchemaRegistryClient({"url": ...})``), e.g. ``http://127.0.0.1:PORT/apis/ccompat/v7``.

- ``SCHEMA_REGISTRY_TEST_URL`` set (when pytest started): that registry is used as is.
- Otherwise ``scripts/registry-local start`` runs Apicurio Registry (in-memory storage) from its
  Maven Central distribution, or reuses the one already running. It is stopped at session end
  only if this session started it.

Use it from a test module with ``from tests.integration.registry_fixtures import
schema_registry_url  # noqa: F401`` (or list this module in a conftest's ``pytest_plugins``).
Subjects are not cleaned up: use unique subject names.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.lib.jvm_service import running
from scripts.lib.registry_local import Registry

REGISTRY_LOCAL = Path(__file__).resolve().parents[2] / "scripts" / "registry-local"
ENV_URL = "SCHEMA_REGISTRY_TEST_URL"


def registry_source(env: dict[str, str]) -> str:
    """``"env"`` (SCHEMA_REGISTRY_TEST_URL) or ``"local"`` (scripts/registry-local)."""
    return "env" if env.get(ENV_URL) else "local"


@pytest.fixture(scope="session")
def schema_registry_url(session_environ: dict[str, str]) -> Iterator[str]:
    if registry_source(session_environ) == "env":
        yield session_environ[ENV_URL].rstrip("/")
    else:
        # scripts/registry-local's code, in-process; stopped at the end only if started here
        with running(Registry(session_environ)) as url:
            yield url
