"""Publish the scans an audit or a backfill found missing, exactly once, beside the live bridge.

``audit --repair`` and ``backfill`` are one mechanism with two entry points: both read what
Kafka holds for the source (read_committed, ``bridge.audit.inventory``), list what PassEntry
has, and publish only the difference, here. The scans go the way the live bridge's do:
enrich (pass and reader from the page they were listed on), encode, build the record (same
topic routing, key and headers, ``source-id`` the live source's, so the live bridge's window
rebuild and later audits count them), plus a ``repaired-by`` header naming the command and
its run. Each chunk is one Kafka transaction with a progress record under the key
``<source>.repair`` in the state topic; the live source's checkpoint key is never written.

Who may write, and how far (:func:`choose_writer`):

- **behind the live bridge** (a live member owns the source): under the repair's own
  transactional id, ``passentry-bridge.<source>.repair``, and only scans older than the live
  bridge's horizon (``bridge.audit.horizon``), which it will never publish itself. It never
  fences the live bridge.
- **as the source** (no live member owns it, or ``--force``): under the live source's own
  transactional id, the whole range. A live bridge that starts meanwhile fences the run at
  its first ``init_transactions``, and its restore reads back what the run committed. The
  repair's id is fenced first too, so a run of either kind fences every earlier one.

Either way :meth:`Repairer.open` runs ``init_transactions`` before anything is read: an
interrupted or concurrent run of the source is fenced and its open transaction aborted, so a
run never publishes what an earlier run committed, and an earlier run can no longer commit.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import time
import uuid
from typing import Any

import msgspec

from bridge import __version__
from bridge.kafka.checkpoint import CheckpointStore, RepairProgress, repair_key
from bridge.kafka.owners import Owners, find_owners
from bridge.kafka.producer import fence, transactional_id
from bridge.kafka.records import OutRecord
from bridge.passentry.client import PassEntryClient
from bridge.passentry.pages import Listed, ListedReject
from bridge.wiring import Wiring

__all__ = [
    "RepairTotals",
    "Repairer",
    "Writer",
    "WriterChoice",
    "choose_writer",
    "pick_writer",
    "repair_transactional_id",
    "repaired_topics",
]

log = logging.getLogger(__name__)


class Writer(enum.Enum):
    """How a repair or backfill writes."""

    # Under its own transactional id, behind the live bridge's horizon.
    BEHIND_LIVE = "behind the live bridge"
    # Under the source's own transactional id, the whole range.
    AS_SOURCE = "as the source"


def choose_writer(owners: Owners, source_id: str, *, force: bool, has_checkpoint: bool) -> Writer:
    """Behind a live owner; as the source where none runs, or when told to (``--force``
    fences the live bridge). Without a group to ask, a source that has a checkpoint may be
    running: stay behind it; one without has never published, so write as it."""
    if force:
        return Writer.AS_SOURCE
    if owners.known:
        return Writer.AS_SOURCE if owners.owner(source_id) is None else Writer.BEHIND_LIVE
    return Writer.BEHIND_LIVE if has_checkpoint else Writer.AS_SOURCE


@dataclasses.dataclass(frozen=True, slots=True)
class WriterChoice:
    """How a run writes, and why: the live owner, or why owners could not be asked."""

    writer: Writer
    owner: str | None
    owners_unknown: str | None


def pick_writer(
    wiring: Wiring, checkpoints: CheckpointStore, *, force: bool, timeout_s: float
) -> WriterChoice:
    """Ask Kafka who owns the source (and, without a group, whether it has a checkpoint),
    then :func:`choose_writer`."""
    br, source_id = wiring.config.bridge, wiring.source_id
    owners = find_owners(wiring.kafka_conf(), br.group_id, br.coordination_topic, [source_id])
    has_checkpoint = owners.known or (
        checkpoints.read(timeout_s, topic_may_be_missing=True) is not None
    )
    writer = choose_writer(owners, source_id, force=force, has_checkpoint=has_checkpoint)
    owner = owners.owner(source_id)
    return WriterChoice(
        writer, str(owner) if owner is not None else None, None if owners.known else owners.why
    )


def repair_transactional_id(source_id: str) -> str:
    """One per source, beside (never equal to) the live bridge's ``passentry-bridge.<id>``."""
    return transactional_id(f"{source_id}.repair")


@dataclasses.dataclass(slots=True)
class RepairTotals:
    """What a repair committed."""

    published: int = 0
    dead_letters: int = 0


