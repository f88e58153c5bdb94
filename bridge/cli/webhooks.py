"""``passentry-bridge webhooks register|list|delete``: PassEntry's webhook subscriptions,
with the token of the source they belong to (each source has its own subscription)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from bridge.cli._common import config_option, load, pick_source
from bridge.config import Config
from bridge.errors import BridgeError
from bridge.passentry.client import PassEntryClient
from bridge.passentry.models import WebhookSubscription
from bridge.wiring import command_api_client

__all__ = ["webhooks"]

EVENT = "passScanned"


@click.group()
def webhooks() -> None:
    """PassEntry webhook subscriptions: the push path of the bridge."""


_SOURCE = click.option(
    "--source",
    "source_id",
    help="The source whose token (and API URL) to use. Default: the one source of the config.",
)


def _client(config: Config, source_id: str | None) -> PassEntryClient:
    return command_api_client(config, config.source(pick_source(config, source_id)))


def _fail(exc: BridgeError) -> None:
    click.echo(f"passentry-bridge: {exc}", err=True)
    sys.exit(1)


@webhooks.command("register")
@config_option
@_SOURCE
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
@click.option(
    "--rotate-secret",
    is_flag=True,
    help="For a subscription that exists already: have PassEntry make a new secret (the old"
    " one stops working at once) and hand it over like a new one's.",
)
def register(
    config_path: Path | None, source_id: str | None, url: str, entity_id: str | None,
    secret_file: Path | None, rotate_secret: bool,
) -> None:  # fmt: skip
    """Create a passScanned subscription and say where to keep its secret. A subscription
    for the URL that exists already is updated to send passScanned (enabled); its secret is
    not shown again unless --rotate-secret."""
    config = load(config_path)
    try:
        with _client(config, source_id) as client:
            existing = [s for s in client.webhook_subscriptions() if s.attributes.url == url]
            if existing:
                sub = _update(client, existing[0], rotate_secret)
            else:
                sub = client.create_webhook_subscription(url, [EVENT], entity_id)
                attrs = sub.attributes
                scope = f"{attrs.scope_type or 'organisation'} {attrs.scope_name or ''}".strip()
                click.echo(f"created subscription {sub.id} ({scope}): {EVENT} -> {url}", err=True)
    except BridgeError as exc:
        _fail(exc)
        return
    if existing and not rotate_secret:
        click.echo(
            f"its secret is the one PassEntry gave when it was created; to get a new one:"
            f" passentry-bridge webhooks register --url {url} --rotate-secret"
            + (f" --secret-file {secret_file}" if secret_file else ""),
            err=True,
        )
        return
    _hand_over(sub.attributes.secret_key, secret_file)


def _update(client: PassEntryClient, sub: WebhookSubscription, rotate: bool) -> WebhookSubscription:
    attrs = sub.attributes
    events = attrs.subscribed_events
    if attrs.enabled and EVENT in events:
        click.echo(f"subscription {sub.id} sends {EVENT} to {attrs.url} already", err=True)
    else:
        sub = client.update_webhook_subscription(
            sub.id, enabled=True, events=[*events, EVENT] if EVENT not in events else events
        )
        click.echo(
            f"updated subscription {sub.id}: enabled, sends {EVENT} to {attrs.url}", err=True
        )
    if rotate:
        sub = client.rotate_webhook_secret(sub.id)
        click.echo(
            f"rotated the secret of subscription {sub.id}: the old one no longer works", err=True
        )
    return sub


def _hand_over(secret: str | None, secret_file: Path | None) -> None:
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
@_SOURCE
def list_subscriptions(config_path: Path | None, source_id: str | None) -> None:
    """The subscriptions the source's API token can see (secrets are never shown)."""
    config = load(config_path)
    try:
        with _client(config, source_id) as client:
            found = client.webhook_subscriptions()
    except BridgeError as exc:
        _fail(exc)
        return
    for sub in found:
        a = sub.attributes
        state = "enabled " if a.enabled else "disabled"
        click.echo(f"{sub.id}  {state}  {','.join(a.subscribed_events):<24} {a.url}")


@webhooks.command("delete")
@config_option
@_SOURCE
@click.argument("target")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(config_path: Path | None, source_id: str | None, target: str, yes: bool) -> None:
    """Delete the subscription TARGET: its id, or its URL. PassEntry stops sending to it;
    polling still publishes every scan."""
    config = load(config_path)
    try:
        with _client(config, source_id) as client:
            subs = client.webhook_subscriptions()
            match = [s for s in subs if target in (s.id, s.attributes.url)]
            if not match:
                listed = ", ".join(f"{s.id} ({s.attributes.url})" for s in subs) or "none"
                raise click.BadParameter(
                    f"no subscription has the id or URL {target!r}; there are: {listed}",
                    param_hint="TARGET",
                )
            sub = match[0]
            if not yes:
                click.confirm(f"Delete subscription {sub.id} ({sub.attributes.url})?", abort=True)
            client.delete_webhook_subscription(sub.id)
    except BridgeError as exc:
        _fail(exc)
        return
    click.echo(f"deleted subscription {sub.id} ({sub.attributes.url})", err=True)
