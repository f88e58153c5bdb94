"""Who writes for a source now: the member of the consumer group that holds its partition of
the coordination topic (``bridge.kafka.membership``), asked of Kafka, never of a replica.

Commands that would write as a source (``run --once``, ``state reset``, a backfill that
writes as the source) ask first and refuse while a live member owns it: their
``init_transactions`` would fence the live bridge. ``check`` shows the owners.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from bridge.kafka.permissions import admin_conf
from bridge.kafka.routing import stable_partition

__all__ = ["Owner", "Owners", "describe_group", "find_owners"]

# Answers of a group coordinator that is still being set up (the first group on a young
# cluster: its offsets topic is being made) or moving: ask again.
_COORDINATOR_MOVING = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)


@dataclass(frozen=True, slots=True)
class Owner:
    """A member of the group, as Kafka describes it."""

    client_id: str
    host: str
    member_id: str

    def __str__(self) -> str:
        return f"{self.client_id} at {self.host} (member {self.member_id})"


@dataclass(frozen=True, slots=True)
class Owners:
    """Each source's owner (None: no member owns it). ``known`` is False when there is no
    group to ask (``BRIDGE_GROUP_ID`` empty) or Kafka could not be asked; ``why`` says so."""

    known: bool
    by_source: dict[str, Owner | None]
    group_id: str
    state: str = ""
    members: int = 0
    why: str = ""

    def owner(self, source_id: str) -> Owner | None:
        return self.by_source.get(source_id)


def describe_group(admin: AdminClient, group_id: str, timeout_s: float) -> Any:
    """The group's description; a coordinator still loading (a young cluster) or moving is
    asked again, within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        future = admin.describe_consumer_groups([group_id], request_timeout=timeout_s)
        try:
            return future[group_id].result()
        except KafkaException as exc:
            err = exc.args[0]
            again = err.retriable() or err.code() in _COORDINATOR_MOVING
            if not again or time.monotonic() >= deadline:
                raise
        time.sleep(0.5)


def find_owners(
    client_conf: dict[str, Any], group_id: str, coordination_topic: str, source_ids: list[str],
    timeout_s: float = 10.0,
) -> Owners:  # fmt: skip
    """Ask Kafka which member owns each source."""
    if not group_id:
        return Owners(False, {}, group_id, why="no consumer group (BRIDGE_GROUP_ID is empty)")
    # admin_conf: asked about by name, a missing coordination topic must not be made with
    # the broker's partition count instead of BRIDGE_COORDINATION_PARTITIONS.
    admin = AdminClient(admin_conf(client_conf))
    try:
        topic = admin.list_topics(coordination_topic, timeout=timeout_s).topics[coordination_topic]
        if topic.error is not None or not topic.partitions:
            # No replica ever ran: nothing owns anything.
            return Owners(True, dict.fromkeys(source_ids), group_id, state="none")
        group = describe_group(admin, group_id, timeout_s)
    except KafkaException as exc:
        admin.poll(0)  # an error_cb in client_conf hears why (a refused login, say)
        err = exc.args[0]
        why = f"cannot ask consumer group {group_id}: {err.str() if hasattr(err, 'str') else err}"
        return Owners(False, {}, group_id, why=why)
    by_partition: dict[int, Owner] = {}
    for member in group.members:
        for tp in member.assignment.topic_partitions if member.assignment else []:
            if tp.topic == coordination_topic:
                host = member.host.lstrip("/") or "?"
                by_partition[tp.partition] = Owner(member.client_id, host, member.member_id)
    partitions = len(topic.partitions)
    return Owners(
        True,
        {s: by_partition.get(stable_partition(s, partitions)) for s in source_ids},
        group_id,
        state=group.state.name.lower(),
        members=len(group.members),
    )
