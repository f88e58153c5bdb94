"""``passentry-bridge run``: hand the config over to the service."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from bridge.cli._common import config_option, load, parse_time, refuse_if_owned
from bridge.config import Config
from bridge.errors import BridgeError, ConfigError
from bridge.ops.logs import setup_logging
from bridge.runner import EXIT_FATAL, EXIT_GAVE_UP, RunOptions

__all__ = ["run"]

log = logging.getLogger("bridge")


@click.command()
@config_option
@click.option("--once", is_flag=True, help="Drain what is available now, wait for delivery, exit.")
@click.option(
    "--since",
    help="Where a fresh start begins: ISO 8601 time or 'now'. Default: now minus the lookback.",
)
@click.option(
    "--force",
    is_flag=True,
    help="With --once: run even while a live member of the group owns a source, fencing it "
    "(it restarts and resumes from its checkpoint).",
)
def run(config_path: Path | None, once: bool, since: str | None, force: bool) -> None:
    """Poll PassEntry and publish new scans to Kafka, continuously.

    With --once, exit 3 when a live bridge owns a source (see --force)."""
    config = load(config_path)
    setup_logging(config.bridge.log_format, config.bridge.log_level)
    since_ms = parse_time(since, "--since") if since else None
    if once:
        # --once runs its sources itself, as their one writer: a live owner would be fenced.
        ids = [s.id for s in config.sources]
        refuse_if_owned(config, ids, force=force, doing="run --once")
    elif force:
        raise click.BadParameter("is only for --once", param_hint="--force")
    sys.exit(serve(config, RunOptions(once=once, since_ms=since_ms)))


def serve(config: Config, options: RunOptions) -> int:
    """Build the service and run it to its exit code (2: bad config; 1: cannot start, a
    fatal error, or --once could not complete a cycle)."""
    from bridge.service import Service

    try:
        service = Service(config, options)
    except BridgeError as exc:
        log.error("cannot start", extra={"error": str(exc)})
        return 2 if isinstance(exc, ConfigError) else 1
    service.install_signal_handlers()
    code = service.run()
    # --once that gave up could not run, like a fatal error; 2 is for bad configuration.
    return EXIT_FATAL if code == EXIT_GAVE_UP else code
