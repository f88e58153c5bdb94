"""``passentry-bridge check``: is the config valid, does the API answer, does Kafka?"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import click
import httpx
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from bridge.cli._common import api_client, config_option, load
from bridge.config import Config
from bridge.errors import BridgeError

__all__ = ["CheckResult", "check", "run_checks"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


@click.command()
@config_option
def check(config_path: Path | None) -> None:
    """Validate the config, then reach the PassEntry API and Kafka; print a verdict for each."""
    results = run_checks(load(config_path))
    for result in results:
        click.echo(f"{'ok  ' if result.ok else 'FAIL'}  {result.name:<10} {result.detail}")
    sys.exit(0 if all(r.ok for r in results) else 1)


def run_checks(config: Config) -> list[CheckResult]:
    results = [
        CheckResult(
            "config",
            True,
            f"source {config.bridge.source_id}, "
            f"topic {config.bridge.scans_topic}, dlq {config.bridge.dlq_topic}",
        )
    ]
    results.append(_check_api(config))
    results.append(_check_kafka(config))
    results.append(_check_webhooks(config))
    return results


def _check_api(config: Config) -> CheckResult:
    pe = config.passentry
    try:
        token = pe.token()
    except BridgeError as exc:
        return CheckResult("passentry", False, str(exc))
    client = api_client(config, token)
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


def _check_kafka(config: Config) -> CheckResult:
    br = config.bridge
    admin = AdminClient(config.kafka.librdkafka())
    try:
        metadata = admin.list_topics(timeout=10)
    except KafkaException as exc:
        return CheckResult("kafka", False, f"{config.kafka.bootstrap_servers}: {exc.args[0]}")
    present = [t for t in (br.scans_topic, br.dlq_topic) if t in metadata.topics]
    missing = [t for t in (br.scans_topic, br.dlq_topic) if t not in metadata.topics]
    detail = f"{len(metadata.brokers)} broker(s); topics present: {present or 'none'}"
    if missing:
        detail += f"; missing: {missing}" + (
            " (will be created)" if br.create_topics else " (BRIDGE_CREATE_TOPICS is false)"
        )
    return CheckResult("kafka", not missing or br.create_topics, detail)


def _check_webhooks(config: Config) -> CheckResult:
    pe, br = config.passentry, config.bridge
    if not pe.webhooks_enabled:
        return CheckResult("webhooks", True, "off (PASSENTRY_WEBHOOK_SECRET unset): polling only")
    try:
        secrets = pe.webhook_secrets()
        token = pe.token()
    except BridgeError as exc:
        return CheckResult("webhooks", False, str(exc))
    detail = (
        f"on: POST :{br.webhook_port}/webhooks/passentry/{br.source_id}, inbox"
        f" {br.webhook_topic}, {len(secrets)} secret(s) accepted"
    )
    try:
        with api_client(config, token) as client:
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
