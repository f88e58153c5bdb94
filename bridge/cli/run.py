"""``passentry-bridge run`` and ``backfill``: hand the config over to the service."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from bridge.cli._common import config_option, load, parse_time
from bridge.config import Config
from bridge.errors import BridgeError, ConfigError
from bridge.ops.logs import setup_logging
from bridge.pipeline import CycleStats
from bridge.runner import RunOptions

__all__ = ["backfill", "run"]

log = logging.getLogger("bridge")


@click.command()
@config_option
@click.option("--once", is_flag=True, help="Drain what is available now, wait for delivery, exit.")
@click.option(
    "--since",
    help="Where a fresh start begins: ISO 8601 time or 'now'. Default: now minus the lookback.",
)
def run(config_path: Path | None, once: bool, since: str | None) -> None:
    """Poll PassEntry and publish new scans to Kafka, continuously."""
    config = load(config_path)
    setup_logging(config.bridge.log_format, config.bridge.log_level)
    since_ms = parse_time(since, "--since") if since else None
    sys.exit(serve(config, RunOptions(once=once, since_ms=since_ms)))


@click.command()
@config_option
@click.option("--since", required=True, help="ISO 8601 start (createdAfter).")
@click.option("--until", required=True, help="ISO 8601 end (createdBefore), or 'now'.")
def backfill(config_path: Path | None, since: str, until: str) -> None:
    """Publish every scan created between --since and --until, fetching pages concurrently."""
    config = load(config_path)
    setup_logging(config.bridge.log_format, config.bridge.log_level)
    since_ms, until_ms = parse_time(since, "--since"), parse_time(until, "--until")
    if until_ms <= since_ms:
        raise click.BadParameter("must be later than --since", param_hint="--until")
    totals = CycleStats()

    def progress(stats: CycleStats) -> None:
        totals.published += stats.published
        totals.pages += stats.pages

    # Its own source id (so its own transactional id and checkpoint): a backfill never
    # fences the live bridge, and the same range run again resumes where it stopped.
    options = RunOptions(
        once=True,
        since_ms=since_ms,
        until_ms=until_ms,
        serve_http=False,
        source_suffix=f".backfill.{since_ms}-{until_ms}",
        on_cycle=progress,
    )
    code = serve(config, options)
    click.echo(f"backfill: {totals.published} scans published from {totals.pages} pages", err=True)
    sys.exit(code)


def serve(config: Config, options: RunOptions) -> int:
    """Build the service and run it to its exit code (2: bad config, 1: cannot start)."""
    from bridge.service import Service

    try:
        service = Service(config, options)
    except BridgeError as exc:
        log.error("cannot start", extra={"error": str(exc)})
        return 2 if isinstance(exc, ConfigError) else 1
    service.install_signal_handlers()
    return service.run()
