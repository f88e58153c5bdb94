"""``passentry-bridge state show|reset``: read or move a source's checkpoint."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from bridge.checkpoint import CheckpointStore, make_checkpoint
from bridge.config import Config
from bridge.metrics import Metrics
from bridge.publish import Publisher, producer_config
from bridge.topics import TopicManager
from bridge.uuid7 import uuid7_datetime

__all__ = ["reset", "show"]


def show(config: Config) -> str:
    br = config.bridge
    store = CheckpointStore(config.kafka.librdkafka(), br.state_topic, br.source_id)
    checkpoint = store.read()
    if checkpoint is None:
        return json.dumps({"sourceId": br.source_id, "checkpoint": None})
    out = json.loads(msgspec.json.encode(checkpoint))
    if checkpoint.watermark is not None:
        created = uuid7_datetime(uuid.UUID(checkpoint.watermark))
        out["watermarkCreatedAt"] = created.isoformat()
        out["lookbackFrom"] = (created - timedelta(seconds=config.passentry.lookback_s)).isoformat()
    if checkpoint.polled_until_ms is not None:
        polled = datetime.fromtimestamp(checkpoint.polled_until_ms / 1000, tz=UTC)
        out["polledUntil"] = polled.isoformat()
        overlap = min(config.passentry.poll_overlap_s, config.passentry.lookback_s)
        out["nextPollCreatedAfter"] = (polled - timedelta(seconds=overlap)).isoformat()
    out["sizeBytes"] = len(msgspec.json.encode(checkpoint))
    return json.dumps(out, indent=2)


def reset(config: Config, since_ms: int) -> str:
    """Commit a checkpoint that says "start at ``since_ms``" with this source's
    transactional id: a running bridge of the same source is fenced and restarts from it."""
    br, kafka = config.bridge, config.kafka
    conf = kafka.librdkafka()
    TopicManager(
        conf, create=br.create_topics, partitions=1, replication_factor=br.topic_replication_factor
    ).ensure([br.state_topic], compacted=True)
    store = CheckpointStore(conf, br.state_topic, br.source_id)
    publisher = Publisher(
        producer_config(
            conf,
            transactional_id=f"passentry-bridge.{br.source_id}",
            compression="none",
            linger_ms=0,
            message_timeout_ms=kafka.message_timeout_ms,
            transaction_timeout_ms=kafka.transaction_timeout_ms,
        ),
        Metrics(),
        dlq_topic=br.dlq_topic,
        call_timeout_s=30,
    )
    publisher.init()
    previous = store.read()
    topics = previous.topics if previous is not None else []
    checkpoint = make_checkpoint(br.source_id, 0, topics, since_ms=since_ms)
    publisher.send([], store.record(checkpoint), 30)
    return msgspec.json.encode(checkpoint).decode()
