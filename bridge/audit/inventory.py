"""What Kafka holds for one source over a time range: the Kafka side of an audit.

Records are found by time: their Kafka timestamp is when they were published, never before
the scan was created, so ``offsets_for_times(since)`` (less a margin for a producer's clock
behind PassEntry's) gives, per partition, the first record that can belong to the range.
Each record is placed by its scan's creation time, read from the UUIDv7 in its ``scan-id``
header (older versions of the bridge stamped records with that time; either way the
timestamp is never later than the publication).

Each partition is read from there to the end it had when the read began, not only to the
first record past ``until``. Records of a range can sit anywhere after its start: a scan
made visible late is published after newer ones (up to a lookback later), a repair appends
old scans at the end, and ``state reset`` publishes a range again. Stopping early would
count such scans as missing, and a repair would then publish them twice.

The end is the high watermark read with ``read_uncommitted`` just before reading, and the
read (``read_committed``) goes on until the consumer has passed it. So a transaction that
had written anything by then, whether it is still open or committed with its markers not
yet written, has been settled and, if committed, counted. The repair's no-double argument
rests on this (see ``bridge.audit.horizon``).

Memory: a scan id is kept as its 16 bytes per bucket (about 70 MB for a day at 50 scans/s);
sets are built one bucket at a time, when a bucket is looked at.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from bridge.audit.buckets import Bucket
from bridge.dedup import BOUNDARY_MARGIN_MS
from bridge.errors import InvalidUUIDv7Error, KafkaRetriableError
from bridge.kafka.acl import AUDIT_GROUP_PREFIX
from bridge.kafka.readback import ReadPlan, plan_reads, read_committed, reader
from bridge.ops.progress import ProgressFactory
from bridge.uuid7 import int_millis, parse_uuid7_int

__all__ = ["DeadLetters", "Inventory", "InventoryReader", "KafkaScope"]

_ID_TEXT = 36  # a canonical UUID's text, as in the scan-id header
_ID = 16  # a UUID's bytes, as kept
_LATE = "late_scan"


@dataclass(frozen=True, slots=True)
class KafkaScope:
    """Where a source's records are: its main topics and its dead-letter topic."""

    source_id: str
    main_topics: tuple[str, ...]
    # None: only the main topics are read (a replay knows the dead letters already).
    dlq_topic: str | None


@dataclass(slots=True)
class DeadLetters:
    """The dead letters of one bucket: scan id -> reason (the last one, if several)."""

    reasons: dict[int, str] = field(default_factory=dict)

    def late(self) -> set[int]:
        """Dead-lettered only because the live bridge saw them too late: publishable."""
        return {i for i, reason in self.reasons.items() if reason == _LATE}


@dataclass(slots=True)
class Inventory:
    buckets: list[Bucket]
    # Per bucket, the main topics' scan ids, 16 bytes each, one per record.
    main: list[bytearray]
    dead: list[DeadLetters]
    # Dead letters without a readable UUIDv7 (bad ids): matched to listed scans by content.
    reject_digests: set[bytes]
    records_read: int = 0
    seconds: float = 0.0
    # Filled by ``settle``: distinct main-topic ids, and the ids there more than once with
    # the number of records beyond the first.
    distinct: list[int] = field(default_factory=list)
    duplicates: list[dict[str, int]] = field(default_factory=list)

    def add(self, index: int, scan_id_text: bytes) -> None:
        self.main[index] += bytes.fromhex(scan_id_text.replace(b"-", b"").decode())

    def settle(self) -> None:
        for buf in self.main:
            seen: set[bytes] = set()
            extra: dict[str, int] = {}
            for i in range(0, len(buf), _ID):
                value = bytes(buf[i : i + _ID])
                if value in seen:
                    text = str(uuid.UUID(bytes=value))
                    extra[text] = extra.get(text, 0) + 1
                seen.add(value)
            self.distinct.append(len(seen))
            self.duplicates.append(extra)

    def main_ids(self, index: int) -> set[int]:
        """The distinct ids of bucket ``index`` in the main topics, as ints."""
        buf = self.main[index]
        return {int.from_bytes(buf[i : i + _ID], "big") for i in range(0, len(buf), _ID)}


