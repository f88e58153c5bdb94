"""``passentry-bridge schema show|check|register|diff|asyncapi``: the published Avro schema,
the lock-file and compatibility gate (``bridge.avro.lock``, ``bridge.avro.compat``), the
registry, and the AsyncAPI document of the topics (``bridge.contract.asyncapi``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click

from bridge.avro.compat import (
    Mode,
    check_pair,
    check_versions,
    describe_type,
    field_diff,
    walk_fields,
)
from bridge.avro.lock import bundled_schemas, lock_problems, read_lock
from bridge.avro.registry import RegistryFramer, canonical
from bridge.avro.schemas import SCAN_SCHEMA_NAME, UnknownSchemaVersionError, VersionedSchema, load
from bridge.cli._common import config_file_option
from bridge.cli._common import load as load_bridge_config
from bridge.config import load_registry_settings
from bridge.errors import BridgeError, ConfigError, RegistryRequestError

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

__all__ = ["asyncapi", "field_table", "schema"]


def field_table(definition: dict[str, Any]) -> str:
    """A Markdown table of every field path with its type, default and doc."""
    rows = ["| Field | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for path, field in walk_fields(definition):
        default = f"`{json.dumps(field['default'])}`" if "default" in field else ""
        doc = " ".join(str(field.get("doc", "")).split()).replace("|", "\\|")
        rows.append(f"| `{path}` | {describe_type(field['type'])} | {default} | {doc} |")
    return "\n".join(rows) + "\n"


def _framer(ctx: click.Context, config_path: Path | None) -> RegistryFramer | None:
    settings = load_registry_settings(config_path)
    if not settings.enabled:
        return None
    # Tests hand in a client (an in-memory mock:// registry is private to its instance).
    client: SchemaRegistryClient | None = (ctx.obj or {}).get("registry_client")
    return RegistryFramer(settings, load(SCAN_SCHEMA_NAME), client)


def _fail(message: str) -> None:
    click.echo(f"passentry-bridge: {message}", err=True)
    sys.exit(1)


config_option = config_file_option(
    "YAML file; its schema_registry section is read (SCHEMA_REGISTRY_* env wins)."
)
topic_option = click.option(
    "--topic",
    "topics",
    multiple=True,
    envvar="BRIDGE_SCANS_TOPIC",
    default=["passentry.scans"],
    show_default=True,
    help="Topic whose registry subject to use (repeatable).",
)
mode_option = click.option(
    "--mode",
    type=click.Choice(["BACKWARD", "FORWARD", "FULL"]),
    default="FULL",
    show_default=True,
    help="Compatibility required between consecutive versions.",
)


@click.group("schema")
def schema() -> None:
    """Inspect, check and register the published Avro schema."""


@schema.command("show")
@click.option("--version", "version", type=int, help="Schema version (default: latest).")
@click.option("--fingerprint", is_flag=True, help="Print the CRC-64-AVRO fingerprint only.")
@click.option("--fields", is_flag=True, help="Print a Markdown table of every field.")
def show(version: int | None, fingerprint: bool, fields: bool) -> None:
    """Print the schema the bridge publishes with."""
    s = _bundled(version, "--version")
    if fingerprint:
        click.echo(s.fingerprint.hex())
    elif fields:
        click.echo(field_table(s.definition), nl=False)
    else:
        click.echo(json.dumps(s.definition, indent=2))


@schema.command("check")
@config_option
@mode_option
@topic_option
@click.option(
    "--schemas-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of <name>/v<N>.avsc and schemas.lock (default: the bundled schemas).",
)
@click.pass_context
def check(
    ctx: click.Context,
    config_path: Path | None,
    mode: Mode,
    topics: tuple[str, ...],
    schemas_dir: Path | None,
) -> None:
    """Check the lock file, the compatibility of consecutive versions, and (with
    SCHEMA_REGISTRY_URL set) the local schema against the registry. Exit 1 on a failure."""
    root = schemas_dir or bundled_schemas()
    results: list[tuple[bool, str, str]] = []
    problems = lock_problems(root)
    results += [(False, "lock", p) for p in problems]
    if not problems:
        results.append((True, "lock", f"{len(read_lock(root))} released version(s) unchanged"))
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        found = check_versions(folder, mode)
        results += [(False, "compat", p) for p in found]
        if not found:
            results.append((True, "compat", f"{folder.name}: consecutive versions are {mode}"))
    try:
        framer = _framer(ctx, config_path)
        if framer is not None:
            results += [_against_registry(framer, t, mode) for t in dict.fromkeys(topics)]
    except BridgeError as exc:
        results.append((False, "registry", str(exc)))
    for ok, name, detail in results:
        click.echo(f"{'ok  ' if ok else 'FAIL'}  {name:<9} {detail}")
    sys.exit(0 if all(ok for ok, _, _ in results) else 1)


def _against_registry(framer: RegistryFramer, topic: str, mode: Mode) -> tuple[bool, str, str]:
    subject = framer.subject(topic)
    local = framer.schema
    if framer.settings.mode != "auto_register":
        # Exactly what the bridge does at start-up: the registered schema must be ours.
        framer.check_startup([topic])
        return True, "registry", f"{subject}: the registered schema is local v{local.version}"
    try:
        found = framer.registered(subject, "latest")
    except RegistryRequestError as exc:
        if exc.status != 404:
            raise
        return True, "registry", f"{subject}: not registered yet; the bridge will register it"
    text = found.schema.schema_str or "{}"
    if canonical(text) == local.canonical:
        return True, "registry", f"{subject}: local v{local.version} is version {found.version}"
    problems = check_pair(json.loads(text), local.definition, mode)
    if problems:
        return (
            False,
            "registry",
            f"{subject}: local v{local.version} is not {mode}-compatible"
            + (f" with registered version {found.version}: " + "; ".join(problems)),
        )
    return (
        True,
        "registry",
        (
            f"{subject}: local v{local.version} is {mode}-compatible with registered version"
            f" {found.version}; the bridge will register it as a new version"
        ),
    )


@schema.command("register")
@config_option
@topic_option
@click.pass_context
def register(ctx: click.Context, config_path: Path | None, topics: tuple[str, ...]) -> None:
    """Register the local latest schema under the subject of each --topic; print the ids."""
    try:
        framer = _framer(ctx, config_path)
        if framer is None:
            _fail("SCHEMA_REGISTRY_URL is not set")
            return
        for subject in dict.fromkeys(framer.subject(t) for t in topics):
            click.echo(f"{subject}\t{framer.register(subject)}")
    except BridgeError as exc:
        _fail(str(exc))


@schema.command("diff")
@click.argument("old")
@click.argument("new", default="latest")
@config_option
@mode_option
@click.option("--topic", default="passentry.scans", envvar="BRIDGE_SCANS_TOPIC", show_default=True)
@click.pass_context
def diff(
    ctx: click.Context, old: str, new: str, config_path: Path | None, mode: Mode, topic: str
) -> None:
    """Field-level differences from OLD to NEW. Each is a local version (``1``, ``v1``,
    ``latest``) or the registry's version for the topic's subject (``registry`` for its
    latest, ``registry@3``)."""
    try:
        before, after = (_resolve_spec(ctx, spec, config_path, topic) for spec in (old, new))
    except BridgeError as exc:
        _fail(str(exc))
        return
    lines = field_diff(before, after) or ["no field-level differences"]
    for line in lines:
        click.echo(line)
    problems = check_pair(before, after, mode)
    click.echo(f"{mode}: " + ("compatible" if not problems else "NOT compatible"))
    for problem in problems:
        click.echo(f"  {problem}")


def _resolve_spec(
    ctx: click.Context, spec: str, config_path: Path | None, topic: str
) -> dict[str, Any]:
    if spec.startswith("registry"):
        framer = _framer(ctx, config_path)
        if framer is None:
            raise ConfigError(f"{spec!r} needs SCHEMA_REGISTRY_URL")
        _, _, at = spec.partition("@")
        version: int | Literal["latest"] = int(at) if at.isdigit() else "latest"
        found = framer.registered(framer.subject(topic), version)
        definition: dict[str, Any] = json.loads(found.schema.schema_str or "{}")
        return definition
    number = spec.removeprefix("v")
    if spec != "latest" and not number.isdigit():
        raise click.BadParameter(f"{spec!r}: expected N, vN, latest, registry or registry@N")
    return _bundled(None if spec == "latest" else int(number), "OLD/NEW").definition


def _bundled(version: int | None, hint: str) -> VersionedSchema:
    try:
        return load(SCAN_SCHEMA_NAME, version)
    except UnknownSchemaVersionError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None


@schema.command("asyncapi")
@config_file_option("The bridge's YAML file: its topics, Kafka and registry (env wins).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
)
def asyncapi(config_path: Path | None, output_format: str) -> None:
    """Print the AsyncAPI 3.0 document of the configured topics: channels, the key, the
    headers (CloudEvents binary mode), the Avro payload, the registry and the guarantee.
    schemas/asyncapi.yaml is this for the default configuration."""
    from bridge.contract.asyncapi import asyncapi_document, asyncapi_yaml

    config = load_bridge_config(config_path)
    schema_ = load(SCAN_SCHEMA_NAME)
    if output_format == "json":
        click.echo(json.dumps(asyncapi_document(config, schema_), indent=2))
    else:
        click.echo(asyncapi_yaml(config, schema_), nl=False)
