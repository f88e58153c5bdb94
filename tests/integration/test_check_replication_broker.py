"""``passentry-bridge check`` on the single test broker reads each topic's replication as Kafka
has it: one replica warns (a broker's loss stops the topic), unclean leader election warns,
more replicas required in sync than there are fails (Kafka takes no ``acks=all`` write), and a
topic not made yet is said as such. The recommended shape, three replicas with two in sync,
is checked on the three-node cluster (tests/cluster/test_check_replication_cluster.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner

from bridge.cli.check import check
from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    world = WorldConfig(readers=2, passes=10, seed=3, backlog=4, backlog_span_s=60)
    with SimulatorServer(SimulatorConfig(world=world)) as server:
        yield server


def test_replication_rows_on_one_broker(
    monkeypatch: pytest.MonkeyPatch,
    sim: SimulatorServer,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
) -> None:
    scans = new_topic(partitions=1)
    dlq = new_topic(partitions=1, config={"unclean.leader.election.enable": "true"})
    state = f"test-{uuid.uuid4()}"  # not made: the bridge makes it when it starts
    inbox = new_topic(partitions=1, config={"min.insync.replicas": "2"})
    secret = "whsec-check-0123456789abcdef0123456789abcdef"
    sim.sim.subscriptions.add("http://127.0.0.1:8080/webhooks/passentry/check", secret=secret)
    for key, value in {
        "PASSENTRY_API_URL": sim.url,
        "PASSENTRY_API_TOKEN": sim.token,
        "PASSENTRY_WEBHOOK_SECRET": secret,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "BRIDGE_SCANS_TOPIC": scans,
        "BRIDGE_DLQ_TOPIC": dlq,
        "BRIDGE_STATE_TOPIC": state,
        "BRIDGE_WEBHOOK_TOPIC": inbox,
        "BRIDGE_SOURCE_ID": f"check-{uuid.uuid4().hex[:8]}",
    }.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(check, [])
    rows = {
        detail.split(":", 1)[0]: (verdict, detail)
        for verdict, name, detail in (line.split(None, 2) for line in result.output.splitlines())
        if name == "replication"
    }
    # The inbox takes no write: check fails, on that row alone.
    assert result.exit_code == 1, result.output
    failed = [line for line in result.output.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1, result.output
    assert inbox in failed[0]

    assert rows[scans] == (
        "WARN",
        f"{scans}: replication factor 1, min.insync.replicas 1, unclean leader election off:"
        " one replica: losing its broker stops the topic, and losing its disk loses every"
        " record on it (recommended: replication factor 3, min.insync.replicas 2, unclean"
        " leader election off)",
    )
    verdict, detail = rows[dlq]
    assert verdict == "WARN"
    assert "unclean leader election on: one replica" in detail
    assert "; unclean.leader.election.enable=true: a replica that missed committed" in detail
    verdict, detail = rows[state]
    assert verdict == "ok"
    assert detail.startswith(f"{state}: not created yet: the bridge makes it with")
    verdict, detail = rows[inbox]
    assert verdict == "FAIL"
    assert (
        f"{inbox}: replication factor 1, min.insync.replicas 2, unclean leader election off:"
        " min.insync.replicas 2 with 1 replica: Kafka refuses every write the bridge makes"
        " (acks=all)"
    ) in detail
    # check's transactional probe made the transaction log, if nothing had: one replica.
    verdict, detail = rows["__transaction_state"]
    assert verdict == "WARN"
    assert "replication factor 1," in detail