class InventoryReader:
    def __init__(self, client_conf: dict[str, Any], scope: KafkaScope, timeout_s: float) -> None:
        self._conf = client_conf
        self._scope = scope
        self._timeout = timeout_s

    def read(self, buckets: list[Bucket], progress: ProgressFactory | None = None) -> Inventory:
        started = time.monotonic()
        since, until = buckets[0].start_ms, buckets[-1].end_ms
        bucket_ms = buckets[0].end_ms - buckets[0].start_ms
        inv = Inventory(buckets, [bytearray() for _ in buckets], [DeadLetters() for _ in buckets],
                        set())  # fmt: skip
        plan = self._plan(since)
        bar = progress("kafka", "records", plan.offsets()) if progress is not None else None
        source = self._scope.source_id.encode()
        dlq = self._scope.dlq_topic
        for msg in self._read(plan, bar.advance if bar is not None else None):
            inv.records_read += 1
            if msg.topic() == dlq:
                self._dead_letter(msg, source, since, until, bucket_ms, inv)
                continue
            src = scan = None
            for key, value in msg.headers() or ():
                if key == "source-id":
                    src = value
                elif key == "scan-id":
                    scan = value
            if src != source or scan is None or len(scan) != _ID_TEXT:
                continue
            try:
                created = int(scan[:8] + scan[9:13], 16)  # a UUIDv7's first 48 bits
                if since <= created < until:
                    inv.add((created - since) // bucket_ms, scan)
            except ValueError:
                continue
        if bar is not None:
            # Read to the end. The planned total counted offsets, transaction markers and
            # aborted records included: the true one is the records there were.
            bar.set_total(inv.records_read)
            bar.finish()
            bar.close()
        inv.settle()
        inv.seconds = time.monotonic() - started
        return inv

    def _dead_letter(
        self, msg: Any, source: bytes, since: int, until: int, bucket_ms: int, inv: Inventory
    ) -> None:
        headers = dict(msg.headers() or ())
        if headers.get("source-id") != source:
            return
        scan = headers.get("scan-id")
        try:
            id_int = parse_uuid7_int(scan.decode()) if isinstance(scan, bytes) else None
        except (InvalidUUIDv7Error, UnicodeDecodeError):
            id_int = None
        if id_int is None:
            # No creation time to place it by: remember its content, as RejectMemory does.
            inv.reject_digests.add(hashlib.blake2b(msg.value() or b"", digest_size=16).digest())
            return
        created = int_millis(id_int)
        if since <= created < until:
            reason = headers.get("dlq-reason")
            text = reason.decode(errors="replace") if isinstance(reason, bytes) else "unknown"
            inv.dead[(created - since) // bucket_ms].reasons[id_int] = text

    def _consumer(self, isolation: str) -> Consumer:
        return reader(self._conf, AUDIT_GROUP_PREFIX, isolation)

    def _plan(self, since: int) -> ReadPlan:
        """Where each partition's read starts (by time) and ends (its high watermark now)."""
        consumer = self._consumer("read_uncommitted")
        try:
            metadata = consumer.list_topics(timeout=self._timeout)
            wanted = []
            # A negative time would be one of ListOffsets' special values (-1 latest, ...).
            at = max(0, since - BOUNDARY_MARGIN_MS)
            dlq = self._scope.dlq_topic
            for topic in (*self._scope.main_topics, *([dlq] if dlq is not None else [])):
                if topic not in metadata.topics:
                    continue
                wanted += [TopicPartition(topic, p, at) for p in metadata.topics[topic].partitions]
            found = consumer.offsets_for_times(wanted, timeout=self._timeout) if wanted else []
            # -1: no record at or after the time, so nothing of the range is there.
            return plan_reads(consumer, [tp for tp in found if tp.offset >= 0], self._timeout)
        except KafkaException as exc:
            raise KafkaRetriableError(f"cannot find where the range starts: {exc}") from exc
        finally:
            consumer.close()

    def _read(self, plan: ReadPlan, on_records: Callable[[int], None] | None) -> Iterator[Any]:
        def failed(err: KafkaError, topic: str) -> NoReturn:
            raise KafkaRetriableError(f"reading {topic}: {err.str()}")

        consumer = self._consumer("read_committed")
        try:
            yield from read_committed(
                consumer, plan, stall_s=self._timeout, on_error=failed, on_batch=on_records
            )
        except KafkaException as exc:
            raise KafkaRetriableError(f"reading the range back: {exc}") from exc
        finally:
            consumer.close()
