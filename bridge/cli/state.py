"""``passentry-bridge state show|reset``: read or move a source's checkpoint."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import msgspec

from bridge.cli._common import config_option, load, parse_time
from bridge.config import Config
from bridge.errors import BridgeError
from bridge.kafka.checkpoint import CheckpointStore, make_checkpoint
from bridge.kafka.producer import Publisher, transactional_id
from bridge.kafka.topics import TopicManager
from bridge.ops.metrics import Metrics
from bridge.uuid7 import uuid7_datetime

__all__ = ["reset", "show", "state"]


@click.group()
def state() -> None:
    """Inspect or move this source's checkpoint (the cursor in Kafka)."""


@state.command("show")
@config_option
def state_show(config_path: Path | None) -> None:
    """Print the committed checkpoint of BRIDGE_SOURCE_ID as JSON."""
    config = load(config_path)
    try:
        click.echo(show(config))
    except BridgeError as exc:
        click.echo(f"passentry-bridge: {exc}", err=True)
        sys.exit(1)


@state.command("reset")
@config_option
@click.option(
    "--to", "to", required=True, help="ISO 8601 time (or 'now') the next poll starts from."
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def state_reset(config_path: Path | None, to: str, yes: bool) -> None:
    """Move the checkpoint to a time. Fences a running bridge of this source, which
    restarts from the new position."""
    config = load(config_path)
    to_ms = parse_time(to, "--to")
    when = datetime.fromtimestamp(to_ms / 1000, tz=UTC).isoformat()
    if not yes:
        click.confirm(
            f"Move source {config.bridge.source_id!r} to {when}? Scans before it are not read"
            " again; scans after it that were already published are published again.",
            abort=True,
        )
    try:
        click.echo(reset(config, to_ms))
    except BridgeError as exc:
        click.echo(f"passentry-bridge: {exc}", err=True)
        sys.exit(1)


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
    publisher = Publisher.for_settings(
        conf, kafka, Metrics(), transactional_id=transactional_id(br.source_id)
    )
    publisher.init()
    previous = store.read()
    topics = previous.topics if previous is not None else []
    checkpoint = make_checkpoint(br.source_id, 0, topics, since_ms=since_ms)
    publisher.send([], store.record(checkpoint), 30)
    return msgspec.json.encode(checkpoint).decode()
