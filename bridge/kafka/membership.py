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
  frozen, not dead.
- Lost partitions (the group dropped this member) are held, not stopped: their sources keep
  running while the member rejoins, and the first assignment after that decides, keeping
  those it gives back and releasing the others. The member is most often dropped because
  the group's coordinator died with its broker, not because the member did: librdkafka
  counts the session from its last answered heartbeat, and a broker takes about as long to
  be declared dead (~9 s) as the session lasts. Stopping the sources then would stall every
  source for the rejoin and a restore; holding them costs nothing, because the
  transactional id fences a held source the moment another member starts it.
- Closing the consumer leaves the group, so a graceful shutdown hands over at once.
- A member Kafka refuses (its credentials, the broker's certificate, Read on the group or
  on its topic) stays up and unready, saying why in /readyz and in one log line, and keeps
  trying with backoff: the fix may come from the cluster's side, without a restart.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from bridge.backoff import Backoff
from bridge.errors import ConfigError
from bridge.kafka.access import KafkaAccess
from bridge.kafka.acl import AclGrant, denied, topics_grant
from bridge.kafka.owners import Owners, find_owners
from bridge.kafka.routing import stable_partition
from bridge.ops.health import MemberHealth
from bridge.ops.metrics import Metrics

__all__ = ["GroupSettings", "Membership", "sources_by_partition"]

log = logging.getLogger(__name__)

# After a refusal, poll less eagerly (growing from 0.5 s up to 5 s): nothing is lost by
# waiting, and librdkafka keeps the session alive on its own thread.
_BACKOFF_MIN_S = 0.5
_BACKOFF_MAX_S = 5.0
# When no assignment came this long after a lost one (the group could not be formed again
# meanwhile, or, under the consumer protocol, an empty assignment was not announced), the
# group is asked who owns the held sources: those another member runs are released, the
# others run on and are asked about again as long. A held source another member took is
# fenced at its next commit anyway; this ends one left idle. Releasing on the clock alone
# stopped sources nobody else ran: in a run of broker faults the group took 80 s to form,
# and three sources stood still for 22 s of it (broker_faults).
_HOLD_LIMIT_S = 60.0
_OWNERS_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class GroupSettings:
    group_id: str
    topic: str
    partitions: int
    session_timeout_ms: int
    protocol: str = "classic"


def sources_by_partition(source_ids: Iterable[str], partitions: int) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for source_id in source_ids:
        out.setdefault(stable_partition(source_id, partitions), []).append(source_id)
    return out


