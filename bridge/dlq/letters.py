"""What the dead-letter topic holds for a source, read back (read_committed).

A dead letter is the scan's raw JSON with its reason in headers (``bridge.kafka.records``).
The same scan can be there more than once: the live bridge dead-letters a late scan, a
``dlq replay`` that finds it still failing for another reason adds a dead letter with the new
reason (``repaired-by`` names the run). So dead letters are grouped by the scan they are
about, its **id**: the scan id, or for a payload without one ``sha256:`` and the first 32 hex
digits of its SHA-256 (as its ``ce_id`` has it). The latest dead letter of an id says its
reason now; the first says what went wrong first.

Records are found by time: ``--since`` is where each partition is read from
(``offsets_for_times``), and the read goes to the end each partition had when it began,
waiting for open transactions to settle (``bridge.kafka.readback``), so a dead letter a
replay committed just before is always seen. Times here are when a scan was dead-lettered
(the record's Kafka timestamp), not when it was created.

Memory: per id, its first and latest dead letter, and the latest one's payload only when
asked (a replay judges it).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from bridge.errors import InvalidUUIDv7Error, KafkaRetriableError
from bridge.kafka.acl import AUDIT_GROUP_PREFIX
from bridge.kafka.readback import ReadPlan, plan_reads, read_committed, reader
from bridge.ops.progress import ProgressFactory
from bridge.uuid7 import int_millis, parse_uuid7_int

__all__ = ["DeadLetter", "DeadLetterReader", "History", "letter_id"]

REPAIRED_BY = "repaired-by"


def letter_id(scan_id: str | None, raw: bytes) -> str:
    """The id dead letters of one scan share: its scan id, or a digest of its payload."""
    if scan_id:
        return scan_id
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead-letter topic."""

    partition: int
    offset: int
    # When it was dead-lettered: the record's Kafka timestamp.
    at_ms: int
    reason: str
    detail: str
    scan_id: str | None
    source_url: str
    key: bytes | None
    # Set on those a repair or a replay wrote: the command, version and run.
    written_by: str | None
    # The scan's JSON; empty when the reader was told not to keep payloads.
    raw: bytes
    id: str

    @property
    def created_ms(self) -> int | None:
        """The scan's creation time, from its id when that is a UUIDv7."""
        if self.scan_id is None:
            return None
        try:
            return int_millis(parse_uuid7_int(self.scan_id))
        except InvalidUUIDv7Error:
            return None


@dataclass(slots=True)
class History:
    """The dead letters of one id: the first, the latest and how many."""

    first: DeadLetter
    latest: DeadLetter
    count: int = 1
    # Every one of them, oldest first, when the reader keeps them all (``dlq show``).
    # A replay writes its dead letter with the original's key, so the dead letters of a
    # scan share a partition; times order them across partitions otherwise.
    letters: list[DeadLetter] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.latest.id

    @property
    def reason(self) -> str:
        return self.latest.reason


