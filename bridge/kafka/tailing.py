"""Reading a topic for people (``passentry-bridge tail``), the way kcat does: from an
offset, a time or either end, some partitions or all, read_committed, and optionally
stopping once every partition is read to its end.

The records come out as :class:`Tailed` (where each came from, its key and headers, the raw
value); decoding and printing are the command's. Nothing is committed: each run has a group
id of its own (``passentry-bridge-tail-<uuid>``), which the README's ACLs grant by prefix.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from bridge.errors import BridgeError

__all__ = ["StartAt", "TailError", "TailSpec", "Tailed", "TopicNotFoundError", "tail_records"]

_INTERNAL = ("__consumer_offsets", "__transaction_state")


class TailError(BridgeError):
    """The topic cannot be read: Kafka out of reach, or a partition that is not there."""


class TopicNotFoundError(TailError):
    """The topic did not appear within the wait (the message lists the topics there are),
    or has no such partition."""


@dataclass(frozen=True, slots=True)
class StartAt:
    """Where each partition is read from: ``earliest``, ``latest``, an offset (``42``), a
    count of offsets back from the end (``-10``, as kcat's ``-o -10``; a transaction's commit
    marker takes an offset too, so fewer records than that may follow), or a time (Unix ms)."""

    kind: Literal["earliest", "latest", "offset", "from_end", "time"]
    value: int = 0

    @classmethod
    def parse(cls, text: str, parse_time: Callable[[str], int]) -> StartAt:
        """``earliest``/``beginning``, ``latest``/``end``, ``N``, ``-N``, or whatever
        ``parse_time`` takes (raising ValueError): an ISO 8601 time, ``today``, a duration
        ago such as ``15m``."""
        word = text.strip().lower()
        if word in ("earliest", "beginning"):
            return cls("earliest")
        if word in ("latest", "end"):
            return cls("latest")
        if word.lstrip("-").isdigit():
            number = int(word)
            return cls("from_end", -number) if number < 0 else cls("offset", number)
        return cls("time", parse_time(text))

    def describe(self) -> str:
        if self.kind == "time":
            return datetime.fromtimestamp(self.value / 1000, tz=UTC).isoformat()
        if self.kind in ("earliest", "latest"):
            return self.kind
        return f"offset {self.value}" if self.kind == "offset" else f"{self.value} from the end"


@dataclass(frozen=True, slots=True)
class TailSpec:
    topic: str
    start: StartAt
    # None: every partition of the topic.
    partitions: tuple[int, ...] | None = None
    # Stop once every partition was read to its end (its last committed record).
    exit_at_end: bool = False
    # Only records with this key (the reader id).
    key: str | None = None
    # Only records with this ``source-id`` header (several sources may share a topic).
    source_id: str | None = None
    max_records: int | None = None
    # How long a missing topic is waited for (a bridge about to create it) before failing.
    wait_for_topic_s: float = 10.0
    # Stop when no record came for this long (tests); None: never.
    idle_exit_s: float | None = None


@dataclass(frozen=True, slots=True)
class Tailed:
    """One record as Kafka holds it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    value: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name and value is not None:
                return value.decode("utf-8", errors="replace")
        return None


_POLL_S = 0.5
_METADATA_TIMEOUT_S = 10.0


def tail_records(
    client_conf: dict[str, Any],
    spec: TailSpec,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_wait: Callable[[str], None] = lambda text: None,
) -> Iterator[Tailed]:
    """The records of ``spec``'s topic, read_committed, in each partition's order. Raises
    TailError (TopicNotFoundError for a topic that did not turn up)."""
    consumer = Consumer(
        {
            **client_conf,
            "group.id": f"passentry-bridge-tail-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "latest" if spec.start.kind == "latest" else "earliest",
        }
    )
    try:
        parts = _partitions(consumer, spec, should_stop, on_wait)
        if not parts:
            return
        consumer.assign(_positions(consumer, spec, parts))
        yield from _consume(consumer, spec, set(parts), should_stop)
    finally:
        consumer.close()


