"""The ``passentry-bridge`` command line: builds config and hands over to the right part."""

from __future__ import annotations

import importlib
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import click

from bridge import __version__
from bridge.config import Config, load_config
from bridge.errors import BridgeError, ConfigError
from bridge.logs import setup_logging

log = logging.getLogger("bridge")


def parse_time(value: str, name: str) -> int:
    """``now``, or an ISO 8601 time (``Z`` or an offset; bare times are UTC), as Unix ms."""
    if value.strip().lower() == "now":
        return int(time.time() * 1000)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"expected an ISO 8601 time or 'now', got {value!r}", param_hint=name
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _config(path: Path | None, **overrides: dict[str, Any]) -> Config:
    try:
        return load_config(path, **overrides)
    except ConfigError as exc:
        click.echo(f"passentry-bridge: configuration error: {exc}", err=True)
        sys.exit(2)


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML file with passentry/kafka/bridge sections; environment variables win over it.",
)


class _Commands(click.Group):
    """Loads the simulator only when ``simulate`` runs: aiohttp alone costs a third of a
    second, and a bridge that restarts after a crash should be back at work at once."""

    _lazy: ClassVar[dict[str, tuple[str, str]]] = {
        "simulate": ("bridge.simulator.command", "simulate"),
        "schema": ("bridge.schema_cli", "schema"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self._lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            module, name = self._lazy[cmd_name]
            command: click.Command = getattr(importlib.import_module(module), name)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="passentry-bridge")
def main() -> None:
    """Stream PassEntry pass scans into Kafka as Avro."""


@main.command()
@config_option
@click.option("--once", is_flag=True, help="Drain what is available now, wait for delivery, exit.")
@click.option(
    "--since",
    help="Where a fresh start begins: ISO 8601 time or 'now'. Default: now minus the lookback.",
)
def run(config_path: Path | None, once: bool, since: str | None) -> None:
    """Poll PassEntry and publish new scans to Kafka, continuously."""
    from bridge.service import RunOptions

    config = _config(config_path)
    setup_logging(config.bridge.log_format, config.bridge.log_level)
    since_ms = parse_time(since, "--since") if since else None
    sys.exit(_serve(config, RunOptions(once=once, since_ms=since_ms)))


@main.command()
@config_option
@click.option("--since", required=True, help="ISO 8601 start (createdAfter).")
@click.option("--until", required=True, help="ISO 8601 end (createdBefore), or 'now'.")
def backfill(config_path: Path | None, since: str, until: str) -> None:
    """Publish every scan created between --since and --until, fetching pages concurrently."""
    from bridge.service import RunOptions

    config = _config(config_path)
    setup_logging(config.bridge.log_format, config.bridge.log_level)
    since_ms, until_ms = parse_time(since, "--since"), parse_time(until, "--until")
    if until_ms <= since_ms:
        raise click.BadParameter("must be later than --since", param_hint="--until")
    totals = {"published": 0, "pages": 0}

    def progress(stats: Any) -> None:
        totals["published"] += stats.published
        totals["pages"] += stats.pages

    code = _serve(
        config,
        RunOptions(
            once=True, since_ms=since_ms, until_ms=until_ms, serve_http=False, on_cycle=progress
        ),
    )
    click.echo(
        f"backfill: {totals['published']} scans published from {totals['pages']} pages", err=True
    )
    sys.exit(code)


def _serve(config: Config, options: Any) -> int:
    from bridge.service import Service

    try:
        service = Service(config, options)
    except BridgeError as exc:
        log.error("cannot start", extra={"error": str(exc)})
        return 2 if isinstance(exc, ConfigError) else 1
    service.install_signal_handlers()
    return service.run()


@main.command()
@config_option
def check(config_path: Path | None) -> None:
    """Validate the config, then reach the PassEntry API and Kafka; print a verdict for each."""
    from bridge.checks import run_checks

    config = _config(config_path)
    ok = True
    for name, passed, detail in run_checks(config):
        ok &= passed
        click.echo(f"{'ok  ' if passed else 'FAIL'}  {name:<10} {detail}")
    sys.exit(0 if ok else 1)


@main.command()
@config_option
@click.option("--topic", help="Topic to read (default: BRIDGE_SCANS_TOPIC).")
@click.option("--from-beginning", is_flag=True, help="Start at the earliest offset.")
@click.option("--reader", help="Only records of this reader id (the key).")
@click.option("--max", "max_records", type=click.IntRange(min=1), help="Stop after N records.")
def tail(
    config_path: Path | None,
    topic: str | None,
    from_beginning: bool,
    reader: str | None,
    max_records: int | None,
) -> None:
    """Consume the topic (read_committed), decode Avro, print JSON lines."""
    from bridge.tail import tail as run_tail

    config = _config(config_path)
    try:
        for line in run_tail(
            config.kafka.librdkafka(),
            topic or config.bridge.scans_topic,
            from_beginning=from_beginning,
            reader=reader,
            max_records=max_records,
            should_stop=lambda: False,
        ):
            click.echo(line)
    except KeyboardInterrupt:
        pass


@main.group()
def state() -> None:
    """Inspect or move this source's checkpoint (the cursor in Kafka)."""


@state.command("show")
@config_option
def state_show(config_path: Path | None) -> None:
    """Print the committed checkpoint of BRIDGE_SOURCE_ID as JSON."""
    from bridge.state import show

    config = _config(config_path)
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
    from bridge.state import reset

    config = _config(config_path)
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
