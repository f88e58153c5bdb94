"""Kafka's side, step by step, one row each, so that a failure names what to fix: TLS to
each bootstrap server (Python's handshake tells a wrong CA from a wrong host name, which
librdkafka does not), the login, then each permission, asked of the cluster without side
effects (the operations it authorizes on each topic and group, a validate-only create for a
missing topic, and ``init_transactions`` under ``passentry-bridge.<source id>.check``, which
the README's prefixed grant covers and no running bridge uses); then the topics' retention
and replication, and who owns each source. Secrets never appear."""

from __future__ import annotations

import itertools
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from bridge.checks.result import CheckResult
from bridge.config import Config
from bridge.kafka.access import KafkaAccess
from bridge.kafka.acl import (
    INBOX_GROUP_PREFIX,
    INBOX_GROUPS,
    RESTORE_GROUP_PREFIX,
    AclGrant,
    principal,
    topics_grant,
    transactional_id_grant,
)
from bridge.kafka.owners import Owners, find_owners
from bridge.kafka.permissions import (
    create_allowed,
    group_operations,
    init_transactional_id,
    topic_operations,
)
from bridge.kafka.producer import transactional_id
from bridge.kafka.replication import TRANSACTION_LOG, topic_durability
from bridge.kafka.retention import topic_retention
from bridge.kafka.routing import Router
from bridge.kafka.tls import tls_verdict

__all__ = ["check_kafka", "check_owners", "check_replication", "check_retention", "check_running"]

# The values a topic template's placeholders take (bridge.config checks the template).
_STATUSES = ("successful", "failed")
_SCAN_TYPES = ("nfc", "barcode")


_TIMEOUT_S = 10.0


def check_kafka(config: Config) -> list[CheckResult]:
    """TLS to each bootstrap server, then the login, then each permission the bridge needs,
    one row each. Nothing is created and no running bridge is fenced."""
    k = config.kafka
    rows: list[CheckResult] = []
    if k.security_protocol in ("SSL", "SASL_SSL"):
        for address in k.bootstrap_servers.split(","):
            verdict = tls_verdict(address, k)
            rows.append(CheckResult("kafka tls", verdict.ok, f"{address}: {verdict.detail}"))
    connected, admin = _connect(config)
    rows.append(connected)
    if admin is None:
        return rows
    who = principal(k.librdkafka())
    rows += _check_topics(config, admin, who)
    rows += _check_groups(config, admin, who)
    rows += _check_transactional_ids(config, who)
    return rows


def _check_transactional_ids(config: Config, who: str) -> list[CheckResult]:
    """Each source's id, tried under ``<id>.check``: the same grant covers it, and a running
    bridge of the source is not fenced."""
    conf = KafkaAccess(config.kafka).conf()
    rows = []
    for source in config.sources:
        txn_id = transactional_id(source.id)
        probe = f"{txn_id}.check"
        err = init_transactional_id(conf, probe, _TIMEOUT_S)
        if err is None:
            detail = f"{txn_id}: {who} may use it (init_transactions as {probe})"
            rows.append(CheckResult("txn id", True, detail))
        elif err.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
            grant = transactional_id_grant(txn_id)
            detail = f"{txn_id}: {who} may not use it ({err.name()}): grant it {grant}"
            rows.append(CheckResult("txn id", False, detail))
        else:
            rows.append(CheckResult("txn id", False, f"{txn_id}: init_transactions: {err.str()}"))
    return rows


def _connect(config: Config) -> tuple[CheckResult, AdminClient | None]:
    """Log in and fetch the metadata, stopping at the first refusal rather than waiting for
    a timeout (librdkafka reports refusals only through ``error_cb``)."""
    k = config.kafka
    access = KafkaAccess.for_command(k)
    try:
        admin = AdminClient(access.conf())
    except KafkaException as exc:
        return CheckResult("kafka", False, f"client settings (KAFKA_*): {exc.args[0].str()}"), None
    deadline = time.monotonic() + _TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        admin.poll(0.1)  # serves error_cb
        refused = access.failure()
        if refused is not None:
            return CheckResult("kafka", False, str(refused)), None
        try:
            metadata = admin.list_topics(timeout=0.5)
        except KafkaException as exc:
            last = exc.args[0].str()
            continue
        who = principal(k.librdkafka())
        how = f"{who} ({k.sasl_mechanism})" if k.sasl_mechanism else who
        detail = f"{k.bootstrap_servers}: connected as {how} over {k.security_protocol}"
        return CheckResult("kafka", True, f"{detail}; {len(metadata.brokers)} broker(s)"), admin
    return (
        CheckResult("kafka", False, f"{k.bootstrap_servers}: {last} within {_TIMEOUT_S:.0f}s"),
        None,
    )