def _partitions(
    consumer: Consumer, spec: TailSpec, should_stop: Callable[[], bool],
    on_wait: Callable[[str], None],
) -> list[int]:  # fmt: skip
    """The partitions to read once the topic exists. Started beside a bridge that is about
    to create it (``make demo`` does), tail waits for it a while."""
    deadline = time.monotonic() + spec.wait_for_topic_s
    said = False
    while not should_stop():
        try:
            metadata = consumer.list_topics(timeout=_METADATA_TIMEOUT_S)
        except KafkaException as exc:
            raise TailError(
                f"Kafka did not answer within {_METADATA_TIMEOUT_S:.0f}s"
                f" ({exc.args[0].str()}): check KAFKA_BOOTSTRAP_SERVERS and the other KAFKA_*"
                " settings"
            ) from None
        found = metadata.topics.get(spec.topic)
        if found is not None and found.error is None and found.partitions:
            return _chosen(spec, sorted(found.partitions))
        denied = KafkaError.TOPIC_AUTHORIZATION_FAILED
        if found is not None and found.error is not None and found.error.code() == denied:
            raise TailError(
                f"topic {spec.topic}: not authorized; grant Read on --topic {spec.topic}"
                " and Describe on --group passentry-bridge-tail- --resource-pattern-type"
                " prefixed"
            )
        if time.monotonic() >= deadline:
            topics = sorted(t for t in metadata.topics if t not in _INTERNAL)
            listed = ", ".join(topics[:30]) + (
                f" and {len(topics) - 30} more" if len(topics) > 30 else ""
            )
            raise TopicNotFoundError(
                f"topic {spec.topic} does not exist (waited {spec.wait_for_topic_s:.0f}s);"
                f" the topics are: {listed or 'none'}"
            )
        if not said:
            on_wait(f"waiting for topic {spec.topic} to exist")
            said = True
        time.sleep(_POLL_S)
    return []


def _chosen(spec: TailSpec, present: list[int]) -> list[int]:
    if spec.partitions is None:
        return present
    missing = sorted(set(spec.partitions) - set(present))
    if missing:
        raise TopicNotFoundError(
            f"topic {spec.topic} has partitions 0-{present[-1]}, not"
            f" {', '.join(map(str, missing))} (--partition)"
        )
    return sorted(set(spec.partitions))


def _positions(consumer: Consumer, spec: TailSpec, parts: Sequence[int]) -> list[TopicPartition]:
    start, topic = spec.start, spec.topic
    if start.kind == "earliest":
        return [TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts]
    if start.kind == "latest":
        return [TopicPartition(topic, p, OFFSET_END) for p in parts]
    if start.kind == "offset":
        return [TopicPartition(topic, p, start.value) for p in parts]
    if start.kind == "from_end":
        out = []
        for p in parts:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=_METADATA_TIMEOUT_S
            )
            out.append(TopicPartition(topic, p, max(low, high - start.value)))
        return out
    found = consumer.offsets_for_times(
        [TopicPartition(topic, p, start.value) for p in parts], timeout=_METADATA_TIMEOUT_S
    )
    # A partition with nothing at or after the time starts at its end (-1 from Kafka).
    return [
        TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
        for tp in found
    ]


def _consume(
    consumer: Consumer, spec: TailSpec, parts: set[int], should_stop: Callable[[], bool]
) -> Iterator[Tailed]:
    at_end: set[int] = set()
    count = 0
    idle = 0.0
    while not should_stop() and (spec.max_records is None or count < spec.max_records):
        msg = consumer.poll(_POLL_S)
        if msg is None:
            idle += _POLL_S
            if spec.idle_exit_s is not None and idle >= spec.idle_exit_s:
                return
            continue
        idle = 0.0
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                at_end.add(msg.partition() or 0)
                if spec.exit_at_end and at_end >= parts:
                    return
                continue
            raise TailError(f"reading {spec.topic}: {err.str()}")
        at_end.discard(msg.partition() or 0)
        record = _tailed(msg)
        if spec.key is not None and (record.key or b"").decode(errors="replace") != spec.key:
            continue
        if spec.source_id is not None and record.header("source-id") != spec.source_id:
            continue
        count += 1
        yield record


def _tailed(msg: Message) -> Tailed:
    kind, stamp = msg.timestamp()
    return Tailed(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        timestamp_ms=stamp if kind else None,
        key=msg.key(),
        headers=_headers(msg),
        value=msg.value() or b"",
    )


def _headers(msg: Message) -> tuple[tuple[str, bytes | None], ...]:
    found = msg.headers()
    pairs = found.items() if isinstance(found, dict) else (found or [])
    return tuple(
        (name, value.encode() if isinstance(value, str) else value) for name, value in pairs
    )
