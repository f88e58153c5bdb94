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

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REGISTRY_LOCAL = Path(__file__).resolve().parents[2] / "scripts" / "registry-local"
ENV_URL = "SCHEMA_REGISTRY_TEST_URL"
# A cold start resolves ~160 MB from Maven Central once (about 30 s here); leave room for a
# slow mirror.
START_TIMEOUT = 900


def _local_registry(env: dict[str, str]) -> Iterator[str]:
    def run(cmd: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REGISTRY_LOCAL), cmd],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    already_running = run("status", 30).returncode == 0
    started = run("start", START_TIMEOUT)
    lines = started.stdout.strip().splitlines()
    if started.returncode != 0 or not lines:
        pytest.fail(
            f"scripts/registry-local start failed (exit {started.returncode}):\n{started.stderr}",
            pytrace=False,
        )
    try:
        yield lines[-1]
    finally:
        if not already_running:
            run("stop", 90)


def registry_source(env: dict[str, str]) -> str:
    """``"env"`` (SCHEMA_REGISTRY_TEST_URL) or ``"local"`` (scripts/registry-local)."""
    return "env" if env.get(ENV_URL) else "local"


@pytest.fixture(scope="session")
def schema_registry_url(session_environ: dict[str, str]) -> Iterator[str]:
    if registry_source(session_environ) == "env":
        yield session_environ[ENV_URL].rstrip("/")
    else:
        yield from _local_registry(session_environ)
