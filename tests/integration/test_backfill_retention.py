"""A backfill of scans older than the topic's retention stays in Kafka: records are stamped
when published, so time-based retention counts from then, not from the scan's creation."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from tests.integration.eos_harness import Topics, bridge_env
from tests.integration.harness import drain, wait_for

BRIDGE = str(Path(sys.executable).with_name("passentry-bridge"))
DAY_MS = 86_400_000
RETENTION_MS = 3_600_000


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _low_watermarks(bootstrap: str, topic: str, partitions: int) -> list[int]:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "retention-test"})
    try:
        return [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0]
            for p in range(partitions)
        ]
    finally:
        consumer.close()


def test_a_backfill_older_than_retention_is_kept(kafka_bootstrap: str) -> None:
    anchor = int(time.time() * 1000) - 2 * DAY_MS
    topics = Topics.fresh()
    control = f"{topics.source}-control"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    hour = {"retention.ms": str(RETENTION_MS)}
    created = admin.create_topics(
        [NewTopic(t, 3, 1, config=hour) for t in (topics.scans, topics.dlq, control)]
    )
    for future in created.values():
        future.result(30)
    world = WorldConfig(readers=5, passes=50, seed=77, backlog=300, backlog_span_s=600,
                        anchor_ms=anchor)  # fmt: skip
    with SimulatorServer(SimulatorConfig(world=world, rate_limit=None)) as sim:
        env = bridge_env(sim.url, kafka_bootstrap, topics, PASSENTRY_REQUEST_BUDGET="50")
        since, until = _iso(anchor - 601_000), _iso(anchor + 1000)
        done = subprocess.run(
            [BRIDGE, "backfill", "--since", since, "--until", until],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"{topics.scans}: records are kept 1h after they are published" in done.stderr
        assert "300 scans published" in done.stderr, done.stderr[-3000:]
        # A record stamped as old as the scans, in a topic with the same retention: the
        # broker deletes it, which shows that its retention check has run.
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        producer.produce(control, b"stamped two days ago", partition=0, timestamp=anchor)
        assert producer.flush(30) == 0
        wait_for(lambda: _low_watermarks(kafka_bootstrap, control, 1)[0] > 0, 120,
                 "the broker to delete the old control record")  # fmt: skip
        # The backfilled scans, stamped when published, are all still there.
        assert _low_watermarks(kafka_bootstrap, topics.scans, 3) == [0, 0, 0]
        records = drain(kafka_bootstrap, topics.scans, idle_s=2)
        assert {r.headers["scan-id"].decode() for r in records} == {
            s.id for s in sim.store.all_scans()
        }
        assert all(r.timestamp_ms > anchor + DAY_MS for r in records)
        audit = subprocess.run(
            [BRIDGE, "audit", "--since", since, "--until", until, "--bucket", "1h"],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert audit.returncode == 0, audit.stdout + audit.stderr[-2000:]
        check = subprocess.run(
            [BRIDGE, "check"], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        rows = [r for r in check.stdout.splitlines() if r.split()[1:2] == ["retention"]]
        assert any(f"{topics.scans}: records are kept 1h" in r for r in rows), check.stdout


pytestmark = pytest.mark.timeout(600)
