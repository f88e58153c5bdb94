"""The group member's callbacks, driven by a fake consumer as librdkafka would drive them: a
lost assignment holds its sources, the next assignment keeps what it gives back and releases
the rest, and after the hold limit with no assignment the group is asked who runs what was
held: only what another member runs is let go.

A coordinator that really dies with its broker needs the three-node cluster
(scripts/kafka-cluster); tests/integration/test_failover.py covers frozen and killed members.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from confluent_kafka import TopicPartition

import bridge.kafka.membership as membership_module
from bridge.kafka.membership import GroupSettings, Membership, sources_by_partition
from bridge.kafka.owners import Owner, Owners
from bridge.ops.health import MemberHealth
from bridge.ops.metrics import Metrics

TOPIC = "coordination"
PARTITIONS = 32
SOURCES = ["asia", "eu-events", "us"]  # three partitions of 32


class FakeConsumer:
    """What Membership asks of librdkafka's consumer; the test plays the group."""

    made: ClassVar[list[FakeConsumer]] = []

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.callbacks: dict[str, Callable[..., None]] = {}
        self.closed = False
        FakeConsumer.made.append(self)

    def subscribe(self, topics: list[str], **callbacks: Callable[..., None]) -> None:
        self.callbacks = callbacks

    def poll(self, timeout: float) -> None:
        time.sleep(min(timeout, 0.01))

    def close(self) -> None:
        self.closed = True

    def memberid(self) -> str:
        return "me"

    def drive(self, callback: str, sources: list[str]) -> None:
        by_source = {s: p for p, ids in sources_by_partition(SOURCES, PARTITIONS).items()
                     for s in ids}  # fmt: skip
        partitions = [TopicPartition(TOPIC, by_source[s]) for s in sources]
        self.callbacks[callback](self, partitions)


class Calls:
    def __init__(self) -> None:
        self.log: list[tuple[str, list[str]]] = []

    def recorder(self, name: str) -> Callable[[list[str]], None]:
        return lambda ids: self.log.append((name, sorted(ids)))


@pytest.fixture
def member(monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[Membership, Calls]]:
    monkeypatch.setattr(membership_module, "Consumer", FakeConsumer)
    FakeConsumer.made.clear()

    def make(
        protocol: str = "classic", owners: Callable[[list[str]], Owners] | None = None
    ) -> tuple[Membership, Calls]:
        calls = Calls()
        m = Membership(
            {"bootstrap.servers": "127.0.0.1:1"},
            GroupSettings("bridges", TOPIC, PARTITIONS, 10_000, protocol),
            SOURCES,
            start=calls.recorder("start"),
            stop=calls.recorder("stop"),
            hold=calls.recorder("hold"),
            release=calls.recorder("release"),
            metrics=Metrics(),
            health=MemberHealth(),
            owners=owners,
        )
        return m, calls

    return make


def _running(m: Membership) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=m.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not FakeConsumer.made[-1].callbacks:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return stop, thread


def test_a_lost_assignment_holds_its_sources_and_the_next_one_decides(
    member: Callable[..., tuple[Membership, Calls]],
) -> None:
    m, calls = member()
    stop, thread = _running(m)
    consumer = FakeConsumer.made[-1]
    consumer.drive("on_assign", SOURCES)
    consumer.drive("on_lost", SOURCES)
    # Nothing stopped: the sources run on, held.
    assert calls.log == [("start", sorted(SOURCES)), ("hold", sorted(SOURCES))]
    consumer.drive("on_assign", ["asia", "eu-events"])
    assert calls.log[2:] == [("start", ["asia", "eu-events"]), ("release", ["us"])]
    # Settled: a later assignment releases nothing.
    consumer.drive("on_assign", ["us"])
    assert calls.log[4:] == [("start", ["us"])]
    stop.set()
    thread.join(5)
    assert consumer.closed


def test_an_empty_assignment_after_a_lost_one_releases_everything_held(
    member: Callable[..., tuple[Membership, Calls]],
) -> None:
    m, calls = member()
    stop, thread = _running(m)
    consumer = FakeConsumer.made[-1]
    consumer.drive("on_assign", ["asia"])
    consumer.drive("on_lost", ["asia"])
    consumer.drive("on_assign", [])
    assert calls.log == [
        ("start", ["asia"]),
        ("hold", ["asia"]),
        ("start", []),
        ("release", ["asia"]),
    ]
    stop.set()
    thread.join(5)


