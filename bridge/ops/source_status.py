"""One view of each source, as ``passentry-bridge status`` prints it: who owns it, whether it
runs or fails (and why), how old its checkpoint is, how far PassEntry is ahead of it, how
many webhooks wait in its inbox, and its last audit.

Most of it is read from Kafka, where the bridge keeps its state: the consumer group (the
owner), the state topic (the checkpoint and the last audit), the inbox partition and its
group's committed position. PassEntry is asked one request per source (a count of the scans
newer than what the source has read). Whether the owner's loop runs or fails is known only
to the owner: it is asked over its ``/status`` (the host Kafka gives for the member, port
``BRIDGE_HTTP_PORT``), and where that cannot be reached the view says so.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from bridge.audit.record import AuditSummary, read_summaries
from bridge.config import Config, SourceConfig
from bridge.errors import BridgeError
from bridge.kafka.access import KafkaAccess
from bridge.kafka.acl import INBOX_GROUP_PREFIX
from bridge.kafka.checkpoint import Checkpoint, CheckpointStore, InboxPosition
from bridge.kafka.owners import Owner, Owners, find_owners
from bridge.kafka.routing import stable_partition
from bridge.ops.metrics import Metrics
from bridge.passentry.client import PassEntryClient
from bridge.passentry.ratelimit import RequestBudget
from bridge.passentry.slices import iso_millis
from bridge.uuid7 import uuid7_millis

__all__ = ["SourceStatus", "gather"]

_KAFKA_TIMEOUT_S = 10.0
_OWNER_TIMEOUT_S = 3.0
# A group moving its partitions: a source without an owner gets one within seconds.
_REBALANCING = frozenset({"preparingrebalance", "completingrebalance"})


@dataclass(slots=True)
class SourceStatus:
    """``state``: running, failing (its cycles fail; ``error`` says why), stopped (on a
    fatal error; retried while its member owns it), starting (owned, not yet running),
    standby (no owner while the group rebalances), unowned, or unknown (no group to ask)."""

    source_id: str
    state: str = "unknown"
    error: str | None = None
    owner: Owner | None = None
    group: str = ""
    checkpoint_age_s: float | None = None
    watermark: str | None = None
    watermark_created_ms: int | None = None
    # End of the last time slice the source read completely (its next poll starts there).
    polled_until_ms: int | None = None
    # Where the checkpoint says the source's webhook events continue; None from a
    # checkpoint older than positions in checkpoints (the inbox group's position holds).
    inbox_position: InboxPosition | None = None
    # Scans PassEntry holds that are newer than what the source has read.
    behind: int | None = None
    behind_error: str | None = None
    # Webhook events in the source's inbox partition after its committed position; None
    # when webhooks are off for the source.
    inbox_lag: int | None = None
    last_audit: AuditSummary | None = None
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        audit = self.last_audit
        return {
            "sourceId": self.source_id,
            "state": self.state,
            "error": self.error,
            "owner": None
            if self.owner is None
            else {
                "clientId": self.owner.client_id,
                "host": self.owner.host,
                "memberId": self.owner.member_id,
            },
            "group": self.group,
            "checkpointAgeSeconds": self.checkpoint_age_s,
            "watermark": self.watermark,
            "watermarkCreatedAt": _iso(self.watermark_created_ms),
            "polledUntil": _iso(self.polled_until_ms),
            "behindScans": self.behind,
            "behindError": self.behind_error,
            "inboxLag": self.inbox_lag,
            "lastAudit": None
            if audit is None
            else {
                "command": audit.command,
                "since": iso_millis(audit.since_ms),
                "until": iso_millis(audit.until_ms),
                "finishedAt": iso_millis(audit.finished_at_ms),
                "missing": audit.missing,
                "duplicated": audit.duplicated,
                "unknown": audit.unknown,
                "deadLettered": audit.dead_lettered,
                "repaired": audit.repaired,
            },
            "notes": self.notes,
        }


def gather(config: Config, source_ids: list[str]) -> list[SourceStatus]:
    """The status of each source. Raises BridgeError when Kafka cannot be read at all."""
    access = KafkaAccess.for_command(config.kafka)
    conf = access.conf()
    br = config.bridge
    owners = find_owners(conf, br.group_id, br.coordination_topic, source_ids, _KAFKA_TIMEOUT_S)
    if not owners.known and br.group_id:
        # A refused login or certificate looks like a broker that is down: say which.
        raise access.failure() or BridgeError(owners.why)
    found = {sid: SourceStatus(sid, group=br.group_id) for sid in source_ids}
    for sid, status in found.items():
        _ownership(status, owners)
        checkpoint = CheckpointStore(conf, br.state_topic, sid).read(
            _KAFKA_TIMEOUT_S, topic_may_be_missing=True
        )
        _checkpoint(status, checkpoint)
    for sid, audit in read_summaries(conf, br.state_topic, source_ids, _KAFKA_TIMEOUT_S).items():
        found[sid].last_audit = audit
    _inbox_lags(config, [config.source(sid) for sid in source_ids], found)
    _ask_owners(config, found)
    with ThreadPoolExecutor(max_workers=4) as pool:
        # One request per source; they may well share PassEntry's budget with a live bridge.
        list(pool.map(lambda s: _behind(config.source(s.source_id), s), found.values()))
    return [found[sid] for sid in source_ids]


def _ownership(status: SourceStatus, owners: Owners) -> None:
    if not owners.known:
        status.notes.append(f"owner unknown: {owners.why}")
        return
    owner = owners.owner(status.source_id)
    status.owner = owner
    if owner is not None:
        status.state = "running"
    elif owners.state in _REBALANCING:
        status.state = "standby"
    else:
        status.state = "unowned"
        if owners.members:
            status.notes.append(
                f"the group has {owners.members} member(s) ({owners.state}), none runs it: do"
                " they list this source?"
            )


def _checkpoint(status: SourceStatus, checkpoint: Checkpoint | None) -> None:
    if checkpoint is None:
        status.notes.append("no checkpoint yet: the source never committed")
        return
    if checkpoint.updated_at_ms:
        status.checkpoint_age_s = round(time.time() - checkpoint.updated_at_ms / 1000, 1)
    status.watermark = checkpoint.watermark
    if checkpoint.watermark is not None:
        status.watermark_created_ms = uuid7_millis(uuid.UUID(checkpoint.watermark))
    status.polled_until_ms = checkpoint.polled_until_ms
    status.inbox_position = checkpoint.inbox


def _inbox_lags(
    config: Config, sources: list[SourceConfig], found: dict[str, SourceStatus]
) -> None:
    """Events after each source's committed position in its partition of the inbox: the
    checkpoint's, or (a checkpoint older than positions in checkpoints) the inbox group's."""
    pushed = [s for s in sources if s.passentry.webhooks_enabled]
    if not pushed:
        return
    topic = config.bridge.webhook_topic
    conf = KafkaAccess.for_command(config.kafka).conf()
    for source in pushed:
        status = found[source.id]
        consumer = Consumer(
            {**conf, "group.id": INBOX_GROUP_PREFIX + source.id, "enable.auto.commit": False}
        )
        try:
            meta = consumer.list_topics(topic, timeout=_KAFKA_TIMEOUT_S).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                status.inbox_lag = 0
                continue
            tp = TopicPartition(topic, stable_partition(source.id, len(meta.partitions)))
            low, high = consumer.get_watermark_offsets(tp, timeout=_KAFKA_TIMEOUT_S)
            position = status.inbox_position
            if position is not None:
                committed = position.offset
            else:
                committed = consumer.committed([tp], timeout=_KAFKA_TIMEOUT_S)[0].offset
            status.inbox_lag = max(0, high - (committed if committed >= 0 else low))
        except KafkaException as exc:
            status.notes.append(f"inbox lag unknown: {exc.args[0].str()}")
        finally:
            consumer.close()


def _ask_owners(config: Config, found: dict[str, SourceStatus]) -> None:
    """Each owner's own word on the sources it runs: running, failing (why), stopped."""
    hosts = {s.owner.host for s in found.values() if s.owner is not None}
    port = config.bridge.http_port
    answers: dict[str, dict[str, Any] | str] = {}
    for host in hosts:
        url = f"http://{host}:{port}/status"
        try:
            with urllib.request.urlopen(url, timeout=_OWNER_TIMEOUT_S) as resp:
                answers[host] = json.load(resp).get("sources", {})
        except (OSError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            answers[host] = f"{url} did not answer ({reason})"
    for status in found.values():
        if status.owner is None:
            continue
        answer = answers[status.owner.host]
        if isinstance(answer, str):
            status.notes.append(f"whether it runs or fails is unknown: {answer}")
            continue
        mine = answer.get(status.source_id)
        if mine is None:
            status.state = "starting"
            continue
        status.state = str(mine.get("state", "running"))
        status.error = mine.get("error")


def _behind(source: SourceConfig, status: SourceStatus) -> None:
    """How many scans PassEntry holds after what the source has read: one request."""
    pe = source.passentry
    if status.polled_until_ms is not None:
        after = status.polled_until_ms - 1  # createdAfter is exclusive
    elif status.watermark_created_ms is not None:
        after = status.watermark_created_ms
    else:
        return
    try:
        client = PassEntryClient(
            str(pe.api_url), source.token(), metrics=Metrics(), budget=RequestBudget(1.0),
            timeout_s=min(pe.timeout_s, 10.0), retry_deadline_s=0.0,
            names=source.setting_names(),
        )  # fmt: skip
    except BridgeError as exc:
        status.behind_error = str(exc)
        return
    try:
        query = {**pe.filters.as_query(), "createdAfter": iso_millis(after), "perPage": "1"}
        meta = client.list_scans({**query, "page": "1"}).page.meta
        status.behind = meta.total_count if meta is not None else None
    except BridgeError as exc:
        status.behind_error = str(exc)
    finally:
        client.close()


def _iso(ms: int | None) -> str | None:
    return None if ms is None else iso_millis(ms)
