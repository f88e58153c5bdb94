"""Publish the scans an audit found missing, exactly once, without touching the live bridge.

The scans go the way the live bridge's do: enrich (pass and reader from the page they were
listed on), encode, build the record (same topic routing, key, timestamp and headers, with
``source-id`` the live source's, so the live bridge's window rebuild and later audits count
them), plus a ``repaired-by`` header naming the audit run. Each chunk is one Kafka
transaction under the repair's own transactional id, ``passentry-bridge.<source>.repair``,
with a progress record under the key ``<source>.repair`` in the state topic: the live
source's checkpoint key is never written, so ``state show``/``state reset`` do not see it.

Never the live bridge's transactional id, so a repair never fences it. Its own id fences an
older audit: :meth:`Repairer.open` runs ``init_transactions`` first, which aborts whatever
transaction an interrupted or concurrent audit left open; only then does the audit read
Kafka and decide what is missing. So a run never publishes what an earlier run committed,
and an earlier run can no longer commit once a later one has started.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from typing import Any

import msgspec

from bridge import __version__
from bridge.avro.encoder import Encoder
from bridge.avro.framing import Framer, SingleObjectFramer
from bridge.avro.registry import RegistryFramer
from bridge.avro.schemas import latest
from bridge.config import Config
from bridge.enrich import Enricher, PassCache
from bridge.kafka.checkpoint import CheckpointStore
from bridge.kafka.producer import OutRecord, Publisher, transactional_id
from bridge.kafka.records import RecordBuilder
from bridge.kafka.routing import Router
from bridge.kafka.topics import TopicManager
from bridge.ops.metrics import Metrics
from bridge.ops.progress import ProgressFactory
from bridge.passentry.client import PassEntryClient
from bridge.passentry.pages import Listed, ListedReject

__all__ = [
    "RepairProgress",
    "RepairTotals",
    "Repairer",
    "repair_key",
    "repair_transactional_id",
    "repaired_topics",
]

log = logging.getLogger(__name__)

# Scans per transaction: a failed one costs little to redo.
_CHUNK = 500


def repair_transactional_id(source_id: str) -> str:
    """One per source, beside (never equal to) the live bridge's ``passentry-bridge.<id>``."""
    return transactional_id(f"{source_id}.repair")


def repair_key(source_id: str) -> str:
    return f"{source_id}.repair"


@dataclasses.dataclass(slots=True)
class RepairTotals:
    """What a repair committed."""

    published: int = 0
    dead_letters: int = 0


class RepairProgress(msgspec.Struct, frozen=True, rename="camel"):
    """The record each repair transaction commits to the state topic."""

    source_id: str
    run_id: str
    since_ms: int
    until_ms: int
    published: int
    dead_letters: int
    updated_at_ms: int
    # Every topic a repair of this source ever wrote scans to: a routed topic the live
    # bridge never used would otherwise be outside what later audits read.
    topics: list[str] = msgspec.field(default_factory=list)
    bridge_version: str = __version__


_encode = msgspec.json.Encoder()
_decode = msgspec.json.Decoder(RepairProgress)


def repaired_topics(client_conf: dict[str, Any], state_topic: str, source_id: str) -> list[str]:
    """The topics earlier repairs of ``source_id`` wrote to, from their last progress record."""
    raw = CheckpointStore(client_conf, state_topic, repair_key(source_id)).read_raw()
    if raw is None:
        return []
    try:
        return list(_decode.decode(raw).topics)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []


