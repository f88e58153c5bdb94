"""The durable cursor: one small record per source in a compacted Kafka topic.

The checkpoint holds only the watermark (the largest scan id committed), the topics the
window's records went to, and where the source's webhook events continue in the inbox. It is
written in the same Kafka transaction as the records it covers, so the two become visible
together or not at all.

The dedup window itself is not stored. On start-up it is rebuilt from the output topics:
every record the bridge writes carries ``source-id`` and ``scan-id`` headers, and a record's
Kafka timestamp (when it was published) is never earlier than its scan's creation time, so
``offsets_for_times`` finds where the window's records start. That keeps the checkpoint a
few hundred bytes at any traffic rate (a window of ids at 200 scans/s and 5 minutes'
lookback would be ~1 MB), at the price of reading one lookback's worth of records (and any
older scans published since, by a backfill) at start-up.

Reading back needs Read on the state topic and the output topics, and Describe on the
readers' throwaway groups; a refusal is a :class:`KafkaAuthorizationError` naming the grant.
A first start does not notice a missing Read (there is nothing to read yet); the first
restart does.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from bridge import __version__
from bridge.backoff import Backoff
from bridge.dedup import BOUNDARY_MARGIN_MS, DedupWindow, RejectMemory
from bridge.errors import ConfigError, InvalidUUIDv7Error, KafkaRetriableError
from bridge.kafka.acl import RESTORE_GROUP_PREFIX, AclGrant, is_authorization, reading_error
from bridge.kafka.readback import HeaderPeek, plan_reads, read_committed, reader
from bridge.kafka.records import OutRecord
from bridge.uuid7 import int_millis, parse_uuid7_int

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "InboxPosition",
    "RepairProgress",
    "SourceState",
    "WindowRebuild",
    "repair_key",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# The readers never join their group or commit: Describe (for the coordinator lookup) is all.
_RESTORE_GROUPS = AclGrant("group", (RESTORE_GROUP_PREFIX,), ("Describe",), prefixed=True)
# One try of a restore's offsets lookup (``_partitions_at``), and the backoff between tries.
_LOOKUP_TRY_S = 10.0
_LOOKUP_PAUSE_S = (0.5, 2.0)


class InboxPosition(msgspec.Struct, frozen=True, rename="camel"):
    partition: int
    offset: int


class Checkpoint(msgspec.Struct, frozen=True, rename="camel"):
    format_version: int
    source_id: str
    # The largest scan id committed, or None after a reset (then ``since_ms`` says where).
    watermark: str | None
    since_ms: int | None = None
    # End of the last time slice read completely: the next poll starts there (less the
    # poll overlap). None in checkpoints of older versions: then the cursor is used.
    polled_until_ms: int | None = None
    topics: list[str] = msgspec.field(default_factory=list)
    updated_at_ms: int = 0
    bridge_version: str = ""
    # Where the source's events continue in the inbox: the offset after the last event
    # committed, in this partition of it. None until a transaction of this version read the
    # inbox: then the position older versions committed to the inbox group holds.
    inbox: InboxPosition | None = None

    def watermark_int(self) -> int:
        return 0 if self.watermark is None else uuid.UUID(self.watermark).int


class RepairProgress(msgspec.Struct, frozen=True, rename="camel"):
    """The record each transaction of a repair or backfill commits to the state topic,
    under ``<source>.repair`` (``bridge.audit.repair``); the source's own key is never
    written by them."""

    source_id: str
    run_id: str
    since_ms: int
    until_ms: int
    published: int
    dead_letters: int
    updated_at_ms: int
    # Every topic a repair of this source ever wrote scans to: a routed topic the live
    # bridge never used would otherwise be outside what restores and audits read.
    topics: list[str] = msgspec.field(default_factory=list)
    bridge_version: str = __version__


def repair_key(source_id: str) -> str:
    return f"{source_id}.repair"


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the state topic holds for a source: its checkpoint (None before its first
    commit), the topics its repairs and backfills wrote to, and whether one of them
    committed at all (its progress record is there)."""

    checkpoint: Checkpoint | None
    repaired_topics: list[str]
    repaired: bool

    @property
    def ever_committed(self) -> bool:
        """Whether a transaction of this source ever committed. Each writer of its records
        (the live pipeline; a repair, backfill or DLQ replay) commits its checkpoint or
        progress record in the same transaction, so when neither is here, no topic holds
        a record of this source."""
        return self.checkpoint is not None or self.repaired


_encode = msgspec.json.Encoder()
_decode = msgspec.json.Decoder(Checkpoint)
_decode_repair = msgspec.json.Decoder(RepairProgress)


def make_checkpoint(
    source_id: str,
    watermark: int,
    topics: Iterable[str],
    *,
    since_ms: int | None = None,
    polled_until_ms: int | None = None,
    inbox: InboxPosition | None = None,
) -> Checkpoint:
    return Checkpoint(
        FORMAT_VERSION,
        source_id,
        str(uuid.UUID(int=watermark)) if watermark else None,
        since_ms,
        polled_until_ms,
        sorted(set(topics)),
        int(time.time() * 1000),
        __version__,
        inbox,
    )