class DeadLetterReader:
    def __init__(self, client_conf: dict[str, Any], topic: str, timeout_s: float) -> None:
        self._conf = client_conf
        self.topic = topic
        self._timeout = timeout_s

    def histories(
        self, source_id: str, *, since_ms: int | None = None, until_ms: int | None = None,
        keep_payload: bool = False, only_id: str | None = None,
        progress: ProgressFactory | None = None,
    ) -> dict[str, History]:  # fmt: skip
        """The source's dead letters dead-lettered in ``[since, until)``, by id, in the
        order their first dead letter was read. ``only_id`` keeps one id, with all its
        dead letters (and payloads)."""
        found: dict[str, History] = {}
        every = only_id is not None
        for letter in self.read(source_id, since_ms, until_ms, progress):
            if every and letter.id != only_id:
                continue
            bare = letter if every else replace(letter, raw=b"")
            latest = letter if keep_payload or every else bare
            history = found.get(letter.id)
            if history is None:
                found[letter.id] = history = History(bare, latest)
            else:
                # Partitions are read one after the other: order by when they were written.
                if letter.at_ms >= history.latest.at_ms:
                    history.latest = latest
                if letter.at_ms < history.first.at_ms:
                    history.first = bare
                history.count += 1
            if every:
                history.letters.append(letter)
        for history in found.values():
            history.letters.sort(key=lambda letter: (letter.at_ms, letter.partition, letter.offset))
        return found

    def read(
        self, source_id: str, since_ms: int | None, until_ms: int | None,
        progress: ProgressFactory | None = None,
    ) -> Iterator[DeadLetter]:  # fmt: skip
        """The source's dead letters in ``[since, until)``, partition by partition."""
        plan = self._plan(since_ms)
        bar = progress("dlq", "records", plan.offsets()) if progress is not None else None
        source = source_id.encode()
        try:
            for msg in self._read(plan, bar.advance if bar is not None else None):
                at_ms = msg.timestamp()[1]
                if until_ms is not None and at_ms >= until_ms:
                    continue
                if since_ms is not None and at_ms < since_ms:
                    continue
                letter = _letter(msg, source)
                if letter is not None:
                    yield letter
        finally:
            if bar is not None:
                bar.close()

    def _plan(self, since_ms: int | None) -> ReadPlan:
        consumer = reader(self._conf, AUDIT_GROUP_PREFIX, "read_uncommitted")
        try:
            metadata = consumer.list_topics(self.topic, timeout=self._timeout)
            topic = metadata.topics.get(self.topic)
            if topic is None or topic.error is not None:
                return ReadPlan([], {})
            # -2: from the start of the partition; else the first record at or after since.
            at = -2 if since_ms is None else max(0, since_ms)
            wanted = [TopicPartition(self.topic, p, at) for p in topic.partitions]
            if since_ms is not None:
                wanted = consumer.offsets_for_times(wanted, timeout=self._timeout)
                # -1: nothing at or after since in that partition.
                wanted = [tp for tp in wanted if tp.offset >= 0]
            return plan_reads(consumer, wanted, self._timeout)
        except KafkaException as exc:
            raise KafkaRetriableError(f"cannot plan reading {self.topic}: {exc}") from exc
        finally:
            consumer.close()

    def _read(self, plan: ReadPlan, on_records: Callable[[int], None] | None) -> Iterator[Any]:
        def failed(err: KafkaError, topic: str) -> NoReturn:
            raise KafkaRetriableError(f"reading {topic}: {err.str()}")

        consumer = reader(self._conf, AUDIT_GROUP_PREFIX, "read_committed")
        started = time.monotonic()
        try:
            yield from read_committed(
                consumer, plan, stall_s=self._timeout, on_error=failed, on_batch=on_records
            )
        except KafkaException as exc:
            raise KafkaRetriableError(
                f"reading {self.topic} back after {time.monotonic() - started:.0f}s: {exc}"
            ) from exc
        finally:
            consumer.close()


def _letter(msg: Any, source: bytes) -> DeadLetter | None:
    headers: dict[str, bytes] = {}
    for key, value in msg.headers() or ():
        if isinstance(value, bytes):
            headers[key] = value
    if headers.get("source-id") != source:
        return None
    raw: bytes = msg.value() or b""
    scan = headers.get("scan-id")
    scan_id = scan.decode(errors="replace") if scan else None
    written = headers.get(REPAIRED_BY)
    return DeadLetter(
        partition=msg.partition(),
        offset=msg.offset(),
        at_ms=msg.timestamp()[1],
        reason=_text(headers.get("dlq-reason")) or "unknown",
        detail=_text(headers.get("dlq-detail")),
        scan_id=scan_id,
        source_url=_text(headers.get("source-url")),
        key=msg.key(),
        written_by=written.decode(errors="replace") if written else None,
        raw=raw,
        id=letter_id(scan_id, raw),
    )


def _text(value: bytes | None) -> str:
    return value.decode(errors="replace") if value else ""
