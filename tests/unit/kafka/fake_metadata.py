"""What ``list_topics`` returns, as far as the bridge reads it: each topic's partitions and
the broker's error about it."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError


@dataclass
class TopicMeta:
    partitions: dict[int, object]
    error: KafkaError | None = None


@dataclass
class ClusterMeta:
    topics: dict[str, TopicMeta]
