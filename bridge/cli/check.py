"""``passentry-bridge check``: prints the verdict of ``bridge.checks`` (one row each: ok,
WARN or FAIL) and exits 1 if any row failed."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from bridge.checks import run_checks
from bridge.cli._common import config_option, load
from bridge.kafka.access import librdkafka_logger

__all__ = ["check"]


@click.command()
@config_option
@click.option(
    "--running",
    is_flag=True,
    help="Also require running replicas: the consumer group (BRIDGE_GROUP_ID) is stable and "
    "one of its members owns each source. For a deployment's readiness, e.g. `helm test`.",
)
def check(config_path: Path | None, running: bool) -> None:
    """Validate the config, reach the PassEntry API, log in to Kafka and check each
    permission the bridge needs there; print a verdict for each."""
    config = load(config_path)
    # The rows say what librdkafka and the Kafka diagnosis would log; keep their lines out.
    for name in (librdkafka_logger().name, "bridge.kafka.access"):
        logging.getLogger(name).addHandler(logging.NullHandler())
        logging.getLogger(name).propagate = False
    results = run_checks(config, running=running)
    width = max(len(r.name) for r in results)
    for result in results:
        mark = "FAIL" if not result.ok else "WARN" if result.warning else "ok  "
        click.echo(f"{mark}  {result.name:<{width}}  {result.detail}")
    sys.exit(0 if all(r.ok for r in results) else 1)
