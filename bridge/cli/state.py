"""``passentry-bridge state show|reset``: read or move a source's checkpoint."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

import click
import msgspec

from bridge.cli._common import config_option, load, parse_time, pick_source, refuse_if_owned
from bridge.errors import BridgeError
from bridge.kafka.checkpoint import make_checkpoint
from bridge.kafka.producer import transactional_id
from bridge.uuid7 import uuid7_datetime
from bridge.wiring import Wiring

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
    wiring = Wiring.of(config, pick_source(config, source_id))
    try:
        click.echo(show(wiring))
    except BridgeError as exc:
        _failed(wiring, exc)


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
    wiring = Wiring.of(config, sid)
    try:
        click.echo(reset(wiring, to_ms))
    except BridgeError as exc:
        _failed(wiring, exc)


def _failed(wiring: Wiring, exc: BridgeError) -> NoReturn:
    # A refused login or certificate looks like a broker that is down: say which.
    click.echo(f"passentry-bridge: {wiring.access.failure() or exc}", err=True)
    sys.exit(1)


def show(wiring: Wiring) -> str:
    source_id, pe = wiring.source_id, wiring.spec.passentry
    checkpoint = wiring.checkpoints().read(topic_may_be_missing=True)
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


def reset(wiring: Wiring, since_ms: int) -> str:
    """Commit a checkpoint that says "start at ``since_ms``" with the source's
    transactional id: a running bridge of the same source is fenced and restarts from it."""
    source_id = wiring.source_id
    wiring.topics().ensure([wiring.config.bridge.state_topic], compacted=True)
    store = wiring.checkpoints()
    publisher = wiring.publisher(transactional_id(source_id))
    publisher.init()
    previous = store.read()
    topics = previous.topics if previous is not None else []
    # Where the webhook events continue does not move: polling reads the range again.
    inbox = previous.inbox if previous is not None else None
    checkpoint = make_checkpoint(source_id, 0, topics, since_ms=since_ms, inbox=inbox)
    publisher.send([], store.record(checkpoint), 30)
    return msgspec.json.encode(checkpoint).decode()