class Membership:
    """The group member. ``start(ids)`` and ``stop(ids)`` run the sources it is given and
    take back; ``stop`` must return only once those sources have let go (or were fenced).
    ``hold(ids)`` keeps running the sources of a lost assignment, ``start`` takes them back
    and ``release(ids)`` lets go of those another member owns now; both return at once."""

    def __init__(
        self,
        client_conf: dict[str, Any],
        settings: GroupSettings,
        source_ids: Iterable[str],
        *,
        start: Callable[[list[str]], None],
        stop: Callable[[list[str]], None],
        hold: Callable[[list[str]], None],
        release: Callable[[list[str]], None],
        metrics: Metrics,
        health: MemberHealth,
        access: KafkaAccess | None = None,
        owners: Callable[[list[str]], Owners] | None = None,
    ) -> None:
        """``owners(ids)``: who owns those sources, as the group says (a seam for tests)."""
        self._settings = settings
        self._access = access
        self._conf = access.client_conf(client_conf) if access is not None else dict(client_conf)
        self._problem: str | None = None
        self._backoff = Backoff(_BACKOFF_MIN_S, _BACKOFF_MAX_S)
        # The pause before the next poll: nothing while the group accepts this member.
        self._pause_s = 0.0
        self._by_partition = sources_by_partition(source_ids, settings.partitions)
        self._start = start
        self._stop = stop
        self._hold = hold
        self._release = release
        # Sources of a lost assignment, still running until the next assignment decides.
        self._held: set[str] = set()
        self._held_since = 0.0
        self._metrics = metrics
        self._health = health
        self._owners = owners or (
            lambda ids: find_owners(
                self._conf, settings.group_id, settings.topic, ids, _OWNERS_TIMEOUT_S
            )
        )
        try:
            self._consumer = self._new_consumer()
        except KafkaException as exc:
            raise ConfigError(f"Kafka client settings (KAFKA_*): {exc.args[0].str()}") from exc

    def _new_consumer(self) -> Consumer:
        settings = self._settings
        conf = {
            **self._conf,
            "group.id": settings.group_id,
            # How the member is named to whoever asks who owns a source (``check``, and
            # the commands that refuse to fence a live bridge): the pod's name.
            "client.id": f"passentry-bridge@{socket.gethostname()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "latest",
            "error_cb": self._on_error,
        }
        if settings.protocol == "consumer":
            # KIP-848: the brokers own the session, the heartbeat and the assignment;
            # librdkafka refuses the classic settings for them.
            conf["group.protocol"] = "consumer"
        else:
            conf.update(
                {
                    "partition.assignment.strategy": "cooperative-sticky",
                    "session.timeout.ms": settings.session_timeout_ms,
                    # A member learns of a rebalance (a peer left or died) at its next
                    # heartbeat: beat every second, so a takeover waits on that as little as
                    # possible.
                    "heartbeat.interval.ms": max(300, min(1000, settings.session_timeout_ms // 3)),
                }
            )
        return Consumer(conf)

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
                    err = msg.error() if msg is not None else None
                except KafkaException as exc:
                    err = exc.args[0]
                if err is not None:
                    self._on_error(err)
                self._check_access()
                if self._held and time.monotonic() - self._held_since > _HOLD_LIMIT_S:
                    self._held_too_long()
                if self._pause_s:
                    stop.wait(self._pause_s)
        finally:
            log.info("leaving the consumer group", extra={"group_id": self._settings.group_id})
            self._consumer.close()
            self._health.joined(False)

    def _sources(self, partitions: list[TopicPartition]) -> list[str]:
        return [s for tp in partitions for s in self._by_partition.get(tp.partition, [])]

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._metrics.rebalances.labels("assigned").inc()
        self._health.joined(True)
        self._cleared()
        sources = self._sources(partitions)
        numbers = [p.partition for p in partitions]
        log.info("assigned", extra={"partitions": numbers, "sources": sources})
        self._start(sources)  # takes back the held ones among them
        self._settle(kept=set(sources))

    def _settle(self, kept: set[str]) -> None:
        """The first assignment after a lost one decides what was held: what it gives back
        runs on, the rest belongs to other members now. (An assignment after a lost one
        starts from nothing, so it is the whole assignment; librdkafka announces an empty
        one too, under the classic protocol.)"""
        if not self._held:
            return
        released = sorted(self._held - kept)
        self._held.clear()
        if released:
            log.info("releasing held sources: assigned elsewhere", extra={"sources": released})
            self._release(released)

    def _held_too_long(self) -> None:
        """No assignment decided what was held: let go of what another member runs now."""
        held = sorted(self._held)
        owners = self._owners(held)
        self._held_since = time.monotonic()  # asked again after as long, if any is kept
        if not owners.known:
            log.info(
                "held sources: who owns them now is unknown; they keep running",
                extra={"sources": held, "why": owners.why},
            )
            return
        me = self._consumer.memberid()
        elsewhere = sorted(
            s for s in held if (o := owners.owner(s)) is not None and o.member_id != me
        )
        if not elsewhere:
            return
        self._held.difference_update(elsewhere)
        log.info("releasing held sources: assigned elsewhere", extra={"sources": elsewhere})
        self._release(elsewhere)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._metrics.rebalances.labels("revoked").inc()
        sources = self._sources(partitions)
        log.info("revoked: letting go", extra={"sources": sources})
        self._stop(sources)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # No heartbeat was answered for a session (the coordinator died, or this member was
        # frozen): the group may have given these sources to others already. Hold them
        # until the next assignment; fencing keeps a held one from writing once another
        # member starts it.
        self._metrics.rebalances.labels("lost").inc()
        self._health.joined(False)
        sources = self._sources(partitions)
        log.warning(
            "partitions lost: this member was dropped; its sources keep running until the"
            " group assigns them again", extra={"sources": sources},
        )  # fmt: skip
        if sources:
            if not self._held:
                self._held_since = time.monotonic()
            self._held.update(sources)
            self._hold(sources)

    def _on_error(self, err: KafkaError) -> None:
        """The consumer's ``error_cb``, and errors ``poll`` returns: librdkafka's reports go
        to the shared collector; a refusal makes the member unready, saying why."""
        code = err.code()
        if code == KafkaError._PARTITION_EOF:
            return
        if self._access is not None:
            self._access.report(err)  # logs it, once per distinct error and minute
        group, topic = self._settings.group_id, self._settings.topic
        if code == KafkaError.GROUP_AUTHORIZATION_FAILED:
            self._refused(
                str(
                    denied(
                        self._conf,
                        f"join consumer group {group}",
                        AclGrant("group", (group,), ("Read", "Describe")),
                        err.name(),
                    )
                )
            )
        elif code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            self._refused(
                str(
                    denied(
                        self._conf,
                        f"read topic {topic} as a member of {group}",
                        topics_grant([topic], "Read", "Describe"),
                        err.name(),
                    )
                )
            )
        elif err.fatal():
            self._refused(f"consumer group: {err.str()}")
        elif self._access is None:
            log.warning("consumer group error", extra={"error": err.str()})

    def _check_access(self) -> None:
        problem = self._access.failure() if self._access is not None else None
        if problem is not None:
            self._refused(str(problem))

    def _refused(self, reason: str) -> None:
        """Unready with ``reason``; said once in the log (again only if it changes)."""
        if reason != self._problem:
            log.error("the consumer group refuses this member", extra={"error": reason})
            self._problem = reason
        self._health.error(reason)
        self._pause_s = self._backoff.next()

    def _cleared(self) -> None:
        if self._problem is not None:
            log.info("the consumer group accepts this member again")
        self._problem = None
        self._pause_s = 0.0
        self._backoff.reset()
        if self._access is not None:
            self._access.succeeded()