_READ_WRITE = ("Write", "Read", "Describe")


def _needed_topics(config: Config) -> dict[str, tuple[str, ...]]:
    """Each topic the bridge uses, with the operations it needs there."""
    br = config.bridge
    needs: dict[str, tuple[str, ...]] = {}
    for source in config.sources:
        router = Router(source.scans_topic, source.topic_template)
        for status, scan_type in itertools.product(_STATUSES, _SCAN_TYPES):
            needs[router.topic(status, scan_type)] = _READ_WRITE
    needs[br.dlq_topic] = _READ_WRITE
    needs[br.state_topic] = _READ_WRITE
    if br.group_id:
        needs[br.coordination_topic] = ("Read", "Describe")
    if any(s.passentry.webhooks_enabled for s in config.sources):
        needs[br.webhook_topic] = _READ_WRITE
    return needs


def _check_topics(config: Config, admin: AdminClient, who: str) -> list[CheckResult]:
    needs = _needed_topics(config)
    found = topic_operations(admin, needs, _TIMEOUT_S)
    absent = [t for t, got in found.items() if isinstance(got, KafkaError)]
    creatable = create_allowed(admin, absent, 1, _TIMEOUT_S) if config.bridge.create_topics else {}
    rows = []
    for topic, ops in needs.items():
        got = found[topic]
        grant = topics_grant([topic], *ops)
        if isinstance(got, frozenset):
            missing = [op for op in ops if op not in got]
            if missing:
                grant = topics_grant([topic], *missing)
                detail = f"{topic}: {who} may not {', '.join(missing)}: grant it {grant}"
                rows.append(CheckResult("topic", False, detail))
            else:
                rows.append(CheckResult("topic", True, f"{topic}: {', '.join(ops)} granted"))
            continue
        rows.append(_absent_topic(config, topic, got, creatable.get(topic, got), grant, who))
    return rows


def _absent_topic(
    config: Config,
    topic: str,
    described: KafkaError,
    created: KafkaError | None,
    grant: AclGrant,
    who: str,
) -> CheckResult:
    """A topic that could not be described: missing, or hidden from the principal."""
    hidden = described.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    if described.code() not in (
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
    ):
        return CheckResult("topic", False, f"{topic}: cannot describe it: {described.str()}")
    if not config.bridge.create_topics:
        if hidden:
            detail = f"{topic}: missing, or hidden from {who}: grant it {grant}"
        else:
            detail = f"{topic}: missing and BRIDGE_CREATE_TOPICS is false: create it"
        return CheckResult("topic", False, detail)
    if created is not None and created.code() == KafkaError.TOPIC_ALREADY_EXISTS:
        return CheckResult(
            "topic", False, f"{topic}: exists, but is hidden from {who}: grant it {grant}"
        )
    if created is not None:
        if hidden:
            grant = topics_grant([topic], "Create", *grant.operations)
            detail = (
                f"{topic}: missing, or hidden from {who}, who may not create it: grant it {grant}"
            )
        else:
            grant = topics_grant([topic], "Create")
            detail = f"{topic}: missing, and {who} may not create it: grant it {grant}"
        return CheckResult("topic", False, detail)
    if hidden:
        # Create is granted, but not what the bridge then does with the topic.
        detail = f"{topic}: missing; {who} may create it but not use it: grant it {grant}"
        return CheckResult("topic", False, detail)
    return CheckResult("topic", True, f"{topic}: missing; will be created (Create granted)")


def _check_groups(config: Config, admin: AdminClient, who: str) -> list[CheckResult]:
    br = config.bridge
    # group probed -> (what it stands for, the grant that covers it)
    needs: dict[str, tuple[str, AclGrant]] = {
        f"{RESTORE_GROUP_PREFIX}check": (
            f"{RESTORE_GROUP_PREFIX}*",
            AclGrant("group", (RESTORE_GROUP_PREFIX,), ("Describe",), prefixed=True),
        )
    }
    if br.group_id:
        needs[br.group_id] = (br.group_id, AclGrant("group", (br.group_id,), ("Read", "Describe")))
    for source in config.sources:
        if source.passentry.webhooks_enabled:
            group = INBOX_GROUP_PREFIX + source.id
            needs[group] = (group, INBOX_GROUPS)
    found = group_operations(admin, needs, _TIMEOUT_S)
    rows = []
    for group, (label, grant) in needs.items():
        got = found[group]
        if isinstance(got, frozenset):
            missing = [op for op in grant.operations if op not in got]
            if not missing:
                rows.append(
                    CheckResult("group", True, f"{label}: {', '.join(grant.operations)} granted")
                )
                continue
        elif got.code() != KafkaError.GROUP_AUTHORIZATION_FAILED:
            rows.append(CheckResult("group", False, f"{label}: cannot describe it: {got.str()}"))
            continue
        rows.append(CheckResult("group", False, f"{label}: {who} may not use it: grant it {grant}"))
    return rows


