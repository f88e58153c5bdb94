"""``passentry-bridge backfill``: publish what a range's scans lack in Kafka, exactly once.

The same mechanism as ``audit --repair`` (``bridge.audit``): what Kafka holds for the source
is read (read_committed) and only the scans it lacks are published, so a backfill over any
range, however much of it the live bridge or an earlier backfill published, doubles
nothing. While a live member owns the source it stays behind that bridge's horizon (the
range is cut there, and the output says so); where none runs it writes the whole range as
the source. Pages are fetched several at a time inside the request budget, with a progress
bar on a terminal (log lines otherwise).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bridge.cli._common import (
    config_option,
    live_margin_option,
    load,
    parse_duration,
    parse_span,
    pick_source,
    stop_on_signals,
)
from bridge.config import Config
from bridge.errors import BridgeError, ConfigError
from bridge.ops.logs import setup_logging
from bridge.ops.progress import progress_factory

if TYPE_CHECKING:
    from bridge.kafka.access import KafkaAccess

__all__ = ["backfill"]

log = logging.getLogger("bridge")

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


@click.command()
@config_option
@click.option("--since", required=True, help="ISO 8601 start (createdAfter), or 'yesterday'.")
@click.option("--until", required=True, help="ISO 8601 end (exclusive), 'today' or 'now'.")
@click.option(
    "--source", "source_id", help="The source to backfill. Default: every source of the config."
)
@click.option(
    "--bucket",
    default="1h",
    show_default=True,
    help="PassEntry is counted per bucket against Kafka: 15m, 1h, 1d.",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 10_000),
    default=1000,
    show_default=True,
    help="Scans per Kafka transaction.",
)
@click.option(
    "--budget",
    type=click.FloatRange(0.1, 100),
    help="PassEntry requests per second. Default: PASSENTRY_REQUEST_BUDGET.",
)
@live_margin_option("the backfill")
@click.option(
    "--force",
    is_flag=True,
    help="Write the whole range as the source even while a live member owns it. That fences "
    "the live bridge: it restarts and resumes from its checkpoint, fencing this backfill in "
    "turn if it still runs.",
)
def backfill(
    config_path: Path | None, since: str, until: str, source_id: str | None, bucket: str,
    batch: int, budget: float | None, live_margin: str, force: bool,
) -> None:  # fmt: skip
    """Publish the scans created in [--since, --until) that Kafka does not hold yet.

    Exit 0: done; 1: could not run; 2: bad usage or configuration.
    """
    config = load(config_path)
    setup_logging(config.bridge.log_format, config.bridge.log_level)
    since_ms, until_ms = parse_span(since, until)
    bucket_ms = parse_duration(bucket, "--bucket")
    margin_ms = parse_duration(live_margin, "--live-margin")
    ids = [s.id for s in config.sources] if source_id is None else [pick_source(config, source_id)]
    stop = stop_on_signals(EXIT_FAILED)
    code = EXIT_DONE
    for sid in ids:
        code = max(code, _one(config, sid, (since_ms, until_ms), bucket_ms, batch, budget,
                              margin_ms, force, stop))  # fmt: skip
    sys.exit(code)


def _one(
    config: Config, source_id: str, span: tuple[int, int], bucket_ms: int, batch: int,
    budget: float | None, margin_ms: int, force: bool, stop: threading.Event,
) -> int:  # fmt: skip
    from bridge.audit.auditor import Auditor, AuditRequest
    from bridge.kafka.access import KafkaAccess

    pe = config.source(source_id).passentry
    request = AuditRequest(
        source_id, *span, bucket_ms, repair=True, command="backfill",
        force=force, keep_ids=False, recheck=False, repair_batch=batch, live_margin_ms=margin_ms,
        request_budget=budget if budget is not None else pe.request_budget,
    )  # fmt: skip
    access = KafkaAccess.for_command(config.kafka)
    try:
        auditor = Auditor(config, request, progress=progress_factory(), stop=stop, access=access)
        try:
            report = auditor.run()
        finally:
            auditor.close()
    except ConfigError as exc:
        log.error("cannot backfill", extra={"source_id": source_id, "error": str(exc)})
        return EXIT_USAGE
    except BridgeError as exc:
        # A refused login or certificate looks like a broker that is down: say which.
        error = str(access.failure() or exc)
        log.error("backfill could not run", extra={"source_id": source_id, "error": error})
        return EXIT_FAILED
    from bridge.cli.audit import remember

    remember(config, report, access)
    for line in [*report.summary(), *_retention(config, source_id, access)]:
        click.echo(f"backfill: {line}", err=True)
    return EXIT_DONE


def _retention(config: Config, source_id: str, access: KafkaAccess) -> list[str]:
    """How long the topics keep what was published, said once the records are in."""
    from bridge.kafka.retention import topic_retention

    spec = config.source(source_id)
    topics = [config.bridge.dlq_topic]
    if spec.topic_template is None:
        topics.insert(0, spec.scans_topic)
    now = time.time()
    lines = []
    for found in topic_retention(access.conf(), topics):
        line = found.describe()
        if found.retention_ms is not None and found.error is None and not found.compacted:
            until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now + found.retention_ms / 1e3))
            line += f": what this run published stays until about {until}"
        lines.append(line)
    return lines
