"""The last audit of each source, kept in Kafka for ``passentry-bridge status``.

Each audit (and backfill) that finishes writes one small record to the state topic under
the key ``audit:<source id>`` (a colon never appears in a source id, so the key cannot be
another source's checkpoint). The topic is compacted: the last result of each source stays.
A read_committed reader sees it at once (it is written outside any transaction), and no
other reader of the state topic looks at keys it does not know.

Writing it is a courtesy: an audit whose principal may not write there still reports its
result (table, JSON, Pushgateway), and says once that status will not know it.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NoReturn

import msgspec
from confluent_kafka import KafkaError, Producer, TopicPartition

from bridge.audit.report import AuditReport
from bridge.errors import KafkaRetriableError
from bridge.kafka.acl import RESTORE_GROUP_PREFIX
from bridge.kafka.readback import plan_reads, read_committed, reader

__all__ = ["AuditSummary", "audit_key", "read_summaries", "record_summary", "summary"]

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder()


class AuditSummary(msgspec.Struct, frozen=True, rename="camel"):
    source_id: str
    command: str
    since_ms: int
    until_ms: int
    finished_at_ms: int
    missing: int
    duplicated: int
    unknown: int
    dead_lettered: int
    repaired: int

    @property
    def complete(self) -> bool:
        return self.missing == 0 and self.duplicated == 0


def audit_key(source_id: str) -> bytes:
    return f"audit:{source_id}".encode()


def summary(report: AuditReport) -> AuditSummary:
    return AuditSummary(
        report.source_id,
        report.command,
        report.since_ms,
        report.until_ms,
        int(time.time() * 1000),
        report.missing,
        report.duplicated,
        report.unknown,
        report.dead_lettered,
        report.published,
    )


def record_summary(
    client_conf: dict[str, Any], state_topic: str, found: AuditSummary, timeout_s: float = 10.0
) -> bool:
    """Write the summary; False (logged) when Kafka would not take it."""
    problem: list[KafkaError] = []

    def delivered(err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            problem.append(err)

    producer = Producer({**client_conf, "enable.idempotence": True, "acks": "all"})
    producer.produce(
        state_topic, _encode.encode(found), audit_key(found.source_id), on_delivery=delivered
    )
    left = producer.flush(timeout_s)
    if left or problem:
        why = problem[0].str() if problem else f"not delivered within {timeout_s:.0f}s"
        log.warning(
            "cannot record the audit's result for `status`",
            extra={"topic": state_topic, "error": why},
        )
        return False
    return True


def read_summaries(
    client_conf: dict[str, Any], state_topic: str, source_ids: list[str], timeout_s: float
) -> dict[str, AuditSummary]:
    """The last summary of each of ``source_ids`` that has one. Raises KafkaRetriableError
    when the state topic cannot be read (a missing topic holds none)."""
    keys = {audit_key(sid): sid for sid in source_ids}
    found: dict[str, AuditSummary] = {}
    uncommitted = reader(client_conf, RESTORE_GROUP_PREFIX, "read_uncommitted")
    committed = reader(client_conf, RESTORE_GROUP_PREFIX, "read_committed")
    try:
        topic = uncommitted.list_topics(state_topic, timeout=timeout_s).topics.get(state_topic)
        if topic is None or topic.error is not None or not topic.partitions:
            return found
        plan = plan_reads(uncommitted, [TopicPartition(state_topic, 0, -1)], timeout_s)
        for msg in read_committed(committed, plan, stall_s=timeout_s, on_error=_failed):
            sid = keys.get(msg.key() or b"")
            if sid is None:
                continue
            try:
                found[sid] = msgspec.json.decode(msg.value() or b"", type=AuditSummary)
            except msgspec.DecodeError:
                log.warning("unreadable audit summary", extra={"source_id": sid})
    finally:
        uncommitted.close()
        committed.close()
    return found


def _failed(err: KafkaError, where: str) -> NoReturn:
    raise KafkaRetriableError(f"reading {where}: {err.str()}")
