"""Project-wide pytest setup.

- Tests under tests/integration/ are marked ``integration`` automatically.
- Every test runs with ``PASSENTRY_*``, ``BRIDGE_*``, ``KAFKA_*`` and ``SCHEMA_REGISTRY_*``
  variables removed; the environment as it was when pytest started is kept in
  ``SESSION_ENV`` (fixture ``session_environ``), e.g. for ``KAFKA_BOOTSTRAP_SERVERS``.
- Which Kafka the integration tests use (fixture ``kafka_source``, shown in the header):
  ``KAFKA_BOOTSTRAP_SERVERS`` if set, else testcontainers if a Docker engine answers, else a
  local broker from ``scripts/kafka-local``. The broker itself is in tests/integration/conftest.py.
- tests/k8s/ (a local Kubernetes cluster from ``scripts/k8s-local``; minutes to build the first
  time) is collected only when named: ``pytest tests/k8s`` or ``make test-k8s``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INTEGRATION_DIR = ROOT / "tests" / "integration"
KAFKA_LOCAL = ROOT / "scripts" / "kafka-local"

collect_ignore = ["k8s"]  # unless named on the command line (see the docstring)

SESSION_ENV: dict[str, str] = dict(os.environ)  # captured before any test touches os.environ
_RESET_PREFIXES = ("PASSENTRY_", "BRIDGE_", "KAFKA_", "SCHEMA_REGISTRY_")


@functools.cache
def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        proc = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=5,
            check=False,
        )
    except Exception:
        return False
    return proc.returncode == 0


def resolve_kafka_source() -> str:
    """``"env"``, ``"testcontainers"`` or ``"local"``."""
    if SESSION_ENV.get("KAFKA_BOOTSTRAP_SERVERS"):
        return "env"
    if docker_answers():
        return "testcontainers"
    return "local"


def pytest_report_header(config: pytest.Config) -> str:
    source = resolve_kafka_source()
    if source == "env":
        return f"kafka: KAFKA_BOOTSTRAP_SERVERS={SESSION_ENV['KAFKA_BOOTSTRAP_SERVERS']}"
    if source == "testcontainers":
        return "kafka: testcontainers (a Docker engine answers)"
    return "kafka: local broker from scripts/kafka-local (started on first use if not running)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def session_environ() -> dict[str, str]:
    return dict(SESSION_ENV)


@pytest.fixture(scope="session")
def kafka_source() -> str:
    return resolve_kafka_source()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(_RESET_PREFIXES):
            monkeypatch.delenv(name)
