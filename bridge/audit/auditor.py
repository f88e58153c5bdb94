"""Run one audit, repair or backfill: choose the writer and fence, find the live horizon,
count PassEntry per bucket, read what Kafka holds, compare, publish what is missing as it is
found, and (an audit's repair) check again.

The order is the no-double guarantee (README, "Audit" and "Backfill"):

1. (repair, backfill) who writes (``bridge.audit.repair.choose_writer``), then its
   ``init_transactions``: every earlier run of the source is fenced and its open
   transaction aborted (writing as the source, a live bridge's zombie too);
2. the live source's checkpoint: scans older than the horizon derived from it will never be
   published by the live bridge;
3. Kafka, read_committed, to the ends the partitions had at that point, waiting for every
   transaction begun by then to settle;
4. what is missing = what PassEntry lists minus what step 3 read; only scans older than the
   horizon are published behind a live bridge, the whole range as the source.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from bridge.audit.buckets import Bucket, split_range
from bridge.audit.census import Census
from bridge.audit.compare import BucketResult, compare_bucket
from bridge.audit.horizon import LiveHorizon, source_horizon
from bridge.audit.inventory import InventoryReader, KafkaScope
from bridge.audit.job import SourceJob
from bridge.audit.repair import Repairer, Writer, repaired_topics
from bridge.audit.report import AuditReport
from bridge.config import Config
from bridge.dedup import BOUNDARY_MARGIN_MS
from bridge.kafka.access import KafkaAccess
from bridge.kafka.checkpoint import Checkpoint
from bridge.ops.metrics import Metrics
from bridge.ops.progress import ProgressFactory
from bridge.passentry.client import PassEntryClient
from bridge.wiring import Wiring

__all__ = ["AuditRequest", "Auditor", "api_requests", "kafka_scope"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AuditRequest:
    source_id: str
    since_ms: int
    until_ms: int
    bucket_ms: int
    # Publish what is missing (audit --repair, backfill).
    repair: bool = False
    # The command, named in the records' repaired-by header.
    command: str = "audit"
    # Write as the source even while a live member owns it (fencing it).
    force: bool = False
    # Name every missing, duplicated and unknown id (an audit); only count them (a backfill
    # of a large range).
    keep_ids: bool = True
    # Audit again the buckets a repair touched.
    recheck: bool = True
    repair_batch: int = 500
    # Beyond lookback + late sweep, how far behind the live cursor a repair stays.
    live_margin_ms: int = BOUNDARY_MARGIN_MS
    # Requests per second: an audit shares PassEntry's 10/s with the live bridge.
    request_budget: float = 3.0


def api_requests(metrics: Metrics) -> int:
    """PassEntry requests made through this metrics object, every endpoint and outcome."""
    total = 0.0
    for family in metrics.registry.collect():
        if family.name == "passentry_bridge_api_requests":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return int(total)


class Auditor(SourceJob):
    def __init__(
        self, config: Config, request: AuditRequest, *, metrics: Metrics | None = None,
        progress: ProgressFactory | None = None, stop: threading.Event | None = None,
        client: PassEntryClient | None = None, access: KafkaAccess | None = None,
    ) -> None:  # fmt: skip
        super().__init__(
            config, request.source_id, request_budget=request.request_budget, metrics=metrics,
            progress=progress, stop=stop, client=client, access=access,
        )  # fmt: skip
        self._request = request
        self._census = Census(self._client, self._wiring.slice_plan(overlap_ms=0))

    def close(self) -> None:
        self._census.close()  # its threads use the client
        super().close()

    def run(self) -> AuditReport:
        started = time.monotonic()
        req = self._request
        report = AuditReport(req.source_id, req.since_ms, req.until_ms, req.bucket_ms,
                             repair=req.repair, command=req.command)  # fmt: skip
        repairer = self._open_writer(report) if req.repair else None  # step 1
        checkpoint = self._checkpoints.read(self._timeout_s, topic_may_be_missing=True)
        report.horizon = horizon = self._horizon(checkpoint)
        publish_before = horizon.ms
        if repairer is not None and repairer.writer is Writer.AS_SOURCE:
            publish_before = req.until_ms
        report.publish_before_ms = publish_before
        scope = self._scope(checkpoint, sorted(repairer.topics) if repairer else None)
        buckets = split_range(req.since_ms, req.until_ms, req.bucket_ms)
        report.buckets = self._audit(buckets, scope, report, publish_before, repairer)
        if repairer is not None:
            totals = repairer.totals
            report.published, report.dead_letters_written = totals.published, totals.dead_letters
            log.info("repair committed", extra={"published": totals.published,
                                                "dead_letters": totals.dead_letters})  # fmt: skip
            if req.recheck and any(b.published for b in report.buckets):
                # The repair may have written to a routed topic nothing had used before.
                scope = self._scope(checkpoint, sorted(repairer.topics))
                report.buckets = self._recheck(buckets, report, scope, publish_before)
        report.requests = api_requests(self.metrics)
        report.seconds = time.monotonic() - started
        return report

    def _open_writer(self, report: AuditReport) -> Repairer:
        req = self._request
        choice = self._choose_writer(force=req.force)
        report.writer = choice.writer
        report.owner = choice.owner
        report.owners_unknown = choice.owners_unknown
        return self._open_repairer(
            choice, since_ms=req.since_ms, until_ms=req.until_ms, command=req.command,
            chunk=req.repair_batch,
        )  # fmt: skip

    def _horizon(self, checkpoint: Checkpoint | None) -> LiveHorizon:
        return source_horizon(self._spec.passentry, checkpoint, self._request.live_margin_ms)

    def _scope(self, checkpoint: Checkpoint | None, repaired: list[str] | None) -> KafkaScope:
        return kafka_scope(self._wiring, checkpoint, repaired)

    def _audit(
        self, buckets: list[Bucket], scope: KafkaScope, report: AuditReport,
        publish_before: int | None, repairer: Repairer | None,
    ) -> list[BucketResult]:  # fmt: skip
        bar = self._bar("passentry", "buckets", len(buckets))
        totals: list[int | None] = []
        for bucket in buckets:
            totals.append(self._census.count(bucket.start_ms, bucket.end_ms))
            if bar is not None:
                bar.advance(1)
        if bar is not None:
            bar.finish()
            bar.close()
        inventory = InventoryReader(self._conf, scope, self._timeout_s).read(
            buckets, self._progress
        )
        report.kafka_records += inventory.records_read
        known = None if None in totals else sum(t for t in totals if t is not None)
        label = self._request.command if repairer is not None else "compare"
        bar = self._bar(label, "scans", known)
        results: list[BucketResult] = []
        for index, total in enumerate(totals):
            results.append(
                compare_bucket(
                    inventory, index, total, self._census, self._stop,
                    publish_before_ms=publish_before, sink=repairer,
                    keep_ids=self._request.keep_ids,
                    progress=bar.advance if bar is not None else None,
                )
            )  # fmt: skip
            if self._stop.is_set():
                break
        if repairer is not None and not self._stop.is_set():
            repairer.flush()
        if bar is not None:
            if not self._stop.is_set():
                bar.finish()
            bar.close()
        return results

    def _recheck(
        self, buckets: list[Bucket], report: AuditReport, scope: KafkaScope,
        publish_before: int | None,
    ) -> list[BucketResult]:  # fmt: skip
        """Audit again the buckets a repair touched, and say what it added to each."""
        before = report.buckets
        touched = [i for i, b in enumerate(before) if b.published]
        first, last = touched[0], touched[-1]
        again = self._audit(buckets[first : last + 1], scope, report, publish_before, None)
        merged = list(before)
        for offset, result in enumerate(again):
            result.published = before[first + offset].published
            merged[first + offset] = result
        return merged


def kafka_scope(
    wiring: Wiring, checkpoint: Checkpoint | None, repaired: list[str] | None,
    *, with_dlq: bool = True,
) -> KafkaScope:  # fmt: skip
    """Where the source's records are: the topics its checkpoint and its repairs name, its
    scans topic (unless routed), and the DLQ (``with_dlq``). ``repaired`` None: read them."""
    br, spec, source_id = wiring.config.bridge, wiring.spec, wiring.source_id
    if repaired is None:
        repaired = repaired_topics(wiring.kafka_conf(), br.state_topic, source_id)
    topics = set(checkpoint.topics) if checkpoint is not None else set()
    topics.update(repaired)
    if spec.topic_template is None:
        topics.add(spec.scans_topic)
    topics.discard(br.dlq_topic)
    return KafkaScope(source_id, tuple(sorted(topics)), br.dlq_topic if with_dlq else None)
