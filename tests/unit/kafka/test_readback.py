"""Reading committed records back to where each partition ended, past other writers' open
transactions: a fake consumer plays the broker's answers (records, end-of-partition events,
a partition that is gone, a fetch that fails)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NoReturn

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from bridge.kafka.readback import ReadPlan, plan_reads, read_committed


class Msg:
    def __init__(self, topic: str, partition: int, offset: int, err: int | None = None) -> None:
        self._where = (topic, partition, offset)
        self._err = None if err is None else KafkaError(err)

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]

    def error(self) -> KafkaError | None:
        return self._err


class FakeConsumer:
    """Answers ``consume`` with the batches given, then with nothing."""

    def __init__(
        self,
        *batches: list[Msg],
        watermarks: dict[Any, tuple[int, int]] | None = None,
        failures: list[int] | None = None,
    ):
        self._batches: Iterator[list[Msg]] = iter(batches)
        self.watermarks = watermarks or {}
        self.assigned: list[TopicPartition] = []
        # Error codes the next watermark requests fail with, one each, before any answers.
        self.failures = list(failures or [])
        self.asked: list[float] = []
        self.refreshed: list[str] = []

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = partitions

    def consume(self, n: int, timeout: float) -> list[Msg]:
        return next(self._batches, [])

    def get_watermark_offsets(
        self, tp: TopicPartition, timeout: float, cached: bool
    ) -> tuple[int, int]:
        self.asked.append(timeout)
        if self.failures:
            raise KafkaException(KafkaError(self.failures.pop(0)))
        return self.watermarks[(tp.topic, tp.partition)]

    def list_topics(self, topic: str, timeout: float) -> None:
        self.refreshed.append(topic)


class Failed(Exception):
    pass


def fail(err: KafkaError, topic: str) -> NoReturn:
    raise Failed(f"{topic}: {err.code()} {err.str()}")


def plan(**ends: int) -> ReadPlan:
    """A plan from offset 0 of partition 0 of each topic, to its end."""
    return ReadPlan([TopicPartition(t, 0, 0) for t in ends], {(t, 0): e for t, e in ends.items()})


def offsets(consumer: FakeConsumer, p: ReadPlan, stall_s: float = 5.0) -> list[int]:
    return [m.offset() for m in read_committed(consumer, p, stall_s=stall_s, on_error=fail)]  # type: ignore[arg-type]


def test_the_plan_starts_at_the_low_watermark_and_skips_what_is_empty() -> None:
    consumer = FakeConsumer(watermarks={("a", 0): (5, 9), ("b", 0): (0, 0), ("c", 0): (2, 7)})
    wanted = [TopicPartition("a", 0, -1), TopicPartition("b", 0, -1), TopicPartition("c", 0, 4)]
    read = plan_reads(consumer, wanted, 1.0)  # type: ignore[arg-type]
    assert [(tp.topic, tp.offset) for tp in read.starts] == [("a", 5), ("c", 4)]
    assert read.ends == {("a", 0): 9, ("c", 0): 7}
    assert read.offsets() == 4 + 3


def test_a_watermark_ask_that_finds_no_leader_is_asked_again_after_fresh_metadata() -> None:
    """A leader killed just before: its requests time out until a new one is elected. Each
    ask is short, so the plan does not wait out the whole timeout on the dead one."""
    consumer = FakeConsumer(
        watermarks={("s", 0): (0, 3)},
        failures=[
            KafkaError._TIMED_OUT,
            KafkaError.NOT_LEADER_FOR_PARTITION,
            # The next leader, elected, before its high watermark has caught up.
            KafkaError.OFFSET_NOT_AVAILABLE,
        ],
    )
    read = plan_reads(consumer, [TopicPartition("s", 0, -1)], 120.0)  # type: ignore[arg-type]
    assert read.ends == {("s", 0): 3}
    assert len(consumer.asked) == 4
    assert max(consumer.asked) <= 5.0
    assert consumer.refreshed == ["s", "s", "s"]


def test_a_watermark_ask_gives_up_at_the_timeout_with_the_last_error() -> None:
    consumer = FakeConsumer(failures=[KafkaError._TIMED_OUT] * 100)
    with pytest.raises(KafkaException) as raised:
        # 1 s: asked again at least once even if this machine is slow to run the first ask.
        plan_reads(consumer, [TopicPartition("s", 0, -1)], 1.0)  # type: ignore[arg-type]
    assert raised.value.args[0].code() == KafkaError._TIMED_OUT
    assert 1 < len(consumer.asked) < 100


def test_a_watermark_ask_refused_is_not_asked_again() -> None:
    consumer = FakeConsumer(failures=[KafkaError.TOPIC_AUTHORIZATION_FAILED])
    with pytest.raises(KafkaException) as raised:
        plan_reads(consumer, [TopicPartition("s", 0, -1)], 120.0)  # type: ignore[arg-type]
    assert raised.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert len(consumer.asked) == 1
    assert consumer.refreshed == []


def test_an_end_of_partition_short_of_the_end_is_not_the_end() -> None:
    """Another writer's open transaction held the stable offset at 2: the read waits on
    until its records come."""
    consumer = FakeConsumer(
        [Msg("s", 0, 0), Msg("s", 0, 1), Msg("s", 0, 2, KafkaError._PARTITION_EOF)],
        [],
        [Msg("s", 0, 3), Msg("s", 0, 4)],
    )
    assert offsets(consumer, plan(s=5)) == [0, 1, 3, 4]


def test_a_transaction_marker_at_the_end_is_passed_by_the_end_of_partition() -> None:
    consumer = FakeConsumer([Msg("s", 0, 0), Msg("s", 0, 2, KafkaError._PARTITION_EOF)])
    assert offsets(consumer, plan(s=2)) == [0]


def test_a_partition_that_is_gone_ends_its_read() -> None:
    consumer = FakeConsumer([Msg("gone", 0, 0, KafkaError.UNKNOWN_TOPIC_OR_PART)])
    assert offsets(consumer, plan(gone=3)) == []


def test_a_failed_fetch_is_the_callers_error() -> None:
    consumer = FakeConsumer([Msg("s", 0, 0, KafkaError._TRANSPORT)])
    with pytest.raises(Failed, match=f"s: {KafkaError._TRANSPORT}"):
        offsets(consumer, plan(s=3))


def test_nothing_arriving_short_of_the_end_is_a_timeout_that_names_the_partition() -> None:
    consumer = FakeConsumer([Msg("state", 0, 0)])
    with pytest.raises(Failed, match=r"state: .*nothing read for 0s short of the end"):
        offsets(consumer, plan(state=4), stall_s=0.05)


def test_an_empty_plan_reads_nothing() -> None:
    consumer = FakeConsumer()
    assert offsets(consumer, ReadPlan([], {})) == []
    assert consumer.assigned == []
