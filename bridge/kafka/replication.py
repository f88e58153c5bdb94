"""Whether a topic keeps exactly once through the loss of a broker: its replication factor,
``min.insync.replicas`` and unclean leader election, as the cluster has them.

The bridge writes with ``acks=all``: a commit counts once every in-sync replica has it, and
at least ``min.insync.replicas`` of them must be in sync for a write to be taken at all.
So with replication factor 3 and ``min.insync.replicas`` 2, a committed transaction is on
two brokers at least, and one broker may go without losing it or stopping the stream.
Fewer replicas, or a minimum of one, and a leader that dies before its followers copied a
commit takes the commit with it: the checkpoint says published, the records are gone. An
unclean leader election does the same on purpose. ``check`` reports each topic the bridge
writes, and the transaction log, whose loss undoes transactions that were committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.kafka.topic_config import describe_topics

__all__ = ["RECOMMENDED", "TRANSACTION_LOG", "Durability", "topic_durability"]

RECOMMENDED = "replication factor 3, min.insync.replicas 2, unclean leader election off"
# Kafka's own record of each transaction's outcome: as important as the topics themselves.
TRANSACTION_LOG = "__transaction_state"


@dataclass(frozen=True, slots=True)
class Durability:
    topic: str
    replication_factor: int | None = None
    min_insync: int | None = None
    unclean: bool | None = None
    error: str | None = None
    missing: bool = False

    def refused(self) -> str | None:
        """Why Kafka takes no write at all on the topic, if so: more replicas must be in
        sync than there are (the bridge writes with ``acks=all``)."""
        rf, least = self.replication_factor, self.min_insync
        if rf is not None and least is not None and least > rf:
            return (
                f"min.insync.replicas {least} with {rf} replica{'s' if rf > 1 else ''}: Kafka"
                " refuses every write the bridge makes (acks=all)"
            )
        return None

    def risks(self) -> list[str]:
        """What losing one broker would do to what the topic holds; empty when nothing."""
        rf, least, risks = self.replication_factor, self.min_insync, []
        if rf is not None and rf < 2:
            risks.append(
                "one replica: losing its broker stops the topic, and losing its disk loses"
                " every record on it"
            )
        elif least is not None and least < 2:
            risks.append(
                f"min.insync.replicas {least}: while its followers lag, Kafka takes commits"
                " the leader alone has, and loses them if that leader dies"
            )
        if rf is not None and least is not None and rf > 1 and least == rf:
            risks.append(
                f"min.insync.replicas {least} of {rf} replicas: losing any broker stops every write"
            )
        if self.unclean:
            risks.append(
                "unclean.leader.election.enable=true: a replica that missed committed records"
                " may become the leader, and those records are gone"
            )
        return risks

    def describe(self) -> str:
        if self.missing:
            return f"{self.topic}: not created yet"
        if self.error is not None:
            return f"{self.topic}: replication unknown ({self.error})"
        rf = "unknown" if self.replication_factor is None else self.replication_factor
        least = "unknown" if self.min_insync is None else self.min_insync
        unclean = "unknown" if self.unclean is None else "on" if self.unclean else "off"
        found = (
            f"{self.topic}: replication factor {rf}, min.insync.replicas {least},"
            f" unclean leader election {unclean}"
        )
        problems = [p for p in (self.refused(), *self.risks()) if p]
        if problems:
            return f"{found}: {'; '.join(problems)} (recommended: {RECOMMENDED})"
        if None in (self.replication_factor, self.min_insync, self.unclean):
            return found
        return f"{found}: a broker can be lost without losing a commit or stopping writes"


def topic_durability(
    client_conf: dict[str, Any], topics: list[str], timeout_s: float = 10.0
) -> list[Durability]:
    """Each topic's replication, in the order given."""
    out = []
    for found in describe_topics(client_conf, topics, timeout_s):
        if found.error is not None:
            out.append(Durability(found.topic, error=found.error, missing=found.missing))
            continue
        least = found.get("min.insync.replicas")
        unclean = found.get("unclean.leader.election.enable")
        out.append(
            Durability(
                found.topic,
                replication_factor=found.replicas,
                min_insync=int(least) if least is not None else None,
                unclean=None if unclean is None else unclean == "true",
            )
        )
    return out
