"""Who runs which source: a Kafka consumer group on the coordination topic.

Every replica subscribes to the coordination topic with the same group id. Each source maps
to a stable partition of it (``stable_partition``), and the member the group assigns that
partition to runs the source. That is how Kafka Connect and Kafka Streams spread their tasks
over workers; no coordinator of our own is involved, and nothing is ever produced to the
topic: its partitions are only the units the group hands out.

- Cooperative-sticky assignment: a rebalance moves only the partitions that must move.
- Revoked partitions are let go only once their sources have settled their transactions
  and closed their producers (the callback returns after that).
- A new owner's ``init_transactions`` fences the previous one, even one that is only
  frozen, not dead; lost partitions (this member was dropped) are stopped at once.
- Closing the consumer leaves the group, so a graceful shutdown hands over at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from bridge.kafka.routing import stable_partition
from bridge.ops.health import MemberHealth
from bridge.ops.metrics import Metrics

__all__ = ["GroupSettings", "Membership", "sources_by_partition"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GroupSettings:
    group_id: str
    topic: str
    partitions: int
    session_timeout_ms: int


def sources_by_partition(source_ids: Iterable[str], partitions: int) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for source_id in source_ids:
        out.setdefault(stable_partition(source_id, partitions), []).append(source_id)
    return out


class Membership:
    """The group member. ``start(ids)`` and ``stop(ids)`` run the sources it is given and
    take back; ``stop`` must return only once those sources have let go."""

    def __init__(
        self,
        client_conf: dict[str, Any],
        settings: GroupSettings,
        source_ids: Iterable[str],
        *,
        start: Callable[[list[str]], None],
        stop: Callable[[list[str]], None],
        metrics: Metrics,
        health: MemberHealth,
    ) -> None:
        self._settings = settings
        self._by_partition = sources_by_partition(source_ids, settings.partitions)
        self._start = start
        self._stop = stop
        self._metrics = metrics
        self._health = health
        self._consumer = Consumer(
            {
                **client_conf,
                "group.id": settings.group_id,
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": settings.session_timeout_ms,
                "heartbeat.interval.ms": max(500, settings.session_timeout_ms // 4),
                "enable.auto.commit": False,
                "auto.offset.reset": "latest",
                "error_cb": self._on_error,
            }
        )

    def run(self, stop: threading.Event) -> None:
        """Be a member until ``stop`` is set, then leave the group (which revokes all)."""
        self._consumer.subscribe(
            [self._settings.topic],
            on_assign=self._assigned,
            on_revoke=self._revoked,
            on_lost=self._lost,
        )
        try:
            while not stop.is_set():
                self._health.beat()
                try:
                    # Nothing is ever produced to the topic: poll only serves the group
                    # protocol and runs the callbacks, on this thread.
                    msg = self._consumer.poll(0.2)
                except KafkaException as exc:
                    self._health.error(f"consumer group: {exc.args[0]}")
                    continue
                err = msg.error() if msg is not None else None
                if err is not None:
                    self._on_error(err)
        finally:
            log.info("leaving the consumer group", extra={"group_id": self._settings.group_id})
            self._consumer.close()
            self._health.joined(False)

    def _sources(self, partitions: list[TopicPartition]) -> list[str]:
        return [s for tp in partitions for s in self._by_partition.get(tp.partition, [])]

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._metrics.rebalances.labels("assigned").inc()
        self._health.joined(True)
        sources = self._sources(partitions)
        numbers = [p.partition for p in partitions]
        log.info("assigned", extra={"partitions": numbers, "sources": sources})
        self._start(sources)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._metrics.rebalances.labels("revoked").inc()
        sources = self._sources(partitions)
        log.info("revoked: letting go", extra={"sources": sources})
        self._stop(sources)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # This member was dropped (it was silent past the session timeout): another may
        # own these sources already. Stop them; fencing keeps them from writing anyway.
        self._metrics.rebalances.labels("lost").inc()
        self._health.joined(False)
        sources = self._sources(partitions)
        log.warning("partitions lost: this member was dropped", extra={"sources": sources})
        self._stop(sources)

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        log.warning("consumer group error", extra={"error": err.str()})
        if err.fatal() or err.code() in (
            KafkaError.GROUP_AUTHORIZATION_FAILED,
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
        ):
            self._health.error(f"consumer group: {err.str()}")
