"""``passentry-bridge state show|reset``: read or move a source's checkpoint."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import msgspec

from bridge.cli._common import config_option, load, parse_time, pick_source, refuse_if_owned
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


_SOURCE = click.option(
    "--source", "source_id", help="The source. Default: the one source of the config."
)


@state.command("show")
@config_option
@_SOURCE
def state_show(config_path: Path | None, source_id: str | None) -> None:
    """Print the committed checkpoint of a source as JSON."""
    config = load(config_path)
    try:
        click.echo(show(config, pick_source(config, source_id)))
    except BridgeError as exc:
        click.echo(f"passentry-bridge: {exc}", err=True)
        sys.exit(1)


@state.command("reset")
@config_option
@_SOURCE
@click.option(
    "--to", "to", required=True, help="ISO 8601 time (or 'now') the next poll starts from."
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--force",
    is_flag=True,
    help="Reset even while a live bridge owns the source: it is fenced, restarts and"
    " carries on from the new position.",
)
def state_reset(
    config_path: Path | None, source_id: str | None, to: str, yes: bool, force: bool
) -> None:
    """Move a source's checkpoint to a time. Refused (exit 3) while a live bridge owns the
    source, unless --force."""
    config = load(config_path)
    sid = pick_source(config, source_id)
    to_ms = parse_time(to, "--to")
    when = datetime.fromtimestamp(to_ms / 1000, tz=UTC).isoformat()
    refuse_if_owned(config, [sid], force=force, doing="state reset")
    if not yes:
        click.confirm(
            f"Move source {sid!r} to {when}? Scans before it are not read"
            " again; scans after it that were already published are published again.",
            abort=True,
        )
    try:
        click.echo(reset(config, sid, to_ms))
    except BridgeError as exc:
        click.echo(f"passentry-bridge: {exc}", err=True)
        sys.exit(1)


def show(config: Config, source_id: str) -> str:
    br = config.bridge
    pe = config.source(source_id).passentry
    store = CheckpointStore(config.kafka.librdkafka(), br.state_topic, source_id)
    checkpoint = store.read(topic_may_be_missing=True)
    if checkpoint is None:
        return json.dumps({"sourceId": source_id, "checkpoint": None})
    out = json.loads(msgspec.json.encode(checkpoint))
    if checkpoint.watermark is not None:
        created = uuid7_datetime(uuid.UUID(checkpoint.watermark))
        out["watermarkCreatedAt"] = created.isoformat()
        out["lookbackFrom"] = (created - timedelta(seconds=pe.lookback_s)).isoformat()
    if checkpoint.polled_until_ms is not None:
        polled = datetime.fromtimestamp(checkpoint.polled_until_ms / 1000, tz=UTC)
        out["polledUntil"] = polled.isoformat()
        overlap = min(pe.poll_overlap_s, pe.lookback_s)
        out["nextPollCreatedAfter"] = (polled - timedelta(seconds=overlap)).isoformat()
    out["sizeBytes"] = len(msgspec.json.encode(checkpoint))
    return json.dumps(out, indent=2)


def reset(config: Config, source_id: str, since_ms: int) -> str:
    """Commit a checkpoint that says "start at ``since_ms``" with the source's
    transactional id: a running bridge of the same source is fenced and restarts from it."""
    br, kafka = config.bridge, config.kafka
    conf = kafka.librdkafka()
    TopicManager(
        conf, create=br.create_topics, partitions=1, replication_factor=br.topic_replication_factor
    ).ensure([br.state_topic], compacted=True)
    store = CheckpointStore(conf, br.state_topic, source_id)
    publisher = Publisher.for_settings(
        conf, kafka, Metrics(), transactional_id=transactional_id(source_id)
    )
    publisher.init()
    previous = store.read()
    topics = previous.topics if previous is not None else []
    checkpoint = make_checkpoint(source_id, 0, topics, since_ms=since_ms)
    publisher.send([], store.record(checkpoint), 30)
    return msgspec.json.encode(checkpoint).decode()
