"""PassEntry's side: the API answers the source's token and filters, and a webhook
subscription sends ``passScanned`` to the bridge."""

from __future__ import annotations

import httpx

from bridge.checks.result import CheckResult
from bridge.config import Config, SourceConfig
from bridge.errors import BridgeError
from bridge.webhook.keys import signing_keys
from bridge.wiring import command_api_client

__all__ = ["check_api", "check_webhooks"]


def check_api(config: Config, source: SourceConfig) -> CheckResult:
    pe = source.passentry
    try:
        client = command_api_client(config, source)
    except BridgeError as exc:
        return CheckResult("passentry", False, str(exc))
    try:
        fetched = client.list_scans({**pe.filters.as_query(), "perPage": "1", "page": "1"})
    except BridgeError as exc:
        return CheckResult("passentry", False, f"{pe.api_url}: {exc}")
    except httpx.HTTPError as exc:
        return CheckResult("passentry", False, f"{pe.api_url}: {type(exc).__name__}")
    finally:
        client.close()
    meta = fetched.page.meta
    total = meta.total_count if meta is not None else None
    return CheckResult("passentry", True, f"{pe.api_url} answered; {total} scans match the filters")


def check_webhooks(config: Config, source: SourceConfig) -> CheckResult:
    pe, br = source.passentry, config.bridge
    if not pe.webhooks_enabled:
        return CheckResult("webhooks", True, "off (PASSENTRY_WEBHOOK_SECRET unset): polling only")
    try:
        secrets = pe.webhook_secrets()
        # As the bridge starts: every source's secret long enough, none shared.
        signing_keys(config.sources)
        source.token()
    except BridgeError as exc:
        return CheckResult("webhooks", False, str(exc))
    detail = (
        f"on: POST :{br.webhook_port}/webhooks/passentry/{source.id}, inbox"
        f" {br.webhook_topic}, {len(secrets)} secret(s) accepted"
    )
    try:
        with command_api_client(config, source) as client:
            subs = client.webhook_subscriptions()
    except BridgeError as exc:
        return CheckResult("webhooks", False, f"{detail}; cannot list subscriptions: {exc}")
    live = [
        s for s in subs if s.attributes.enabled and "passScanned" in s.attributes.subscribed_events
    ]
    if not live:
        return CheckResult(
            "webhooks",
            False,
            f"{detail}; no enabled PassEntry subscription sends passScanned"
            " (passentry-bridge webhooks register --url ...)",
        )
    urls = ", ".join(sorted(s.attributes.url for s in live))
    return CheckResult("webhooks", True, f"{detail}; passScanned is sent to {urls}")