class GroupSays:
    """What the group answers when asked who owns the held sources."""

    def __init__(self) -> None:
        self.owner: dict[str, str | None] = {}
        self.known = True
        self.asked = 0

    def __call__(self, ids: list[str]) -> Owners:
        self.asked += 1
        if not self.known:
            return Owners(False, {}, "bridges", why="coordinator unreachable")
        by_source = {
            s: None if (m := self.owner.get(s)) is None else Owner("pod", "10.0.0.9", m)
            for s in ids
        }
        return Owners(True, by_source, "bridges", state="stable")


def _wait(until: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 5
    while not until():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_held_sources_another_member_runs_are_released_when_no_assignment_comes(
    member: Callable[..., tuple[Membership, Calls]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No assignment after a lost one (the group could not be formed again): after the hold
    limit the group is asked, and what another member runs is let go."""
    monkeypatch.setattr(membership_module, "_HOLD_LIMIT_S", 0.2)
    group = GroupSays()
    group.owner = {"asia": "another", "us": "me"}
    m, calls = member(owners=group)
    stop, thread = _running(m)
    consumer = FakeConsumer.made[-1]
    consumer.drive("on_assign", ["asia", "us"])
    consumer.drive("on_lost", ["asia", "us"])
    _wait(lambda: ("release", ["asia"]) in calls.log, "asia released")
    stop.set()
    thread.join(5)
    assert ("release", ["us"]) not in calls.log  # the group says it is this member's


def test_held_sources_nobody_runs_keep_running_until_someone_does(
    member: Callable[..., tuple[Membership, Calls]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a run of broker faults the group can take a minute or more to form again; a held
    source nobody else runs is not stopped for it, whatever the clock says."""
    monkeypatch.setattr(membership_module, "_HOLD_LIMIT_S", 0.1)
    group = GroupSays()
    group.known = False
    m, calls = member(owners=group)
    stop, thread = _running(m)
    consumer = FakeConsumer.made[-1]
    consumer.drive("on_assign", ["asia"])
    consumer.drive("on_lost", ["asia"])
    _wait(lambda: group.asked >= 2, "asked twice (the group unreachable)")
    group.known = True  # reachable, but nobody owns it yet
    asked = group.asked
    _wait(lambda: group.asked >= asked + 2, "asked twice more (nobody owns it)")
    assert calls.log == [("start", ["asia"]), ("hold", ["asia"])]
    group.owner = {"asia": "another"}
    _wait(lambda: ("release", ["asia"]) in calls.log, "asia released once another runs it")
    stop.set()
    thread.join(5)


def test_the_client_settings_follow_the_group_protocol(
    member: Callable[..., tuple[Membership, Calls]],
) -> None:
    member("classic")
    classic = FakeConsumer.made[-1].conf
    assert classic["partition.assignment.strategy"] == "cooperative-sticky"
    assert classic["session.timeout.ms"] == 10_000
    assert classic["heartbeat.interval.ms"] == 1000
    assert "group.protocol" not in classic
    member("consumer")
    consumer = FakeConsumer.made[-1].conf
    # Under KIP-848 the session, the heartbeat and the assignor are the brokers'.
    assert consumer["group.protocol"] == "consumer"
    for name in ("partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms"):
        assert name not in consumer


def test_the_consumer_protocol_settings_are_ones_librdkafka_takes() -> None:
    """The real client, no broker: librdkafka refuses a classic-only setting under
    ``group.protocol=consumer`` as it is made, so this fails if one slips in."""
    m = Membership(
        {"bootstrap.servers": "127.0.0.1:1"},
        GroupSettings("bridges", TOPIC, PARTITIONS, 10_000, "consumer"),
        SOURCES,
        start=lambda ids: None,
        stop=lambda ids: None,
        hold=lambda ids: None,
        release=lambda ids: None,
        metrics=Metrics(),
        health=MemberHealth(),
    )
    m._consumer.close()