def check_running(config: Config) -> CheckResult:
    """Running replicas own every source: the group is stable and, for each source, one
    member is assigned the coordination partition the source hashes to (as the bridge's own
    ``Membership`` maps them)."""
    br = config.bridge
    if not br.group_id:
        return CheckResult(
            "running", False, "no consumer group (BRIDGE_GROUP_ID is empty): cannot see replicas"
        )
    owners = _owners(config)
    if not owners.known:
        return CheckResult("running", False, owners.why)
    if owners.state == "none":
        return CheckResult(
            "running", False, f"no coordination topic {br.coordination_topic}: no replica ran"
        )
    unowned = [sid for sid, owner in owners.by_source.items() if owner is None]
    detail = f"{br.group_id}: {owners.state}, {owners.members} member(s)"
    if not unowned:
        detail += "; " + ", ".join(
            f"{sid} on {owner.host}" for sid, owner in owners.by_source.items() if owner
        )
    else:
        detail += f"; no owner for {', '.join(unowned)}"
    return CheckResult("running", owners.state == "stable" and not unowned, detail)


def check_owners(config: Config) -> list[CheckResult]:
    """Who writes for each source now: informative (a standby deployment has no owner), and
    what ``run --once``, ``state reset`` and ``backfill`` refuse to fence."""
    owners = _owners(config)
    if not owners.known:
        return [CheckResult("owner", True, f"unknown: {owners.why}")]
    rows = []
    for sid, owner in owners.by_source.items():
        detail = f"{sid}: {owner}" if owner else f"{sid}: no live member owns it"
        rows.append(CheckResult("owner", True, detail))
    return rows


def check_retention(config: Config) -> list[CheckResult]:
    """How long the topics keep what the bridge publishes (counted from publication, so a
    backfill of old scans is kept as long); a compacted scans topic or DLQ would keep one
    record per reader, and fails."""
    topics = [s.scans_topic for s in config.sources if s.topic_template is None]
    topics = [*dict.fromkeys([*topics, config.bridge.dlq_topic])]
    rows = []
    for found in topic_retention(KafkaAccess.for_command(config.kafka).conf(), topics, _TIMEOUT_S):
        detail = found.describe()
        if found.compacted:
            detail += ": one scan per reader would be kept; set cleanup.policy=delete"
        rows.append(CheckResult("retention", not found.compacted, detail))
    return rows


def check_replication(config: Config) -> list[CheckResult]:
    """Whether each topic the bridge writes, and the transaction log, keeps exactly once
    through the loss of a broker (``bridge.kafka.replication``): a warning where it does not,
    since a single broker is fine for trying the bridge out; a failure where Kafka would take
    no write at all. (Topics named by a template are many, and not known in advance.)"""
    br = config.bridge
    topics = [s.scans_topic for s in config.sources if s.topic_template is None]
    topics += [br.dlq_topic, br.state_topic]
    if any(s.passentry.webhooks_enabled for s in config.sources):
        topics.append(br.webhook_topic)
    topics = [*dict.fromkeys(topics), TRANSACTION_LOG]
    rows = []
    conf = KafkaAccess.for_command(config.kafka).conf()
    for found in topic_durability(conf, topics, _TIMEOUT_S):
        if found.missing and found.topic == TRANSACTION_LOG:
            continue  # made by the first transactional producer
        detail = found.describe()
        if found.missing:
            detail += (
                f": the bridge makes it with BRIDGE_TOPIC_REPLICATION_FACTOR"
                f" ({br.topic_replication_factor}; -1: the broker's default) replicas and the"
                " broker's min.insync.replicas"
            )
        ok = found.refused() is None
        rows.append(CheckResult("replication", ok, detail, warning=ok and bool(found.risks())))
    return rows


def _owners(config: Config) -> Owners:
    br = config.bridge
    return find_owners(
        KafkaAccess.for_command(config.kafka).conf(), br.group_id, br.coordination_topic,
        [s.id for s in config.sources], _TIMEOUT_S,
    )  # fmt: skip
