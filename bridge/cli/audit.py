"""``passentry-bridge audit``: compare PassEntry with Kafka per time bucket; repair gaps."""

from __future__ import annotations

import logging
import sys
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
    pushgateway_option,
    stop_on_signals,
)
from bridge.errors import BridgeError, ConfigError
from bridge.ops.logs import setup_logging
from bridge.ops.progress import progress_factory

if TYPE_CHECKING:
    from bridge.audit.auditor import AuditRequest
    from bridge.audit.report import AuditReport
    from bridge.config import Config
    from bridge.kafka.access import KafkaAccess

__all__ = ["audit"]

log = logging.getLogger("bridge")


@click.command()
@config_option
@click.option("--since", required=True, help="ISO 8601 start, 'yesterday', 'today' or 'now'.")
@click.option("--until", required=True, help="ISO 8601 end (exclusive), 'today' or 'now'.")
@click.option("--bucket", default="1h", show_default=True, help="Bucket size: 90s, 15m, 1h, 1d.")
@click.option(
    "--source", "source_id", help="Source id to audit. Default: the one source of the config."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON, ids included.")
@click.option(
    "--repair",
    is_flag=True,
    help="Publish the missing scans (and late_scan dead letters), exactly once: behind the "
    "live bridge's horizon while a live member owns the source, else the whole range; then "
    "check again.",
)
@click.option(
    "--force",
    is_flag=True,
    help="With --repair: write as the source even while a live member owns it, fencing it "
    "(it restarts and resumes from its checkpoint).",
)
@click.option(
    "--repair-batch",
    type=click.IntRange(1, 10_000),
    default=500,
    show_default=True,
    help="Scans per repair transaction.",
)
@click.option(
    "--budget",
    type=click.FloatRange(0.1, 100),
    default=3.0,
    show_default=True,
    help="PassEntry requests per second (capped by PASSENTRY_REQUEST_BUDGET); the live "
    "bridge shares PassEntry's 10/s.",
)
@live_margin_option("a repair")
@pushgateway_option
def audit(
    config_path: Path | None, since: str, until: str, bucket: str, source_id: str | None,
    as_json: bool, repair: bool, force: bool, repair_batch: int, budget: float,
    live_margin: str, pushgateway: str | None,
) -> None:  # fmt: skip
    """Check that every scan PassEntry lists in [--since, --until) is in Kafka, once.

    Exit 0: complete; 4: scans missing; 5: scans there more than once; 6: both; 2: bad
    usage or configuration; 1: could not run.
    """
    config = load(config_path)
    setup_logging(config.bridge.log_format, config.bridge.log_level)
    since_ms, until_ms = parse_span(since, until)
    bucket_ms = parse_duration(bucket, "--bucket")
    margin_ms = parse_duration(live_margin, "--live-margin")
    if force and not repair:
        raise click.BadParameter("is only for --repair", param_hint="--force")
    from bridge.audit.auditor import AuditRequest

    request = AuditRequest(
        pick_source(config, source_id),
        since_ms,
        until_ms,
        bucket_ms,
        repair=repair,
        force=force,
        repair_batch=repair_batch,
        live_margin_ms=margin_ms,
        request_budget=budget,
    )
    sys.exit(_run(config, request, as_json, pushgateway))


def _run(config: Config, request: AuditRequest, as_json: bool, pushgateway: str | None) -> int:
    from bridge.audit.auditor import Auditor
    from bridge.audit.report import EXIT_FAILED, EXIT_USAGE
    from bridge.kafka.access import KafkaAccess

    stop = stop_on_signals(EXIT_FAILED)
    report: AuditReport | None = None
    access = KafkaAccess.for_command(config.kafka)
    try:
        auditor = Auditor(config, request, progress=progress_factory(), stop=stop, access=access)
        try:
            report = auditor.run()
        finally:
            auditor.close()
    except ConfigError as exc:
        log.error("cannot audit", extra={"error": str(exc)})
        return EXIT_USAGE
    except BridgeError as exc:
        # A refused login or certificate looks like a broker that is down: say which.
        log.error("audit could not run", extra={"error": str(access.failure() or exc)})
    finally:
        if pushgateway:
            _push(pushgateway, request.source_id, report)
    if report is None:
        return EXIT_FAILED
    remember(config, report, access)
    click.echo(report.json_text() if as_json else report.table())
    return report.exit_code()


def remember(config: Config, report: AuditReport, access: KafkaAccess) -> None:
    """Keep the result in Kafka, where ``passentry-bridge status`` finds it."""
    from bridge.audit.record import record_summary, summary

    record_summary(access.conf(), config.bridge.state_topic, summary(report))


def _push(url: str, source: str, report: AuditReport | None) -> None:
    from bridge.audit.metrics import audit_registry, push

    try:
        push(url, source, audit_registry(report, succeeded=report is not None),
             replace=report is not None)  # fmt: skip
    except OSError as exc:
        log.error("cannot push to the Pushgateway", extra={"url": url, "error": str(exc)})
