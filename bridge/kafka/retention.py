"""How long the bridge's topics keep what it writes, asked of the cluster (DescribeConfigs).

Time-based retention counts from a record's timestamp. The bridge stamps records with the
time it publishes them, so a backfill of scans older than ``retention.ms`` is kept as long
as live scans are, not deleted the moment it is written; ``check`` and ``backfill`` say how
long that is. A scans topic with ``cleanup.policy=compact`` would keep one scan per reader
(the key): ``check`` refuses it.

The settings come from ``topic_config``; without DescribeConfigs the answer is "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.kafka.topic_config import describe_topics

__all__ = ["Retention", "describe_ms", "topic_retention"]


@dataclass(frozen=True, slots=True)
class Retention:
    topic: str
    # None: no time limit (retention.ms=-1), or unknown when ``error`` says why.
    retention_ms: int | None = None
    compacted: bool = False
    error: str | None = None

    def describe(self) -> str:
        if self.error is not None:
            return f"{self.topic}: retention unknown ({self.error})"
        if self.compacted:
            return f"{self.topic}: cleanup.policy=compact keeps only the last record per key"
        if self.retention_ms is None:
            return f"{self.topic}: records are kept without a time limit (retention.ms=-1)"
        return (
            f"{self.topic}: records are kept {describe_ms(self.retention_ms)} after they are"
            " published (retention.ms; the Kafka timestamp is the publication)"
        )


def describe_ms(ms: int) -> str:
    """``7d``, ``90m``, ``1.5s``: the largest unit that divides it, seconds at least."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms / 1000:g}s"


def topic_retention(
    client_conf: dict[str, Any], topics: list[str], timeout_s: float = 10.0
) -> list[Retention]:
    """Each topic's retention, as the cluster has it configured (topic or broker default)."""
    out = []
    for found in describe_topics(client_conf, topics, timeout_s):
        if found.error is not None:
            out.append(Retention(found.topic, error=found.error))
            continue
        retention = int(found.get("retention.ms") or -1)
        out.append(
            Retention(
                found.topic,
                retention_ms=None if retention < 0 else retention,
                # compact,delete too: older scans of a reader (the key) would go.
                compacted="compact" in (found.get("cleanup.policy") or ""),
            )
        )
    return out
