"""What every command shares: loading the config, reading a time, the --config option."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from bridge.config import Config, load_config
from bridge.errors import ConfigError
from bridge.ops.metrics import Metrics
from bridge.passentry.client import PassEntryClient
from bridge.passentry.ratelimit import RequestBudget

__all__ = ["api_client", "config_option", "load", "parse_time"]


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


def load(path: Path | None, **overrides: dict[str, Any]) -> Config:
    """The config, or exit 2 with the setting that is wrong."""
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


def api_client(config: Config, token: str | None = None) -> PassEntryClient:
    """A PassEntry client for a command (not the bridge): short retries, its own metrics."""
    pe = config.passentry
    return PassEntryClient(
        str(pe.api_url),
        token or pe.token(),
        metrics=Metrics(),
        budget=RequestBudget(pe.request_budget),
        timeout_s=pe.timeout_s,
        retry_deadline_s=min(pe.retry_deadline_s, 10.0),
    )
