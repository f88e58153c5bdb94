"""Topic settings as the cluster has them: DescribeConfigs gives each setting (the topic's own
or the broker's default), metadata gives the replica count. ``retention.py`` and
``replication.py`` read their settings through here; ``check`` and ``backfill`` report them.

DescribeConfigs is not among the ACLs the bridge needs; without it the answer says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]

__all__ = ["TopicConfig", "describe_topics"]

_NOT_GRANTED = "DescribeConfigs is not granted on it; the bridge does not need it"


@dataclass(frozen=True, slots=True)
class TopicConfig:
    topic: str
    settings: dict[str, str] = field(default_factory=dict)
    # How many replicas each partition has (the replication factor); None when unknown.
    replicas: int | None = None
    # Why the settings are unknown; ``missing`` when the topic does not exist (yet).
    error: str | None = None
    missing: bool = False

    def get(self, name: str) -> str | None:
        return self.settings.get(name)


def describe_topics(
    client_conf: dict[str, Any], topics: list[str], timeout_s: float = 10.0
) -> list[TopicConfig]:
    """Each topic's settings, in the order given."""
    try:
        admin = AdminClient(client_conf)
        metadata = admin.list_topics(timeout=timeout_s).topics
        resources = [ConfigResource(ResourceType.TOPIC, t) for t in topics]
        futures = admin.describe_configs(resources, request_timeout=timeout_s)
    except KafkaException as exc:
        return [TopicConfig(t, error=exc.args[0].str()) for t in topics]
    found: dict[str, TopicConfig] = {}
    for resource, future in futures.items():
        name = resource.name
        try:
            entries = future.result(timeout=timeout_s)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                found[name] = TopicConfig(name, error="not created yet", missing=True)
            else:
                why = _NOT_GRANTED if "AUTHORIZATION" in err.name() else err.str()
                found[name] = TopicConfig(name, error=why)
            continue
        meta = metadata.get(name)
        counts = {len(p.replicas) for p in meta.partitions.values()} if meta else set()
        settings = {key: e.value for key, e in entries.items() if e.value is not None}
        found[name] = TopicConfig(
            name,
            settings=settings,
            # Partitions of one topic may differ after a reassignment: the fewest count.
            # None: the metadata does not show it (no Describe on it).
            replicas=min(counts) if counts else None,
        )
    return [found[t] for t in topics]
