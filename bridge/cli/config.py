"""``passentry-bridge config show|lint``: the configuration as the bridge sees it, and a
YAML file checked offline (as ``vector validate`` and ``redpanda connect lint`` do)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import msgspec
import yaml

from bridge.cli._common import config_option, load, pick_source
from bridge.config import Config, SourceConfig, load_file
from bridge.config.convert import MASK, Secret
from bridge.errors import ConfigError

__all__ = ["config", "effective"]

# librdkafka properties whose values are credentials (KAFKA_PROPERTIES is free-form).
_SECRET_PROPERTY = re.compile(r"password|secret|token|credentials|\.key$", re.IGNORECASE)


@click.group("config")
def config() -> None:
    """Show the effective configuration, or check a YAML file."""


@config.command("show")
@config_option
@click.option(
    "--source",
    "source_id",
    help="Only this source, with all its PassEntry settings (not only those it sets itself).",
)
def show(config_path: Path | None, source_id: str | None) -> None:
    """Print the configuration the bridge would run with: the environment over the file,
    defaults filled in, secrets masked. YAML, in the file's own shape."""
    loaded = load(config_path)
    if source_id is not None:
        source = loaded.source(pick_source(loaded, source_id))
        click.echo(_yaml({"sources": [_source(loaded, source, full=True)]}), nl=False)
        return
    click.echo(_yaml(effective(loaded)), nl=False)


@config.command("lint")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def lint(files: tuple[Path, ...]) -> None:
    """Check YAML files offline, as the bridge would read them, without the environment:
    sections, keys (misspelt ones get the nearest), values and the sources list. Files a
    setting names (token files, certificates) are not opened. Exit 2 at the first bad file."""
    for path in files:
        try:
            found = load_file(path)
        except ConfigError as exc:
            message = str(exc).removeprefix("--config: ")
            raise _BadFile(message if str(path) in message else f"{path}: {message}") from None
        ids = ", ".join(s.id for s in found.sources)
        click.echo(f"{path}: ok ({len(found.sources)} source(s): {ids})")


class _BadFile(click.ClickException):
    # The file is the user's input: a usage error.
    exit_code = 2


def effective(loaded: Config) -> dict[str, Any]:
    out: dict[str, Any] = {
        "passentry": _dump(loaded.passentry),
        "kafka": _dump(loaded.kafka),
        "bridge": _dump(loaded.bridge),
        "schema_registry": _dump(loaded.schema_registry),
    }
    properties = out["kafka"].get("properties") or {}
    out["kafka"]["properties"] = {
        name: MASK if _SECRET_PROPERTY.search(name) else value for name, value in properties.items()
    }
    out["sources"] = [_source(loaded, s, full=False) for s in loaded.sources]
    return out


def _source(loaded: Config, source: SourceConfig, *, full: bool) -> dict[str, Any]:
    """A source's entry: its id, topics, and its PassEntry settings (those it differs in
    from the shared ones, or all of them)."""
    mine = _dump(source.passentry)
    if not full:
        # Compared unmasked: two different tokens both print as the mask.
        own = msgspec.structs.asdict(source.passentry)
        shared = msgspec.structs.asdict(loaded.passentry)
        mine = {k: v for k, v in mine.items() if shared.get(k) != own.get(k)}
    return {
        "id": source.id,
        "topic": source.scans_topic,
        "topic_template": source.topic_template,
        **mine,
    }


def _dump(settings: msgspec.Struct) -> dict[str, Any]:
    dumped: dict[str, Any] = msgspec.to_builtins(settings, enc_hook=_text)
    return dumped


def _text(value: object) -> str:
    """A secret as the mask, a path as itself."""
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, Path):
        return str(value)
    raise NotImplementedError(f"cannot show {type(value).__name__}")


def _yaml(data: dict[str, Any]) -> str:
    header = (
        "# the effective configuration: environment over --config, defaults filled in,"
        " secrets masked\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
