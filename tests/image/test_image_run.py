"""The image doing its job, read-only with no tmpfs at all, on the host network: a real
``run --once`` against the PassEntry simulator and the test broker, and a clean SIGTERM.

The simulator is the in-process one (``passentry_simulator``) on 127.0.0.1; with the host's
network the container reaches it and the broker at the same addresses as the tests do.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from passentry_simulator import SimulatorConfig, SimulatorServer, WorldConfig
from tests.image.engine import BuiltImage, Engine
from tests.support import free_port

SINCE = "2000-01-01T00:00:00Z"
GRACE_S = 10


def committed_scan_ids(bootstrap: str, topic: str, timeout_s: float = 60) -> list[str]:
    """The ``scan-id`` headers on the topic, read with read_committed until each partition
    reached its end (its last stable offset) once. Once the bridge has stopped, that is all
    of them; while it runs, all that were committed when the read began, and maybe more."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"image-test-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        ids: list[str] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, f"{topic}: no end of partitions in {timeout_s}s"
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, str(err)
                at_end.add(msg.partition())
                continue
            headers = dict(msg.headers() or [])
            ids.append(headers["scan-id"].decode())
        return ids
    finally:
        consumer.close()


@pytest.fixture
def bridge_env(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> Callable[[SimulatorServer], dict[str, str]]:
    def make(sim: SimulatorServer) -> dict[str, str]:
        tag = uuid.uuid4().hex[:8]
        return {
            "PASSENTRY_API_URL": sim.url,
            "PASSENTRY_API_TOKEN": sim.token,
            "PASSENTRY_POLL_INTERVAL_MIN_S": "0.2",
            "PASSENTRY_POLL_INTERVAL_MAX_S": "1",
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "BRIDGE_SCANS_TOPIC": new_topic(partitions=3),
            "BRIDGE_DLQ_TOPIC": new_topic(partitions=1),
            "BRIDGE_STATE_TOPIC": f"image-{tag}-state",
            "BRIDGE_SOURCE_ID": f"image-{tag}",
            "BRIDGE_TOPIC_PARTITIONS": "3",
            "BRIDGE_HTTP_HOST": "127.0.0.1",
            "BRIDGE_HTTP_PORT": str(free_port()),
            "BRIDGE_LOG_FORMAT": "json",
        }

    return make


@pytest.fixture
def simulator() -> Iterator[Callable[..., SimulatorServer]]:
    started: list[SimulatorServer] = []

    def start(backlog: int, rate: float = 0.0) -> SimulatorServer:
        world = WorldConfig(readers=8, passes=120, seed=17, backlog=backlog, backlog_span_s=600)
        sim = SimulatorServer(SimulatorConfig(world=world, rate=rate)).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def test_run_once_publishes_every_scan_exactly_once(
    engine: Engine,
    bridge_image: BuiltImage,
    kafka_bootstrap: str,
    simulator: Callable[..., SimulatorServer],
    bridge_env: Callable[[SimulatorServer], dict[str, str]],
) -> None:
    sim = simulator(backlog=450)
    env = bridge_env(sim)
    done = engine.run(
        bridge_image.ref, "run", "--once", "--since", SINCE,
        env=env, host_network=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stderr[-4000:]}"

    expected = {scan.id for scan in sim.store.all_scans()}
    assert len(expected) == 450
    ids = committed_scan_ids(kafka_bootstrap, env["BRIDGE_SCANS_TOPIC"])
    assert len(ids) == len(set(ids)), "a scan was published twice"
    assert set(ids) == expected
    assert committed_scan_ids(kafka_bootstrap, env["BRIDGE_DLQ_TOPIC"]) == []


def logs_of(engine: Engine, cid: str) -> str:
    logs = engine.cli("logs", cid, check=False)
    return logs.stdout + logs.stderr


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_sigterm_stops_it_within_the_grace_period_with_exit_0(
    engine: Engine,
    bridge_image: BuiltImage,
    kafka_bootstrap: str,
    simulator: Callable[..., SimulatorServer],
    bridge_env: Callable[[SimulatorServer], dict[str, str]],
) -> None:
    sim = simulator(backlog=200, rate=20)
    env = {**bridge_env(sim), "BRIDGE_SHUTDOWN_GRACE_S": str(GRACE_S)}
    port = int(env["BRIDGE_HTTP_PORT"])
    cid = engine.start(bridge_image.ref, "run", "--since", SINCE, env=env, host_network=True)

    def running() -> bool:
        state = engine.cli("inspect", "--format", "{{.State.Running}}", cid).stdout
        return state.strip() == "true"

    # Ready (Kafka reachable, a poll succeeded), then its first transaction is visible.
    deadline = time.monotonic() + 120
    while not (_ready(port) and committed_scan_ids(kafka_bootstrap, env["BRIDGE_SCANS_TOPIC"])):
        assert running(), f"the bridge exited:\n{logs_of(engine, cid)[-4000:]}"
        assert time.monotonic() < deadline, "not ready with records after 120s"
        time.sleep(0.3)

    started = time.monotonic()
    engine.cli("kill", "--signal", "TERM", cid)
    code = int(engine.cli("wait", cid, timeout=GRACE_S + 30).stdout.strip().splitlines()[-1])
    took = time.monotonic() - started
    assert code == 0, f"exit {code} after SIGTERM\n{logs_of(engine, cid)[-4000:]}"
    assert took < GRACE_S, f"SIGTERM took {took:.1f}s, grace is {GRACE_S}s"

    ids = committed_scan_ids(kafka_bootstrap, env["BRIDGE_SCANS_TOPIC"])
    assert ids, "nothing was published"
    assert len(ids) == len(set(ids)), "a scan was published twice"
    assert set(ids) <= {scan.id for scan in sim.store.all_scans()}
