"""``passentry-bridge check``: is the config valid, does the API answer, does Kafka? With
``--running``, also: do running replicas own every source (the chart's ``helm test``)?"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx
from confluent_kafka import ConsumerGroupState, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from bridge.cli._common import api_client, config_option, load
from bridge.config import Config, SourceConfig
from bridge.errors import BridgeError
from bridge.kafka.routing import stable_partition

__all__ = ["CheckResult", "check", "run_checks"]

_TIMEOUT_S = 10
# Answers of a group coordinator that is still being set up (the first group on a young
# cluster: its offsets topic is being made) or moving: ask again.
_COORDINATOR_MOVING = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


@click.command()
@config_option
@click.option(
    "--running",
    is_flag=True,
    help="Also require running replicas: the consumer group (BRIDGE_GROUP_ID) is stable and "
    "one of its members owns each source. For a deployment's readiness, e.g. `helm test`.",
)
def check(config_path: Path | None, running: bool) -> None:
    """Validate the config, then reach the PassEntry API and Kafka; print a verdict for each."""
    results = run_checks(load(config_path), running=running)
    for result in results:
        click.echo(f"{'ok  ' if result.ok else 'FAIL'}  {result.name:<10} {result.detail}")
    sys.exit(0 if all(r.ok for r in results) else 1)


def run_checks(config: Config, *, running: bool = False) -> list[CheckResult]:
    br = config.bridge
    several = len(config.sources) > 1
    if several:
        ids = ", ".join(s.id for s in config.sources)
        about = f"{len(config.sources)} sources ({ids}), dlq {br.dlq_topic}"
    else:
        (source,) = config.sources
        about = f"source {source.id}, topic {_topic(source)}, dlq {br.dlq_topic}"
    results = [CheckResult("config", True, about)]
    for source in config.sources:
        results.append(_named(_check_api(config, source), source, several))
    results.append(_check_kafka(config))
    for source in config.sources:
        results.append(_named(_check_webhooks(config, source), source, several))
    if running:
        results.append(_check_group(config))
    return results


def _topic(source: SourceConfig) -> str:
    return source.topic_template or source.scans_topic


def _named(result: CheckResult, source: SourceConfig, several: bool) -> CheckResult:
    """With several sources, each per-source verdict says which source it is about."""
    if not several:
        return result
    return CheckResult(result.name, result.ok, f"[{source.id}] {result.detail}")


def _check_api(config: Config, source: SourceConfig) -> CheckResult:
    pe = source.passentry
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
        metadata = admin.list_topics(timeout=_TIMEOUT_S)
    except KafkaException as exc:
        return CheckResult("kafka", False, f"{config.kafka.bootstrap_servers}: {exc.args[0]}")
    # A template's topics come into being as scans arrive; only fixed names can be checked.
    wanted = [s.scans_topic for s in config.sources if s.topic_template is None]
    wanted = list(dict.fromkeys([*wanted, br.dlq_topic]))
    present = [t for t in wanted if t in metadata.topics]
    missing = [t for t in wanted if t not in metadata.topics]
    detail = f"{len(metadata.brokers)} broker(s); topics present: {present or 'none'}"
    if missing:
        detail += f"; missing: {missing}" + (
            " (will be created)" if br.create_topics else " (BRIDGE_CREATE_TOPICS is false)"
        )
    return CheckResult("kafka", not missing or br.create_topics, detail)


def _check_webhooks(config: Config, source: SourceConfig) -> CheckResult:
    pe, br = source.passentry, config.bridge
    if not pe.webhooks_enabled:
        return CheckResult("webhooks", True, "off (PASSENTRY_WEBHOOK_SECRET unset): polling only")
    try:
        secrets = pe.webhook_secrets()
        token = pe.token()
    except BridgeError as exc:
        return CheckResult("webhooks", False, str(exc))
    detail = (
        f"on: POST :{br.webhook_port}/webhooks/passentry/{source.id}, inbox"
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


def _describe_group(admin: AdminClient, group_id: str) -> Any:
    """The group's description; a coordinator still loading (a young cluster) or moving
    is asked again, within the check's timeout."""
    deadline = time.monotonic() + _TIMEOUT_S
    while True:
        future = admin.describe_consumer_groups([group_id], request_timeout=_TIMEOUT_S)
        try:
            return future[group_id].result()
        except KafkaException as exc:
            err = exc.args[0]
            again = err.retriable() or err.code() in _COORDINATOR_MOVING
            if not again or time.monotonic() >= deadline:
                raise
        time.sleep(0.5)


def _check_group(config: Config) -> CheckResult:
    """Running replicas own every source: the group is stable and, for each source, one
    member is assigned the coordination partition the source hashes to (as the bridge's own
    ``Membership`` maps them)."""
    br = config.bridge
    if not br.group_id:
        return CheckResult(
            "group", False, "no consumer group (BRIDGE_GROUP_ID is empty): cannot see replicas"
        )
    admin = AdminClient(config.kafka.librdkafka())
    try:
        topic = admin.list_topics(br.coordination_topic, timeout=_TIMEOUT_S).topics[
            br.coordination_topic
        ]
        if topic.error is not None or not topic.partitions:
            return CheckResult(
                "group", False, f"no coordination topic {br.coordination_topic}: no replica ran"
            )
        group = _describe_group(admin, br.group_id)
    except KafkaException as exc:
        return CheckResult("group", False, f"{br.group_id}: {exc.args[0]}")
    owners: dict[int, str] = {}
    for member in group.members:
        for tp in member.assignment.topic_partitions if member.assignment else []:
            if tp.topic == br.coordination_topic:
                owners[tp.partition] = member.host.lstrip("/") or member.member_id
    partitions = len(topic.partitions)
    owned = {s.id: owners.get(stable_partition(s.id, partitions)) for s in config.sources}
    unowned = [source_id for source_id, owner in owned.items() if owner is None]
    state = group.state.name.lower()
    detail = f"{br.group_id}: {state}, {len(group.members)} member(s)"
    if not unowned:
        detail += "; " + ", ".join(f"{sid} on {owner}" for sid, owner in owned.items())
    else:
        detail += f"; no owner for {', '.join(unowned)}"
    return CheckResult("group", group.state == ConsumerGroupState.STABLE and not unowned, detail)
