"""The cluster fault suite's fixtures: the three-node cluster of ``scripts/kafka-cluster`` (in
``.local/kafka-cluster``, or ``TEST_KAFKA_CLUSTER_DIR``), started once per session and
stopped at its end if this session started it; each test gets it whole (every node running,
every partition in sync) and gives it back whole. Bridges a test left running are stopped
after it, as in tests/integration."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.eos_harness import stop_everything
from tests.kafka_cluster import SCRIPT, KafkaCluster

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def kafka_cluster(session_environ: dict[str, str]) -> Iterator[KafkaCluster]:
    directory = Path(
        session_environ.get("TEST_KAFKA_CLUSTER_DIR", ROOT / ".local" / "kafka-cluster")
    )
    cluster = KafkaCluster(directory)
    status = subprocess.run(
        [str(SCRIPT), "status"], env=cluster.env, capture_output=True, check=False
    )
    cluster.up()
    try:
        yield cluster
    finally:
        if status.returncode != 0:
            cluster.down()


@pytest.fixture
def cluster(kafka_cluster: KafkaCluster) -> Iterator[KafkaCluster]:
    """The cluster, whole before the test and again after it."""
    kafka_cluster.heal()
    try:
        yield kafka_cluster
    finally:
        stop_everything()  # before the nodes come back: nothing is left writing
        kafka_cluster.heal()