class Repairer:
    def __init__(
        self, config: Config, source_id: str, client: PassEntryClient, metrics: Metrics,
        *, chunk: int = _CHUNK,
    ) -> None:  # fmt: skip
        spec, kafka, br = config.source(source_id), config.kafka, config.bridge
        conf = kafka.librdkafka()
        self.source_id = source_id
        self.run_id = uuid.uuid4().hex[:12]
        self._state_topic = br.state_topic
        self._conf = conf
        self.topics: set[str] = set()
        self._chunk = chunk
        self._timeout_s = kafka.message_timeout_ms / 1000 + 5
        self._topics = TopicManager(
            conf,
            create=br.create_topics,
            partitions=br.topic_partitions,
            replication_factor=br.topic_replication_factor,
        )
        self._publisher = Publisher.for_settings(
            conf,
            kafka,
            metrics,
            transactional_id=repair_transactional_id(source_id),
            hold_s=br.debug_txn_hold_s,
        )
        schema = latest()
        framer: Framer = SingleObjectFramer(schema)
        self._registry: RegistryFramer | None = None
        if config.schema_registry.enabled:
            framer = self._registry = RegistryFramer(config.schema_registry, schema)
        cache = PassCache(spec.passentry.pass_cache_size)
        self._enricher = Enricher(client.get_pass, metrics, cache)
        self._encoder = Encoder(schema, source_id)
        self._records = RecordBuilder(
            source_id, br.dlq_topic, Router(spec.scans_topic, spec.topic_template), framer
        )
        self._tag = ("repaired-by", f"passentry-bridge audit {__version__} run {self.run_id}")

    def open(self) -> None:
        """Fence any older audit of this source and settle its open transaction. Call this
        before reading Kafka to decide what is missing."""
        self._topics.ensure([self._state_topic], compacted=True)
        self._publisher.init()
        # Read after the fence: what earlier runs committed is settled by now.
        self.topics = set(repaired_topics(self._conf, self._state_topic, self.source_id))

    def close(self) -> None:
        self._publisher.close(5.0)
        if self._registry is not None:
            self._registry.close()

    def publish(
        self, scans: list[Listed], rejects: list[ListedReject], since_ms: int, until_ms: int,
        stop: threading.Event, progress: ProgressFactory | None = None,
    ) -> RepairTotals:  # fmt: skip
        """Publish ``scans`` (and dead-letter ``rejects``) in transactions; return how many
        scan records and dead letters were committed."""
        ordered = sorted(scans, key=lambda item: item.scan.id_int)
        dead = [
            self._tagged(self._records.dead_letter(item.rejected, item.url)) for item in rejects
        ]
        bar = progress("repair", "scans", len(ordered)) if progress is not None else None
        totals = RepairTotals()
        starts = range(0, max(len(ordered), 1 if dead else 0), self._chunk)
        for start in starts:
            if stop.is_set():
                break
            chunk = ordered[start : start + self._chunk]
            enriched = self._enricher.enrich(chunk)
            records = [
                self._tagged(r)
                for r in self._records.scans(enriched, self._encoder.encode(enriched))
            ]
            records.extend(dead)
            dead = []
            self._topics.ensure(sorted({r.topic for r in records}))
            self.topics |= {r.topic for r in records if r.topic != self._records.dlq_topic}
            acked = self._send(records, since_ms, until_ms, totals)
            for topic, count in acked.items():
                if topic == self._records.dlq_topic:
                    totals.dead_letters += count
                else:
                    totals.published += count
            if bar is not None:
                bar.advance(len(chunk))
        if bar is not None:
            bar.close()
        return totals

    def _send(
        self, records: list[OutRecord], since_ms: int, until_ms: int, totals: RepairTotals
    ) -> dict[str, int]:
        dlq = self._records.dlq_topic
        progress = RepairProgress(
            self.source_id,
            self.run_id,
            since_ms,
            until_ms,
            totals.published + sum(1 for r in records if r.topic != dlq),
            totals.dead_letters + sum(1 for r in records if r.topic == dlq),
            int(time.time() * 1000),
            sorted(self.topics),
        )
        marker = OutRecord(
            self._state_topic, repair_key(self.source_id).encode(), _encode.encode(progress), []
        )
        return self._publisher.send(records, marker, self._timeout_s)

    def _tagged(self, record: OutRecord) -> OutRecord:
        return dataclasses.replace(record, headers=[*record.headers, self._tag])
