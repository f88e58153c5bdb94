"""What every command shares: loading the config, reading a time, the --config option."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import click

from bridge.cli._errors import one_line
from bridge.config import Config, load_config
from bridge.errors import ConfigError

__all__ = [
    "EXIT_OWNED",
    "config_file_option",
    "config_option",
    "live_margin_option",
    "load",
    "parse_duration",
    "parse_span",
    "parse_time",
    "pick_source",
    "pushgateway_option",
    "refuse_if_owned",
]

FC = TypeVar("FC", bound=Callable[..., Any])


def parse_time(value: str, name: str) -> int:
    """``now``, ``today`` or ``yesterday`` (00:00 UTC), or an ISO 8601 time (``Z`` or an
    offset; bare times are UTC), as Unix ms. The day names let a daily CronJob say "the
    previous day" without date arithmetic in a shell."""
    word = value.strip().lower()
    if word == "now":
        return int(time.time() * 1000)
    if word in ("today", "yesterday"):
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        days = 1 if word == "yesterday" else 0
        return int(midnight.timestamp() * 1000) - days * 86_400_000
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"expected an ISO 8601 time, 'now', 'today' or 'yesterday', got {value!r}",
            param_hint=name,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def parse_span(since: str, until: str) -> tuple[int, int]:
    """``--since`` and ``--until`` (as :func:`parse_time`), the second later than the first."""
    since_ms, until_ms = parse_time(since, "--since"), parse_time(until, "--until")
    if until_ms <= since_ms:
        raise click.BadParameter("must be later than --since", param_hint="--until")
    return since_ms, until_ms


def parse_duration(value: str, name: str) -> int:
    """A duration option (``90s``, ``15m``, ``1h``, ``1d``) in ms."""
    from bridge.audit.buckets import parse_duration_ms

    try:
        return parse_duration_ms(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from None


def live_margin_option(who: str) -> Callable[[FC], FC]:
    """``--live-margin``: how far behind a live bridge's cursor ``who`` (a repair, a
    backfill, a replay) keeps (parse it with :func:`parse_duration`)."""
    return click.option(
        "--live-margin", default="60s", show_default=True,
        help=f"Beside a live bridge: how much further than lookback + late sweep behind its"
        f" cursor {who} stays.",
    )  # fmt: skip


pushgateway_option = click.option(
    "--pushgateway", envvar="PUSHGATEWAY_URL",
    help="Push the result to this Prometheus Pushgateway (env PUSHGATEWAY_URL).",
)  # fmt: skip


def load(path: Path | None, **overrides: dict[str, Any]) -> Config:
    """The config, or exit 2 with the setting that is wrong."""
    try:
        return load_config(path, **overrides)
    except ConfigError as exc:
        click.echo(f"passentry-bridge: configuration error: {one_line(str(exc))}", err=True)
        sys.exit(2)


# A command would write for a source that a live member of the group owns.
EXIT_OWNED = 3


def refuse_if_owned(config: Config, source_ids: list[str], *, force: bool, doing: str) -> None:
    """Exit 3, naming the owner, when a live member owns one of these sources: ``doing``
    (writing as the source) would fence it. ``force`` says so and goes on."""
    from bridge.kafka.access import KafkaAccess
    from bridge.kafka.owners import find_owners

    br = config.bridge
    conf = KafkaAccess.for_command(config.kafka).conf()
    owners = find_owners(conf, br.group_id, br.coordination_topic, source_ids)
    for source_id in source_ids:
        owner = owners.owner(source_id)
        if owner is None:
            continue
        if force:
            click.echo(
                f"passentry-bridge: --force: fencing the live bridge of source {source_id}"
                f" ({owner}); it restarts and resumes from its checkpoint",
                err=True,
            )
            continue
        click.echo(
            f"passentry-bridge: source {source_id} is owned by a live bridge, {owner} in"
            f" consumer group {br.group_id}: {doing} would fence it. Stop that bridge first,"
            " or pass --force to fence it (it restarts and resumes from its checkpoint).",
            err=True,
        )
        sys.exit(EXIT_OWNED)


def stop_on_signals(exit_code: int) -> threading.Event:
    """SIGTERM and SIGINT set the returned event and leave with ``exit_code``, through the
    finally blocks, so a transaction a writing command holds open is aborted, not left to
    the broker's timeout."""
    stop = threading.Event()

    def interrupted(signum: int, frame: FrameType | None) -> None:
        stop.set()
        raise SystemExit(exit_code)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    return stop


def pick_source(config: Config, source_id: str | None) -> str:
    """``--source``, which must name a source of the config; without it, the config's one
    source (a usage error when it lists several)."""
    ids = [s.id for s in config.sources]
    if source_id is None:
        if len(ids) != 1:
            raise click.UsageError(f"--source is needed: the config lists sources {', '.join(ids)}")
        return ids[0]
    if source_id not in ids:
        raise click.BadParameter(
            f"{source_id!r} is not a source of the config ({', '.join(ids)})",
            param_hint="--source",
        )
    return source_id


def config_file_option(help_text: str) -> Callable[[FC], FC]:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help=help_text,
    )


config_option = config_file_option(
    "YAML file with passentry/kafka/bridge sections and optionally a sources list;"
    " environment variables win over its sections."
)
