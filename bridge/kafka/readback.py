"""Reading committed records back, up to where each partition ended when we looked.

A read_committed consumer stops at the last stable offset: the first record of the oldest
transaction still open on the partition. Partitions here have several writers (every
source writes its checkpoint to the one partition of the state topic; scans of many
sources share the output partitions), so another writer's open transaction can hide a
record committed after it began, and an end-of-partition there is not the end. Taking it
for the end restored an older checkpoint and published its scans again.

The end is therefore the high watermark, asked with read_uncommitted, and the read goes on
until read_committed has passed it: as long as the transactions open at that moment take
to commit or abort (bounded by their timeout; a new owner's ``init_transactions`` ends a
dead one's at once).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NoReturn

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from bridge.kafka import _headers

__all__ = ["HeaderPeek", "ReadPlan", "plan_reads", "read_committed", "reader"]

Where = tuple[str, int]

# A watermark request goes to the leader the client knew when it was made, and waits there
# until its timeout. A leader killed just before (its successor elected once the controller
# has fenced it, seconds later) held a restore for the whole of it. Each ask is short, and
# between asks the metadata is asked afresh so that the next one finds the new leader.
_ASK_S = 5.0
_LEADERSHIP = frozenset(
    {
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._DESTROY_BROKER,  # the dead leader dropped from the metadata under the ask
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.UNKNOWN_LEADER_EPOCH,
        KafkaError.OFFSET_NOT_AVAILABLE,  # a new leader's high watermark not caught up yet
    }
)


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """Where each partition's read starts, and the offset it must reach."""

    starts: list[TopicPartition]
    ends: dict[Where, int]

    def offsets(self) -> int:
        """Offsets to read, transaction markers included: close enough for an ETA."""
        return sum(self.ends[(tp.topic, tp.partition)] - tp.offset for tp in self.starts)


def reader(conf: dict[str, object], group_prefix: str, isolation: str) -> Consumer:
    """A consumer for reading partitions back by assignment: a fresh group id under
    ``group_prefix`` (what the ACLs grant), never committing, told of each partition's end."""
    return Consumer(
        {
            **conf,
            "group.id": f"{group_prefix}{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            # A read back stops at the end: don't let the broker sit on empty fetches, which
            # would add half a second per round trip to a restore.
            "fetch.wait.max.ms": 10,
            "fetch.error.backoff.ms": 50,
            # It asks about topics by name. On a broker that creates the topics clients ask
            # about, a reader must not make one, whatever KAFKA_PROPERTIES says.
            "allow.auto.create.topics": False,
        }
    )


def plan_reads(
    uncommitted: Consumer, partitions: list[TopicPartition], timeout_s: float
) -> ReadPlan:
    """Plan reading each partition from its offset (below zero: from the start) to its high
    watermark now. ``uncommitted`` must be a read_uncommitted consumer: a read_committed one
    is told the last stable offset instead."""
    starts: list[TopicPartition] = []
    ends: dict[Where, int] = {}
    for tp in partitions:
        low, high = _watermarks(uncommitted, TopicPartition(tp.topic, tp.partition), timeout_s)
        first = low if tp.offset < 0 else max(tp.offset, low)
        if first < high:
            starts.append(TopicPartition(tp.topic, tp.partition, first))
            ends[(tp.topic, tp.partition)] = high
    return ReadPlan(starts, ends)


def _watermarks(consumer: Consumer, tp: TopicPartition, timeout_s: float) -> tuple[int, int]:
    """The partition's low and high watermarks from its leader, asked again (after fresh
    metadata) while leadership is moving, for up to ``timeout_s``; then the last error."""
    deadline = time.monotonic() + timeout_s

    def left() -> float:
        return max(min(_ASK_S, deadline - time.monotonic()), 0.1)

    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=left(), cached=False)
        except KafkaException as exc:
            if exc.args[0].code() not in _LEADERSHIP or time.monotonic() + 0.2 >= deadline:
                raise
        with contextlib.suppress(KafkaException):  # the next ask says what is wrong
            consumer.list_topics(tp.topic, timeout=left())
        time.sleep(0.2)


def read_committed(
    consumer: Consumer,
    plan: ReadPlan,
    *,
    stall_s: float,
    on_error: Callable[[KafkaError, str], NoReturn],
    on_batch: Callable[[int], None] | None = None,
) -> Iterator[Message]:
    """Yield the committed records of ``plan`` from ``consumer`` (read_committed, with
    ``enable.partition.eof``). ``on_error`` raises the caller's error for a failed fetch;
    nothing arriving for ``stall_s`` raises it with ``_TIMED_OUT``."""
    if not plan.starts:
        return
    pending = dict(plan.ends)
    consumer.assign(plan.starts)
    deadline = time.monotonic() + stall_s
    while pending:
        batch = consumer.consume(1000, timeout=0.2)
        if batch:
            deadline = time.monotonic() + stall_s
        elif time.monotonic() > deadline:
            on_error(
                KafkaError(
                    KafkaError._TIMED_OUT,
                    f"nothing read for {stall_s:.0f}s short of the end of {sorted(pending)}:"
                    " a transaction still open there holds the committed records back",
                ),
                ", ".join(sorted({topic for topic, _ in pending})),
            )
        for msg in batch:
            where = (msg.topic() or "", msg.partition() or 0)
            err = msg.error()
            offset = msg.offset() or 0
            if err is None:
                yield msg
                # A transaction marker may hold the last offset: the EOF after it covers it.
                done = offset >= pending.get(where, 0) - 1
            elif err.code() == KafkaError._PARTITION_EOF:
                # Short of the end: an open transaction holds the stable offset back.
                done = offset >= pending.get(where, 0)
            elif err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                done = True
            else:
                on_error(err, msg.topic() or "?")
            if done:
                pending.pop(where, None)
        if on_batch is not None and batch:
            on_batch(len(batch))


class HeaderPeek:
    """Single headers of the records of one read. A restore reads every record of the
    lookback, the other sources' too, to keep the few it wrote: turning each record's
    eleven headers into Python was about 40 % of its CPU. The native path
    (``bridge/kafka/_headers.c``) reads one header from librdkafka's copy, once it has
    verified confluent-kafka's layout on the read's first record with headers; until then,
    or if the layout is not the one it knows, ``headers()``."""

    __slots__ = ("_native",)

    def __init__(self) -> None:
        self._native: bool | None = None

    def get(self, msg: Message, name: str) -> bytes | None:
        """The value of ``msg``'s last header ``name``, or None."""
        if self._native is None:
            self._native = _headers.checked(msg)
        if self._native:
            return _headers.header(msg, name)
        for key, value in reversed(msg.headers() or []):
            if key == name:
                return value if isinstance(value, bytes) else None
        return None