@dataclass(slots=True)
class WindowRebuild:
    """What start-up read back from the output topics."""

    records: int = 0
    ids: int = 0
    seconds: float = 0.0
    topics: list[str] = field(default_factory=list)


class CheckpointStore:
    def __init__(self, client_conf: dict[str, Any], topic: str, source_id: str) -> None:
        self._conf = client_conf
        self.topic = topic
        self.source_id = source_id
        self.key = source_id.encode()
        # Within ``sharing_lookups``: whether the lookups share one client, and that client.
        self._sharing = False
        self._shared: Consumer | None = None

    def record(self, checkpoint: Checkpoint) -> OutRecord:
        """The checkpoint as a record for the state topic, keyed by source."""
        return OutRecord(self.topic, self.key, _encode.encode(checkpoint), [])

    def read(
        self, timeout_s: float = 30.0, *, topic_may_be_missing: bool = False
    ) -> Checkpoint | None:
        """The last committed checkpoint of this source (read_committed), or None."""
        return self.read_state(timeout_s, topic_may_be_missing=topic_may_be_missing).checkpoint

    def read_state(
        self, timeout_s: float = 30.0, *, topic_may_be_missing: bool = False
    ) -> SourceState:
        """The source's checkpoint and its repairs' topics, in one read (read_committed).

        ``topic_may_be_missing``: for a command that only looks (an audit on a cluster no
        bridge ran on yet): a state topic that does not exist holds nothing. A restore
        makes sure the topic exists first and reads strictly."""
        if topic_may_be_missing and not self._topic_exists(timeout_s):
            return SourceState(None, [], repaired=False)
        latest = repair = None
        repair_as = repair_key(self.source_id).encode()
        for msg in self._read_to_end([TopicPartition(self.topic, 0, OFFSET_BEGINNING)], timeout_s):
            if msg.key() == self.key:
                latest = msg.value()
            elif msg.key() == repair_as:
                repair = msg.value()
        checkpoint = None
        if latest is not None:
            try:
                checkpoint = _decode.decode(latest)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise KafkaRetriableError(
                    f"checkpoint of source {self.source_id} in {self.topic} is unreadable: {exc}"
                ) from exc
        topics: list[str] = []
        if repair is not None:
            try:
                topics = list(_decode_repair.decode(repair).topics)
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.warning("unreadable repair progress record", extra={"key": repair_as})
        return SourceState(checkpoint, topics, repaired=repair is not None)

    def rebuild(
        self, window: DedupWindow, rejects: RejectMemory, topics: list[str], dlq_topic: str,
        *, since_ms: int | None = None, timeout_s: float = 120.0,
    ) -> WindowRebuild:  # fmt: skip
        """Fill ``window`` (and the dead-letter memory) from what this source committed:
        scans created from ``since_ms`` on (default: what the window keeps)."""
        started = time.monotonic()
        stats = WindowRebuild(topics=sorted(set(topics) | {dlq_topic}))
        retention = window.retention_ms() if since_ms is None else since_ms
        if retention is None:
            return stats
        # Dead letters carry the producer's clock, not the scan's: start a margin earlier.
        # A negative time would be one of ListOffsets' special values (-1 latest, ...).
        since = max(0, retention - BOUNDARY_MARGIN_MS)
        partitions = self._partitions_at(stats.topics, since, timeout_s)
        ids: list[int] = []
        source = self.source_id.encode()
        peek = HeaderPeek()
        for msg in self._read_to_end(partitions, timeout_s):
            stats.records += 1
            if peek.get(msg, "source-id") != source:
                continue
            scan_id = peek.get(msg, "scan-id")
            if msg.topic() == dlq_topic:
                rejects.remember(hashlib.blake2b(msg.value() or b"", digest_size=16).digest())
            if scan_id is None:
                continue
            try:
                id_int = parse_uuid7_int(scan_id.decode())
            except (InvalidUUIDv7Error, UnicodeDecodeError):
                continue  # an invalid id, dead-lettered: remembered above by content
            # Older scans published lately (a backfill) are read too, but not kept.
            if int_millis(id_int) >= since:
                ids.append(id_int)
        window.add_all(ids)
        stats.ids = len(window)
        stats.seconds = time.monotonic() - started
        return stats

    @contextmanager
    def sharing_lookups(self) -> Iterator[None]:
        """Within, the lookups (a topic's partitions, offsets by time, a partition's end) share
        one client rather than each making its own: a client costs 3-5 ms of CPU to make
        and close, and a restore, at every start and takeover of every source, made three."""
        self._sharing = True
        try:
            yield
        finally:
            self._sharing = False
            self._drop_shared()

    @contextmanager
    def _asking(self) -> Iterator[Consumer]:
        """A read_uncommitted client for lookups: the shared one, or one of its own."""
        if self._sharing:
            if self._shared is None:
                self._shared = self._consumer("read_uncommitted")
            yield self._shared
            return
        consumer = self._consumer("read_uncommitted")
        try:
            yield consumer
        finally:
            consumer.close()

    def _drop_shared(self) -> None:
        """Close the shared client: the next lookup starts from fresh metadata."""
        if self._shared is not None:
            self._shared.close()
            self._shared = None

    def _topic_exists(self, timeout_s: float) -> bool:
        try:
            with self._asking() as consumer:
                meta = consumer.list_topics(self.topic, timeout=timeout_s)
            found = meta.topics.get(self.topic)
        except KafkaException as exc:
            raise KafkaRetriableError(f"cannot describe {self.topic}: {exc.args[0].str()}") from exc
        if found is None or found.error is None:
            return found is not None and bool(found.partitions)
        if found.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return False
        raise reading_error(self._conf, found.error, self.topic, _RESTORE_GROUPS)

    def _consumer(self, isolation: str = "read_committed") -> Consumer:
        try:
            return self._new_consumer(isolation)
        except KafkaException as exc:
            raise ConfigError(f"Kafka client settings (KAFKA_*): {exc.args[0].str()}") from exc

    def _new_consumer(self, isolation: str) -> Consumer:
        return reader(self._conf, RESTORE_GROUP_PREFIX, isolation)

    def _partitions_at(
        self, topics: list[str], since_ms: int, timeout_s: float
    ) -> list[TopicPartition]:
        """Where each partition's records reach ``since_ms``, tried again on a new consumer
        until ``timeout_s``: a lookup asks each partition's leader as its consumer's
        metadata had it, and librdkafka does not follow a leader that moves meanwhile (a
        broker killed as a restore began held one lookup for its whole two minutes, in the
        cluster suite). So each try is short, and the next starts from fresh metadata."""
        deadline = time.monotonic() + timeout_s
        pause = Backoff(*_LOOKUP_PAUSE_S)
        while True:
            left = deadline - time.monotonic()
            try:
                return self._lookup(topics, since_ms, min(_LOOKUP_TRY_S, max(left, 0.1)))
            except KafkaRetriableError as exc:
                self._drop_shared()
                if left <= _LOOKUP_TRY_S:
                    raise
                log.debug("offsets lookup failed; trying again", extra={"error": str(exc)})
                time.sleep(pause.next())

    def _lookup(self, topics: list[str], since_ms: int, timeout_s: float) -> list[TopicPartition]:
        # read_uncommitted: a read_committed lookup finds nothing at or past the last stable
        # offset, so another writer's open transaction older than the window's first record
        # hid that partition's records from the rebuild. The read that follows goes past
        # the open transactions (bridge.kafka.readback).
        try:
            with self._asking() as consumer:
                # Each topic by name: a listing of every topic in the cluster costs CPU that
                # grows with the cluster, at every start and takeover of a source.
                wanted = []
                for topic in topics:
                    meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
                    if meta is not None:  # one that does not exist has no partitions
                        wanted += [TopicPartition(topic, p, since_ms) for p in meta.partitions]
                if not wanted:
                    return []
                found = consumer.offsets_for_times(wanted, timeout=timeout_s)
        except KafkaException as exc:
            err = exc.args[0]
            if is_authorization(err):
                raise reading_error(self._conf, err, ", ".join(topics), _RESTORE_GROUPS) from exc
            raise KafkaRetriableError(
                f"cannot look up offsets to rebuild the window: {exc}"
            ) from exc
        for tp in found:
            if tp.error is not None:
                raise KafkaRetriableError(
                    f"cannot look up offsets to rebuild the window: {tp.topic} [{tp.partition}]:"
                    f" {tp.error.str()}"
                )
        # -1 (OFFSET_END) means no record at or after the time: nothing to read there. (A
        # broker that has just restarted says so for a moment of every partition: the
        # pipeline's restore checks that the checkpoint's last scan was read.)
        return [tp for tp in found if tp.offset >= 0]

    def _read_to_end(self, partitions: list[TopicPartition], timeout_s: float) -> Iterable[Any]:
        """Yield every committed record from each partition's offset to its end now
        (``bridge.kafka.readback``: not where another writer's open transaction stops a
        read_committed consumer). An empty or already-read partition costs one request."""
        if not partitions:
            return
        what = ", ".join(sorted({tp.topic for tp in partitions}))

        def failed(err: KafkaError, topic: str) -> NoReturn:
            raise reading_error(self._conf, err, topic, _RESTORE_GROUPS)

        try:
            with self._asking() as ends:
                plan = plan_reads(ends, partitions, timeout_s)
            if not plan.starts:
                return  # nothing there yet (a first start): no reader to make
            consumer = self._consumer()
            try:
                yield from read_committed(consumer, plan, stall_s=timeout_s, on_error=failed)
            finally:
                consumer.close()
        except KafkaException as exc:
            err = exc.args[0]
            if is_authorization(err):
                raise reading_error(self._conf, err, what, _RESTORE_GROUPS) from exc
            raise KafkaRetriableError(f"reading back committed records: {exc}") from exc
