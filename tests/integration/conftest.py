"""Fixtures for tests that need a real Kafka broker.

``kafka_bootstrap`` (session): the bootstrap address, from the source chosen in tests/conftest.py
(KAFKA_BOOTSTRAP_SERVERS, testcontainers, or ``scripts/kafka-local start``; a local broker is
stopped at session end only if this session started it).
``new_topic`` (function): factory ``new_topic(partitions=3, config=None) -> name``; topics are
created via AdminClient, waited for, and deleted at teardown (best effort).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

KAFKA_LOCAL = Path(__file__).resolve().parents[2] / "scripts" / "kafka-local"


def _testcontainers_kafka() -> Iterator[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # testcontainers.kafka is deprecated in 4.x
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:
            from testcontainers.kafka import KafkaContainer
    with KafkaContainer() as container:
        yield container.get_bootstrap_server()


def _local_kafka(env: dict[str, str]) -> Iterator[str]:
    def run(cmd: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KAFKA_LOCAL), cmd],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    already_running = run("status", 30).returncode == 0
    started = run("start", 600)
    lines = started.stdout.strip().splitlines()
    if started.returncode != 0 or not lines:
        pytest.fail(
            f"scripts/kafka-local start failed (exit {started.returncode}):\n{started.stderr}",
            pytrace=False,
        )
    try:
        yield lines[-1]
    finally:
        if not already_running:
            run("stop", 90)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_source: str, session_environ: dict[str, str]) -> Iterator[str]:
    if kafka_source == "env":
        yield session_environ["KAFKA_BOOTSTRAP_SERVERS"]
    elif kafka_source == "testcontainers":
        yield from _testcontainers_kafka()
    else:
        yield from _local_kafka(session_environ)


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
