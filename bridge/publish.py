"""A thin producer wrapper we own: produce a batch, wait for every acknowledgement.

The producer is idempotent with ``acks=all`` and partitions keys with ``murmur2_random``,
the same hash Java clients use, so Java, Go and ksqlDB agree on where a reader's scans
live. Each record's Kafka timestamp is its scan's creation time from the UUIDv7 id, which is
also what the end-to-end latency histogram measures against at acknowledgement.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from bridge.errors import KafkaFatalError, KafkaRetriableError
from bridge.metrics import Metrics

__all__ = ["OutRecord", "Publisher", "Sink", "producer_config"]

log = logging.getLogger(__name__)

_BUFFER_FULL_RETRIES = 100


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, str | bytes | None]]
    # Kafka timestamp in ms; None lets the producer stamp it (dead letters).
    timestamp_ms: int | None = None


class Sink(Protocol):
    """Where the pipeline's records go; ``Publisher`` in production, a list in unit tests."""

    def send(self, records: list[OutRecord], timeout_s: float) -> dict[str, int]: ...


def producer_config(
    client_conf: dict[str, Any],
    *,
    compression: str,
    linger_ms: int,
    message_timeout_ms: int,
) -> dict[str, Any]:
    conf = dict(client_conf)
    conf.update(
        {
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "compression.type": compression,
            "linger.ms": linger_ms,
            "message.timeout.ms": message_timeout_ms,
        }
    )
    return conf


class Publisher:
    def __init__(self, conf: dict[str, Any], metrics: Metrics, *, dlq_topic: str) -> None:
        self._metrics = metrics
        self._dlq_topic = dlq_topic
        self._errors: list[KafkaError] = []
        self._acked: dict[str, int] = {}
        self._producer = Producer({**conf, "on_delivery": self._on_delivery})

    def send(self, records: list[OutRecord], timeout_s: float) -> dict[str, int]:
        """Produce ``records`` and wait until the broker acknowledged every one.

        Returns acknowledged counts per topic. Raises KafkaRetriableError if any record
        failed or the deadline passed, so the caller keeps its cursor and tries again.
        """
        self._errors.clear()
        self._acked = {}
        produce, poll = self._producer.produce, self._producer.poll
        for record in records:
            for attempt in range(_BUFFER_FULL_RETRIES):
                try:
                    produce(
                        record.topic,
                        record.value,
                        record.key,
                        headers=record.headers,
                        timestamp=record.timestamp_ms or 0,
                    )
                    break
                except BufferError:
                    # The local queue is full: serve delivery reports to make room.
                    poll(0.1 if attempt else 0)
            else:
                raise KafkaRetriableError("producer queue stayed full; is the broker reachable?")
            poll(0)
        self._metrics.producer_queue.set(len(self._producer))
        remaining = self._producer.flush(timeout_s)
        self._metrics.producer_queue.set(remaining)
        if self._errors:
            first = self._errors[0]
            if first.fatal():
                raise KafkaFatalError(f"fatal Kafka producer error: {first}")
            raise KafkaRetriableError(
                f"{len(self._errors)} record(s) not delivered; first error: {first}"
            )
        if remaining:
            raise KafkaRetriableError(
                f"{remaining} record(s) still unacknowledged after {timeout_s:.0f}s"
            )
        return self._acked

    def ping(self, timeout_s: float) -> bool:
        """True if the cluster answers a metadata request: readiness and ``check``."""
        try:
            self._producer.list_topics(timeout=timeout_s)
        except KafkaException:
            return False
        return True

    def close(self, timeout_s: float) -> int:
        """Flush what is queued; return how many records were left undelivered."""
        return int(self._producer.flush(timeout_s))

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            kind = "fatal" if err.fatal() else "retriable" if err.retriable() else "abortable"
            self._metrics.producer_errors.labels(kind).inc()
            self._errors.append(err)
            return
        topic = msg.topic() or ""
        self._acked[topic] = self._acked.get(topic, 0) + 1
        if topic != self._dlq_topic:
            _, ts = msg.timestamp()
            if ts > 0:
                self._metrics.end_to_end_latency.observe(max(0.0, time.time() - ts / 1000))
