"""``passentry-bridge dlq``: look at the dead letters of a source, and replay them.

- ``list``: the source's dead letters by reason (their reason now), newest first;
- ``show ID``: one scan's dead letters: its reason, its first error, its payload;
- ``replay``: judge them again with today's code and publish those that now pass, exactly
  once, beside a live bridge (``bridge.dlq.replay``).

Times (``--since``, ``--until``) are when scans were dead-lettered. Exit codes: 0 done, 1
could not run (Kafka or PassEntry unreachable), 2 bad usage or configuration, 4 (``show``)
no dead letter has that id.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from bridge.cli._common import (
    config_option,
    live_margin_option,
    load,
    parse_duration,
    parse_time,
    pick_source,
    pushgateway_option,
    stop_on_signals,
)
from bridge.errors import BridgeError, ConfigError
from bridge.ops.logs import setup_logging
from bridge.ops.progress import progress_factory

if TYPE_CHECKING:
    from bridge.config import Config
    from bridge.dlq.letters import DeadLetterReader
    from bridge.dlq.replay import ReplayRequest
    from bridge.dlq.report import ReplayReport
    from bridge.kafka.access import KafkaAccess

__all__ = ["dlq"]

log = logging.getLogger("bridge")

FC = TypeVar("FC", bound=Callable[..., Any])

EXIT_DONE, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND = 0, 1, 2, 4


def _selection(command: FC) -> FC:
    """The options every dlq command shares: which source, which dead letters, --json."""
    for option in reversed(
        [
            config_option,
            click.option(
                "--source", "source_id",
                help="Source id. Default: the one source of the config.",
            ),
            click.option(
                "--since",
                help="Dead-lettered at or after: ISO 8601, 'yesterday', 'today' or 'now'."
                " Default: the start of the topic.",
            ),
            click.option("--until", help="Dead-lettered before (ISO 8601 or 'now')."),
            click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
        ]
    ):  # fmt: skip
        command = option(command)
    return command


def _range(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    since_ms = parse_time(since, "--since") if since else None
    until_ms = parse_time(until, "--until") if until else None
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise click.BadParameter("must be later than --since", param_hint="--until")
    return since_ms, until_ms


def _access(config: Config) -> KafkaAccess:
    from bridge.kafka.access import KafkaAccess

    return KafkaAccess.for_command(config.kafka)


def _reader(config: Config, access: KafkaAccess) -> DeadLetterReader:
    from bridge.dlq.letters import DeadLetterReader

    timeout_s = config.kafka.read_committed_timeout_s
    return DeadLetterReader(access.conf(), config.bridge.dlq_topic, timeout_s)


_reasons = click.option(
    "--reason", "reasons", multiple=True,
    help="Only scans whose reason now is this (repeat for several). Default: all.",
)  # fmt: skip


@click.group()
def dlq() -> None:
    """Dead letters: list them by reason, show one, replay what now passes."""


@dlq.command("list")
@_selection
@_reasons
@click.option(
    "--limit", type=click.IntRange(0), default=50, show_default=True,
    help="Scans listed, newest first (0: all); the counts cover all of them.",
)  # fmt: skip
def list_(
    config_path: Path | None, source_id: str | None, since: str | None, until: str | None,
    as_json: bool, reasons: tuple[str, ...], limit: int,
) -> None:  # fmt: skip
    """The source's dead letters, counted by reason, newest first.

    Exit 0; 1: Kafka could not be read; 2: bad usage or configuration."""
    from bridge.dlq.report import ListReport

    config = load(config_path)
    setup_logging(config.bridge.log_format, config.bridge.log_level)
    source = pick_source(config, source_id)
    since_ms, until_ms = _range(since, until)
    access = _access(config)
    try:
        found = _reader(config, access).histories(
            source, since_ms=since_ms, until_ms=until_ms, progress=progress_factory()
        )
    except BridgeError as exc:
        # A refused login or certificate looks like a broker that is down: say which.
        log.error("cannot read the dead letters", extra={"error": str(access.failure() or exc)})
        sys.exit(EXIT_FAILED)
    histories = [h for h in found.values() if not reasons or h.reason in reasons]
    report = ListReport(source, config.bridge.dlq_topic, since_ms, until_ms, sorted(reasons),
                        histories, limit, sum(h.count for h in found.values()))  # fmt: skip
    click.echo(report.json_text() if as_json else report.table())


@dlq.command("show")
@_selection
@click.argument("letter_id", metavar="ID")
def show(
    config_path: Path | None, source_id: str | None, since: str | None, until: str | None,
    as_json: bool, letter_id: str,
) -> None:  # fmt: skip
    """One scan's dead letters: its reason now, its first error, its payload.

    ID is the scan id, or for a scan without one the "sha256:..." id that `dlq list` shows.
    Exit 0; 4: no dead letter has that id; 1: Kafka could not be read."""
    from bridge.dlq.report import ShowReport

    config = load(config_path)
    setup_logging(config.bridge.log_format, config.bridge.log_level)
    source = pick_source(config, source_id)
    since_ms, until_ms = _range(since, until)
    access = _access(config)
    try:
        found = _reader(config, access).histories(
            source, since_ms=since_ms, until_ms=until_ms, only_id=letter_id.strip(),
            progress=progress_factory(),
        )  # fmt: skip
    except BridgeError as exc:
        log.error("cannot read the dead letters", extra={"error": str(access.failure() or exc)})
        sys.exit(EXIT_FAILED)
    if not found:
        click.echo(
            f"passentry-bridge: no dead letter of source {source} has id {letter_id!r}"
            f" in {config.bridge.dlq_topic}",
            err=True,
        )
        sys.exit(EXIT_NOT_FOUND)
    report = ShowReport(source, next(iter(found.values())))
    click.echo(report.json_text() if as_json else report.text())


@dlq.command("replay")
@_selection
@_reasons
@click.option(
    "--dry-run", is_flag=True,
    help="Judge and report what would be published; fence nothing, write nothing.",
)  # fmt: skip
@click.option(
    "--batch", type=click.IntRange(1, 10_000), default=500, show_default=True,
    help="Scans per Kafka transaction.",
)  # fmt: skip
@click.option(
    "--budget", type=click.FloatRange(0.1, 100), default=3.0, show_default=True,
    help="PassEntry requests per second (capped by PASSENTRY_REQUEST_BUDGET): one per scan"
    " published, for its pass and reader.",
)  # fmt: skip
@live_margin_option("the replay")
@click.option(
    "--force", is_flag=True,
    help="Write as the source even while a live member owns it, fencing it (it restarts"
    " and resumes from its checkpoint).",
)  # fmt: skip
@pushgateway_option
def replay(
    config_path: Path | None, source_id: str | None, since: str | None, until: str | None,
    as_json: bool, reasons: tuple[str, ...], dry_run: bool, batch: int, budget: float,
    live_margin: str, force: bool, pushgateway: str | None,
) -> None:  # fmt: skip
    """Publish the dead-lettered scans that today's code accepts, exactly once.

    Each scan's latest dead letter is judged again: one that passes is published unless
    the source's topics hold it already, and only behind the live bridge's horizon while a
    live member owns the source; one that still fails stays (a dead letter says its new
    reason if it changed). Killed and run again, or run twice, it publishes each scan once.

    Exit 0: done; 1: could not run; 2: bad usage or configuration."""
    from bridge.dlq.replay import ReplayRequest

    config = load(config_path)
    setup_logging(config.bridge.log_format, config.bridge.log_level)
    source = pick_source(config, source_id)
    since_ms, until_ms = _range(since, until)
    margin_ms = parse_duration(live_margin, "--live-margin")
    if force and dry_run:
        raise click.BadParameter("a dry run fences nothing", param_hint="--force")
    request = ReplayRequest(
        source, frozenset(reasons), since_ms, until_ms, dry_run=dry_run, force=force,
        batch=batch, live_margin_ms=margin_ms, request_budget=budget,
    )  # fmt: skip
    sys.exit(_replay(config, request, as_json, pushgateway))


def _replay(config: Config, request: ReplayRequest, as_json: bool, pushgateway: str | None) -> int:
    from bridge.dlq.replay import Replayer

    stop = stop_on_signals(EXIT_FAILED)
    report: ReplayReport | None = None
    access = _access(config)
    try:
        replayer = Replayer(config, request, progress=progress_factory(), stop=stop, access=access)
        try:
            report = replayer.run()
        finally:
            replayer.close()
    except ConfigError as exc:
        log.error("cannot replay", extra={"error": str(exc)})
        return EXIT_USAGE
    except BridgeError as exc:
        # A refused login or certificate looks like a broker that is down: say which.
        log.error("replay could not run", extra={"error": str(access.failure() or exc)})
    finally:
        if pushgateway:
            _push(pushgateway, request.source_id, report)
    if report is None:
        return EXIT_FAILED
    click.echo(report.json_text() if as_json else report.table())
    return EXIT_DONE


def _push(url: str, source: str, report: ReplayReport | None) -> None:
    from bridge.audit.metrics import push
    from bridge.dlq.metrics import JOB, replay_registry

    try:
        push(url, source, replay_registry(report, succeeded=report is not None),
             replace=report is not None, job=JOB)  # fmt: skip
    except OSError as exc:
        log.error("cannot push to the Pushgateway", extra={"url": url, "error": str(exc)})
