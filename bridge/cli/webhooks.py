"""``passentry-bridge webhooks register|list``: PassEntry's webhook subscriptions."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from bridge.cli._common import api_client, config_option, load
from bridge.errors import BridgeError

__all__ = ["webhooks"]


@click.group()
def webhooks() -> None:
    """PassEntry webhook subscriptions: the push path of the bridge."""


@webhooks.command("register")
@config_option
@click.option(
    "--url",
    required=True,
    help="Where PassEntry posts: https://<your host>/webhooks/passentry/<source id>.",
)
@click.option("--entity", "entity_id", help="Subscribe for one entity instead of the organisation.")
@click.option(
    "--secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the subscription's secret here (mode 600) instead of printing it.",
)
def register(
    config_path: Path | None, url: str, entity_id: str | None, secret_file: Path | None
) -> None:
    """Create a passScanned subscription and say where to keep its secret."""
    config = load(config_path)
    try:
        with api_client(config) as client:
            created = client.create_webhook_subscription(url, ["passScanned"], entity_id)
    except BridgeError as exc:
        click.echo(f"passentry-bridge: {exc}", err=True)
        sys.exit(1)
    attrs = created.attributes
    scope = f"{attrs.scope_type or 'organisation'} {attrs.scope_name or ''}".strip()
    click.echo(f"created subscription {created.id} ({scope}): passScanned -> {attrs.url}", err=True)
    secret = attrs.secret_key
    if not secret:
        click.echo("PassEntry returned no secret; rotate it in the dashboard.", err=True)
        sys.exit(1)
    if secret_file is not None:
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(secret + "\n")
        click.echo(
            f"the secret is in {secret_file}: give it to the bridge as"
            f" PASSENTRY_WEBHOOK_SECRET_FILE={secret_file}, or store it in the Secret the"
            " chart's webhook.existingSecret names (key webhook-secret)",
            err=True,
        )
        return
    click.echo(
        "PassEntry shows this secret only once. Store it as PASSENTRY_WEBHOOK_SECRET (or in"
        " the Secret the chart's webhook.existingSecret names, key webhook-secret):",
        err=True,
    )
    click.echo(f"PASSENTRY_WEBHOOK_SECRET={secret}")


@webhooks.command("list")
@config_option
def list_subscriptions(config_path: Path | None) -> None:
    """The subscriptions the API token can see (secrets are never shown)."""
    config = load(config_path)
    try:
        with api_client(config) as client:
            found = client.webhook_subscriptions()
    except BridgeError as exc:
        click.echo(f"passentry-bridge: {exc}", err=True)
        sys.exit(1)
    for sub in found:
        a = sub.attributes
        state = "enabled " if a.enabled else "disabled"
        click.echo(f"{sub.id}  {state}  {','.join(a.subscribed_events):<24} {a.url}")
