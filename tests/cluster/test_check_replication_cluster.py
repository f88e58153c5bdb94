"""``passentry-bridge check`` on the three-node cluster: each topic's replication factor,
min.insync.replicas and unclean leader election, a warning where losing a broker would lose
a commit or stop writes, and the transaction log's own."""

from __future__ import annotations

import uuid

import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.cli.check import check
from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from tests.kafka_cluster import KafkaCluster


def test_replication_rows(cluster: KafkaCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    tag = uuid.uuid4().hex[:8]
    scans, dlq, state = f"check-{tag}-scans", f"check-{tag}-dlq", f"check-{tag}-state"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    made = admin.create_topics(
        [
            NewTopic(scans, 3),  # the cluster's defaults: 3 replicas, 2 in sync
            NewTopic(dlq, 3, config={"min.insync.replicas": "1"}),
            NewTopic(state, 1, 2, config={"unclean.leader.election.enable": "true"}),
        ]
    )
    for future in made.values():
        future.result(60)
    world = WorldConfig(readers=2, passes=10, seed=3, backlog=4, backlog_span_s=60)
    with SimulatorServer(SimulatorConfig(world=world)) as sim:
        for key, value in {
            "PASSENTRY_API_URL": sim.url,
            "PASSENTRY_API_TOKEN": sim.token,
            "KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap,
            "BRIDGE_SCANS_TOPIC": scans,
            "BRIDGE_DLQ_TOPIC": dlq,
            "BRIDGE_STATE_TOPIC": state,
            "BRIDGE_SOURCE_ID": f"check-{tag}",
            "BRIDGE_GROUP_ID": f"check-{tag}",
        }.items():
            monkeypatch.setenv(key, value)
        result = CliRunner().invoke(check, [])
    lines = result.output.splitlines()
    # Warnings do not fail the check; nothing else is wrong here.
    assert result.exit_code == 0, result.output
    rows = {
        detail.split(":", 1)[0]: (verdict, detail)
        for verdict, name, detail in (line.split(None, 2) for line in lines)
        if name == "replication"
    }
    assert rows[scans] == (
        "ok",
        f"{scans}: replication factor 3, min.insync.replicas 2, unclean leader election off:"
        " a broker can be lost without losing a commit or stopping writes",
    )
    verdict, detail = rows[dlq]
    assert verdict == "WARN"
    assert "min.insync.replicas 1: while its followers lag, Kafka takes commits" in detail
    verdict, detail = rows[state]
    assert verdict == "WARN"
    assert "replication factor 2, min.insync.replicas 2, unclean leader election on" in detail
    assert "min.insync.replicas 2 of 2 replicas: losing any broker stops every write" in detail
    assert "unclean.leader.election.enable=true" in detail
    # check's own transactional probe made the transaction log, replicated as configured.
    assert rows["__transaction_state"][0] == "ok"
    assert "replication factor 3, min.insync.replicas 2" in rows["__transaction_state"][1]