_encode = msgspec.json.Encoder()


def repaired_topics(client_conf: dict[str, Any], state_topic: str, source_id: str) -> list[str]:
    """The topics earlier repairs and backfills of ``source_id`` wrote to."""
    store = CheckpointStore(client_conf, state_topic, source_id)
    return store.read_state(topic_may_be_missing=True).repaired_topics


class Repairer:
    """Publishes what it is given (:meth:`add`) in transactions of ``chunk`` scans, in the
    order given; :meth:`flush` commits the rest."""

    def __init__(
        self, wiring: Wiring, client: PassEntryClient,
        *, writer: Writer, since_ms: int, until_ms: int, command: str, chunk: int = 500,
    ) -> None:  # fmt: skip
        kafka, br = wiring.config.kafka, wiring.config.bridge
        self.source_id = source_id = wiring.source_id
        self.writer = writer
        self.run_id = uuid.uuid4().hex[:12]
        self.totals = RepairTotals()
        self.topics: set[str] = set()
        self._state_topic = br.state_topic
        self._conf = wiring.kafka_conf()
        self._chunk = chunk
        self._range = (since_ms, until_ms)
        self._timeout_s = kafka.message_timeout_ms / 1000 + 5
        self._topics = wiring.topics()
        self._txn_id = (
            transactional_id(source_id)
            if writer is Writer.AS_SOURCE
            else repair_transactional_id(source_id)
        )
        self._publisher = wiring.publisher(self._txn_id)
        framing = wiring.framing()
        self._registry = framing.registry
        self._enricher = wiring.enricher(client)
        self._encoder = wiring.encoder()
        self._records = wiring.records(framing.framer)
        self._tag = ("repaired-by", f"passentry-bridge {command} {__version__} run {self.run_id}")
        self._scans: list[Listed] = []
        self._dead: list[OutRecord] = []

    def open(self) -> None:
        """Fence every earlier run of this source's repairs and backfills (and, writing as
        the source, any zombie of its live bridge) and settle their open transactions. Call
        this before reading Kafka to decide what is missing."""
        self._topics.ensure([self._state_topic], compacted=True)
        if self.writer is Writer.AS_SOURCE:
            fence(self._conf, repair_transactional_id(self.source_id), self._timeout_s)
        self._publisher.init()
        # Read after the fence: what earlier runs committed is settled by now.
        self.topics = set(repaired_topics(self._conf, self._state_topic, self.source_id))

    def close(self) -> None:
        self._publisher.close(5.0)
        if self._registry is not None:
            self._registry.close()

    def add(self, scans: list[Listed], rejects: list[ListedReject]) -> None:
        """Queue ``scans`` (in id order, after what was queued before) and dead letters for
        ``rejects``; full chunks are committed at once."""
        self._scans.extend(scans)
        self._dead.extend(
            self._tagged(self._records.dead_letter(r.rejected, r.url)) for r in rejects
        )
        while len(self._scans) >= self._chunk:
            chunk, self._scans = self._scans[: self._chunk], self._scans[self._chunk :]
            self._commit(chunk)

    def flush(self) -> None:
        if self._scans or self._dead:
            chunk, self._scans = self._scans, []
            self._commit(chunk)

    def _commit(self, chunk: list[Listed]) -> None:
        enriched = self._enricher.enrich(chunk)
        records = [
            self._tagged(r) for r in self._records.scans(enriched, self._encoder.encode(enriched))
        ]
        records.extend(self._dead)
        self._dead = []
        if not records:
            return
        dlq = self._records.dlq_topic
        self._topics.ensure(sorted({r.topic for r in records}))
        self.topics |= {r.topic for r in records if r.topic != dlq}
        scans = sum(1 for r in records if r.topic != dlq)
        progress = RepairProgress(
            self.source_id, self.run_id, *self._range,
            self.totals.published + scans, self.totals.dead_letters + len(records) - scans,
            int(time.time() * 1000), sorted(self.topics),
        )  # fmt: skip
        marker = OutRecord(
            self._state_topic, repair_key(self.source_id).encode(), _encode.encode(progress), []
        )
        acked = self._publisher.send(records, marker, self._timeout_s)
        for topic, count in acked.items():
            if topic == dlq:
                self.totals.dead_letters += count
            else:
                self.totals.published += count

    def _tagged(self, record: OutRecord) -> OutRecord:
        return msgspec.structs.replace(record, headers=[*record.headers, self._tag])
