"""The restore's offsets lookup (``CheckpointStore._partitions_at``): short tries, each on a
new consumer, because librdkafka asks the leaders its consumer's metadata named when the
lookup began and does not follow one that moves (a broker killed as a restore began held a
lookup for two minutes in the cluster suite)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from bridge.errors import KafkaRetriableError
from bridge.kafka import checkpoint
from bridge.kafka.checkpoint import CheckpointStore
from tests.unit.kafka.fake_metadata import ClusterMeta, TopicMeta


@dataclass
class FakeConsumer:
    """A consumer whose lookup times out while ``dead`` (its metadata named a gone leader)."""

    dead: bool
    asked: list[float] = field(default_factory=list)
    closed: bool = False

    def list_topics(self, topic: str, timeout: float) -> ClusterMeta:
        return ClusterMeta({topic: TopicMeta({0: None, 1: None})} if topic == "scans" else {})

    def offsets_for_times(self, wanted: list[TopicPartition], timeout: float) -> Any:
        self.asked.append(timeout)
        if self.dead:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Failed to get offsets"))
        return [TopicPartition(tp.topic, tp.partition, 40 + tp.partition) for tp in wanted]

    def get_watermark_offsets(
        self, tp: TopicPartition, timeout: float, cached: bool
    ) -> tuple[int, int]:
        return (0, 0)  # an empty partition

    def close(self) -> None:
        self.closed = True


class Store(CheckpointStore):
    def __init__(self, dead_tries: int) -> None:
        super().__init__({}, "state", "src")
        self.consumers: list[FakeConsumer] = []
        self._dead_tries = dead_tries

    def _new_consumer(self, isolation: str) -> Any:
        consumer = FakeConsumer(dead=len(self.consumers) < self._dead_tries)
        self.consumers.append(consumer)
        return consumer


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint, "_LOOKUP_PAUSE_S", (0.001, 0.001))


def test_a_lookup_that_times_out_is_tried_again_on_a_new_consumer() -> None:
    store = Store(dead_tries=2)
    found = store._partitions_at(["scans"], 1_000, timeout_s=120.0)
    assert [(tp.partition, tp.offset) for tp in found] == [(0, 40), (1, 41)]
    assert len(store.consumers) == 3
    assert all(c.closed for c in store.consumers)
    # each try is short, however long the restore may wait in all
    assert all(c.asked == [checkpoint._LOOKUP_TRY_S] for c in store.consumers)


def test_a_lookup_that_keeps_failing_fails_the_restore_at_its_deadline() -> None:
    store = Store(dead_tries=1_000)
    with pytest.raises(KafkaRetriableError, match="cannot look up offsets"):
        store._partitions_at(["scans"], 1_000, timeout_s=0.5)
    assert len(store.consumers) == 1
    assert store.consumers[0].asked == [pytest.approx(0.5, abs=0.05)]


def test_reading_an_empty_state_topic_makes_no_reader() -> None:
    """A first start: the ends are asked (read_uncommitted), and with nothing before them no
    read_committed consumer is made for the read."""
    store = Store(dead_tries=0)
    isolations: list[str] = []
    new_consumer = store._new_consumer

    def recording(isolation: str) -> Any:
        isolations.append(isolation)
        return new_consumer(isolation)

    store._new_consumer = recording  # type: ignore[method-assign]
    assert store.read_state().checkpoint is None
    assert isolations == ["read_uncommitted"]
    assert all(c.closed for c in store.consumers)
