"""One source assembled from its wiring: the order ``prepare`` readies Kafka in before the
restore, and what ``close`` releases. Its Kafka parts are fakes that keep a journal; the
pipeline's own work is tested in test_pipeline.py and on the broker."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bridge.config import load_config
from bridge.source import Source
from bridge.wiring import Wiring

SOURCE = "gate-7"


class Journal(list[str]):
    pass


class FakeTopics:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def ensure(self, topics: list[str], *, compacted: bool = False) -> None:
        self._journal.append(f"ensure {','.join(topics)}{' compacted' if compacted else ''}")

    def partition_count(self, topic: str) -> int:
        return 3


class FakePublisher:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def recreate(self) -> None:
        self._journal.append("recreate")

    def close(self, grace_s: float) -> int:
        self._journal.append("producer closed")
        return 2


class FakePipeline:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def restore(self) -> str:
        self._journal.append("restore")
        return "restored"

    def close(self) -> None:
        self._journal.append("pipeline closed")


class FakeWiring:
    """The real wiring but for the topics and the producer, which write to the journal."""

    def __init__(self, real: Wiring, journal: Journal) -> None:
        self._real = real
        self._journal = journal

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def topics(self) -> FakeTopics:
        return FakeTopics(self._journal)

    def publisher(self, txn_id: str) -> FakePublisher:
        self._journal.append(f"producer {txn_id}")
        return FakePublisher(self._journal)


def source(monkeypatch: pytest.MonkeyPatch, journal: Journal, **env: str) -> Source:
    monkeypatch.setenv("PASSENTRY_API_TOKEN", "t0ken")
    monkeypatch.setenv("BRIDGE_SOURCE_ID", SOURCE)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    wiring = FakeWiring(Wiring.of(load_config(), SOURCE), journal)
    built = Source(wiring, start_ms=0, sleep=time.sleep)  # type: ignore[arg-type]
    built.pipeline = FakePipeline(journal)  # type: ignore[assignment]
    return built


def test_it_writes_under_its_own_transactional_id(monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal()
    source(monkeypatch, journal)
    assert journal == [f"producer passentry-bridge.{SOURCE}"]


def test_prepare_makes_the_topics_before_the_restore(monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal()
    built = source(monkeypatch, journal, BRIDGE_SCANS_TOPIC="scans", BRIDGE_DLQ_TOPIC="dlq",
                   BRIDGE_STATE_TOPIC="state")  # fmt: skip
    journal.clear()
    assert built.prepare() == "restored"
    assert journal == ["ensure state compacted", "ensure dlq,scans", "restore"]
    assert not built.pushing  # no webhooks: polling is all there is


def test_a_routed_source_makes_only_its_dlq_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its scans topics are made as each is first used."""
    journal = Journal()
    built = source(monkeypatch, journal, BRIDGE_DLQ_TOPIC="dlq", BRIDGE_STATE_TOPIC="state",
                   BRIDGE_TOPIC_TEMPLATE="scans.{scan_type}")  # fmt: skip
    journal.clear()
    built.prepare()
    assert journal == ["ensure state compacted", "ensure dlq", "restore"]


def test_close_aborts_what_is_open_and_says_what_was_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    journal = Journal()
    built = source(monkeypatch, journal)
    journal.clear()
    built.recreate_producer()
    assert built.close(1.0) == 2
    assert journal == ["recreate", "producer closed", "pipeline closed"]
