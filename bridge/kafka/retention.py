"""How long the bridge's topics keep what it writes, asked of the cluster (DescribeConfigs).

Time-based retention counts from a record's timestamp. The bridge stamps records with the
time it publishes them, so a backfill of scans older than ``retention.ms`` is kept as long
as live scans are, not deleted the moment it is written; ``check`` and ``backfill`` say how
long that is. A scans topic with ``cleanup.policy=compact`` would keep one scan per reader
(the key): ``check`` refuses it.

DescribeConfigs is not among the ACLs the bridge needs; without it the answer is "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]

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
    try:
        admin = AdminClient(client_conf)
        resources = [ConfigResource(ResourceType.TOPIC, t) for t in topics]
        futures = admin.describe_configs(resources, request_timeout=timeout_s)
    except KafkaException as exc:
        return [Retention(t, error=exc.args[0].str()) for t in topics]
    out = []
    for resource, future in futures.items():
        try:
            entries = future.result(timeout=timeout_s)
        except KafkaException as exc:
            err = exc.args[0]
            why = err.str()
            if "AUTHORIZATION" in err.name():
                why = "DescribeConfigs is not granted on it; the bridge does not need it"
            out.append(Retention(resource.name, error=why))
            continue
        retention = int(entries["retention.ms"].value)
        policy = entries["cleanup.policy"].value
        out.append(
            Retention(
                resource.name,
                retention_ms=None if retention < 0 else retention,
                # compact,delete too: older scans of a reader (the key) would go.
                compacted="compact" in policy,
            )
        )
    return sorted(out, key=lambda r: topics.index(r.topic))
