"""Project-wide pytest setup.

- Tests under tests/integration/ and tests/cluster/ are marked ``integration``
  automatically. tests/cluster/ runs on the three-node cluster of ``scripts/kafka-cluster``
  (its own session fixture, tests/cluster/conftest.py).
- Every test runs with ``PASSENTRY_*``, ``BRIDGE_*``, ``KAFKA_*`` and ``SCHEMA_REGISTRY_*``
  variables removed; the environment as it was when pytest started is kept in
  ``SESSION_ENV`` (fixture ``session_environ``), e.g. for ``KAFKA_BOOTSTRAP_SERVERS``.
- Which Kafka the tests use (fixture ``kafka_source``, shown in the header):
  ``TEST_KAFKA_SOURCE`` (``env``, ``testcontainers`` or ``local``) if set; else
  ``KAFKA_BOOTSTRAP_SERVERS`` if set; else testcontainers if a Docker API answers (a Docker
  engine, or podman's through ``scripts/podman-service``); else a local broker from
  ``scripts/kafka-local``. Where the broker comes from is in tests/kafka_broker.py.
- tests/k8s/ runs the chart on a local Kubernetes cluster from ``scripts/k8s-local`` (its
  session fixture brings it up; the first time on a machine that compiles Kubernetes, 8
  minutes or more, which .ci/run starts in the background at its beginning). Skipped where
  it cannot run (not root, no Go), except under ``CI=true``; ``make test-k8s`` runs only it.

Broker fixtures, shared by tests/integration and tests/image:
``kafka_bootstrap`` (session): the bootstrap address (a local broker is stopped at session end
only if this session started it; a testcontainers broker is always removed).
``new_topic`` (function): factory ``new_topic(partitions=3, config=None) -> name``; topics are
created via AdminClient, waited for, and deleted at teardown (best effort).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests import kafka_broker

ROOT = Path(__file__).resolve().parent.parent
INTEGRATION_DIRS = (ROOT / "tests" / "integration", ROOT / "tests" / "cluster")
SECURE_DIR = ROOT / "tests" / "integration" / "secure"

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


KAFKA_SOURCES = ("env", "testcontainers", "local")


def resolve_kafka_source() -> str:
    """``"env"``, ``"testcontainers"`` or ``"local"``."""
    chosen = SESSION_ENV.get("TEST_KAFKA_SOURCE")
    if chosen:
        if chosen not in KAFKA_SOURCES:
            raise pytest.UsageError(f"TEST_KAFKA_SOURCE must be one of {KAFKA_SOURCES}: {chosen}")
        return chosen
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
        image = SESSION_ENV.get("TEST_KAFKA_IMAGE") or kafka_broker.default_kafka_image()
        where = SESSION_ENV.get("DOCKER_HOST", "the default Docker socket")
        return f"kafka: testcontainers, {image} through {where}"
    return "kafka: local broker from scripts/kafka-local (started on first use if not running)"


# Suites that take minutes each (failover under load, kills, hostile traffic, builds of the
# other languages' consumers): marked slow, for -m "not slow".
SLOW_MODULES = frozenset({
    "test_failover.py", "test_exactly_once.py", "test_exactly_once_webhooks.py",
    "test_webhooks_hostile.py", "test_registry_local.py", "test_backfill_retention.py",
    "test_consumer_java.py", "test_consumer_go.py", "test_schema_evolution.py",
    "test_tracing_jaeger.py",
})  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(d in item.path.parents for d in INTEGRATION_DIRS):
            item.add_marker(pytest.mark.integration)
        if SECURE_DIR in item.path.parents:
            item.add_marker(pytest.mark.secure)
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for image, seconds in kafka_broker.STARTS:
        terminalreporter.write_line(
            f"kafka: testcontainers started {image} and it answered in {seconds:.1f}s"
        )


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


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_source: str, session_environ: dict[str, str]) -> Iterator[str]:
    if kafka_source == "env":
        yield session_environ["KAFKA_BOOTSTRAP_SERVERS"]
    elif kafka_source == "testcontainers":
        yield from kafka_broker.testcontainers_kafka(session_environ)
    else:
        yield from kafka_broker.local_kafka(session_environ)


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


def _wait_for_leaders(admin: AdminClient, topic: str, partitions: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(topic, timeout=10).topics.get(topic)
        if (
            meta is not None
            and meta.error is None
            and len(meta.partitions) == partitions
            and all(p.leader >= 0 for p in meta.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} has no leaders after {timeout}s: {meta}")
        time.sleep(0.05)


@pytest.fixture
def new_topic(kafka_admin: AdminClient) -> Iterator[Callable[..., str]]:
    created: list[str] = []

    def create(partitions: int = 3, config: dict[str, str] | None = None) -> str:
        name = f"test-{uuid.uuid4()}"
        topic = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
        futures = kafka_admin.create_topics([topic], operation_timeout=30, request_timeout=30)
        futures[name].result(timeout=60)
        created.append(name)
        _wait_for_leaders(kafka_admin, name, partitions, timeout=30)
        return name

    yield create

    if created:
        with contextlib.suppress(Exception):  # best effort
            for future in kafka_admin.delete_topics(created, operation_timeout=30).values():
                future.result(timeout=60)
