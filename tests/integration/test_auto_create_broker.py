"""Against a broker that creates the topics clients ask about (``auto.create.topics.enable``,
Kafka's own default; the other test brokers turn it off): the bridge asks about its topics
by name and must make none that way. A topic made so would have the broker's defaults: a
coordination topic with the broker's partition count instead of
BRIDGE_COORDINATION_PARTITIONS, a state topic that is not compacted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from scripts.lib.kafka_local import Broker
from tests.integration.eos_harness import BridgeProcess, Topics, bridge_env
from tests.support import free_port

BRIDGE = str(Path(sys.executable).with_name("passentry-bridge"))
# The broker's default for a topic it makes, and what the bridge is told: apart, so that a
# topic the broker made shows.
BROKER_PARTITIONS = 2
SCANS_PARTITIONS = 3
COORDINATION_PARTITIONS = 5


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    broker = Broker(
        {
            **os.environ,
            "KAFKA_LOCAL_DIR": str(tmp_path_factory.mktemp("auto-create-kafka")),
            "KAFKA_LOCAL_PROPERTIES": (
                f"auto.create.topics.enable=true num.partitions={BROKER_PARTITIONS}"
            ),
        }
    )
    try:
        yield broker.start()
    finally:
        broker.stop()


def _topics(admin: AdminClient) -> dict[str, int]:
    return {
        name: len(meta.partitions)
        for name, meta in admin.list_topics(timeout=10).topics.items()
        if not name.startswith("__")
    }


def _env(bootstrap: str, api_url: str, topics: Topics, **extra: str) -> dict[str, str]:
    return bridge_env(
        api_url,
        bootstrap,
        topics,
        BRIDGE_GROUP_ID=f"{topics.source}-group",
        BRIDGE_COORDINATION_TOPIC=f"{topics.source}-coordination",
        BRIDGE_COORDINATION_PARTITIONS=str(COORDINATION_PARTITIONS),
        BRIDGE_TOPIC_PARTITIONS=str(SCANS_PARTITIONS),
        **extra,
    )


def _bridge(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BRIDGE, *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def test_the_broker_makes_a_topic_a_client_asks_about(bootstrap: str) -> None:
    """The test bed is what it says: without this, the tests below could not fail."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    asked = f"asked-{uuid.uuid4().hex[:8]}"
    admin.list_topics(asked, timeout=10)
    deadline = time.monotonic() + 15
    while asked not in _topics(admin) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _topics(admin).get(asked) == BROKER_PARTITIONS


def test_with_creation_off_nothing_is_made(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = Topics.fresh()
    with SimulatorServer(SimulatorConfig(world=WorldConfig(seed=5, backlog=20))) as sim:
        env = _env(bootstrap, sim.url, topics, BRIDGE_CREATE_TOPICS="false")
        status = _bridge(env, "status")
        run = _bridge(env, "run", "--once", "--since", "2000-01-01T00:00:00Z")
    assert "Traceback" not in status.stderr + run.stderr
    assert run.returncode != 0
    assert "BRIDGE_CREATE_TOPICS is false" in run.stderr, run.stderr[-2000:]
    time.sleep(2)  # what the broker would make, it makes at once
    made = [name for name in _topics(admin) if name.startswith(topics.source)]
    assert made == [], f"asked about, and made with the broker's defaults: {made}"


def test_the_topics_the_bridge_makes_have_its_settings(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = Topics.fresh()
    with SimulatorServer(SimulatorConfig(world=WorldConfig(seed=6, backlog=50))) as sim:
        env = _env(bootstrap, sim.url, topics)
        run = _bridge(env, "run", "--once", "--since", "2000-01-01T00:00:00Z")
        assert run.returncode == 0, run.stderr[-3000:]
        status = _bridge(env, "status")
        assert "Traceback" not in status.stderr
    found = {name: n for name, n in _topics(admin).items() if name.startswith(topics.source)}
    # The coordination topic is the group's, made by a replica that joins it; run --once
    # only asks who owns the source, which must not make it.
    assert found == {
        topics.scans: SCANS_PARTITIONS,
        topics.dlq: SCANS_PARTITIONS,
        topics.state: 1,
    }
    (state,) = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topics.state)]).values()
    assert state.result()["cleanup.policy"].value == "compact"


def test_the_webhook_inbox_is_the_bridges_though_its_writer_asks_first(
    bootstrap: str, tmp_path: Path
) -> None:
    """The receiver's writer asks about the inbox from the start, before the member makes
    it: the inbox must still have the bridge's partition count, not the broker's."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = Topics.fresh()
    inbox = f"{topics.source}-inbox"
    with SimulatorServer(SimulatorConfig(world=WorldConfig(seed=7, backlog=10))) as sim:
        env = _env(
            bootstrap, sim.url, topics,
            PASSENTRY_WEBHOOK_SECRET="auto-create-" + "s" * 32,
            BRIDGE_WEBHOOK_PORT=str(free_port()), BRIDGE_WEBHOOK_TOPIC=inbox,
            BRIDGE_HTTP_HOST="127.0.0.1",
        )  # fmt: skip
        bridge = BridgeProcess(env, tmp_path, "bridge").start()
        try:
            bridge.wait_up()
            bridge.wait_metric("passentry_bridge_ready", 1, 120)
        finally:
            bridge.send(signal.SIGTERM)
            bridge.wait(60)
    assert _topics(admin).get(inbox) == COORDINATION_PARTITIONS
