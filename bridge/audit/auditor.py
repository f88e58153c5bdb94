"""Run one audit: fence (for a repair), find the live horizon, count PassEntry per bucket,
read what Kafka holds, compare, and for ``--repair`` publish what is missing and check again.

The order is the no-double guarantee (README, "Audit"):

1. ``init_transactions`` under the repair's own transactional id (repair only): an older or
   concurrent audit of the source is fenced and its open transaction aborted;
2. the live source's checkpoint: scans older than the horizon derived from it will never be
   published by the live bridge;
3. Kafka, read_committed, to the ends the partitions had at that point, waiting for every
   transaction begun by then to settle;
4. what is missing = what PassEntry lists minus what step 3 read; only scans older than the
   horizon are published.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from bridge.audit.buckets import Bucket, split_range
from bridge.audit.census import Census
from bridge.audit.compare import BucketResult, Repairs, compare_bucket
from bridge.audit.horizon import LiveHorizon, live_horizon
from bridge.audit.inventory import InventoryReader, KafkaScope
from bridge.audit.repair import Repairer, repaired_topics
from bridge.audit.report import AuditReport
from bridge.config import Config
from bridge.dedup import BOUNDARY_MARGIN_MS
from bridge.kafka.checkpoint import Checkpoint, CheckpointStore
from bridge.ops.metrics import Metrics
from bridge.ops.progress import ProgressFactory
from bridge.passentry.client import PassEntryClient
from bridge.passentry.ratelimit import RequestBudget
from bridge.passentry.slices import SlicePlan

__all__ = ["AuditRequest", "Auditor", "api_requests"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AuditRequest:
    source_id: str
    since_ms: int
    until_ms: int
    bucket_ms: int
    repair: bool = False
    repair_batch: int = 500
    # Beyond lookback + late sweep, how far behind the live cursor a repair stays.
    live_margin_ms: int = BOUNDARY_MARGIN_MS
    # Requests per second for the audit: it shares PassEntry's 10/s with the live bridge.
    request_budget: float = 3.0


def api_requests(metrics: Metrics) -> int:
    """PassEntry requests made through this metrics object, every endpoint and outcome."""
    total = 0.0
    for family in metrics.registry.collect():
        if family.name == "passentry_bridge_api_requests":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return int(total)


class Auditor:
    def __init__(
        self, config: Config, request: AuditRequest, *, metrics: Metrics | None = None,
        progress: ProgressFactory | None = None, stop: threading.Event | None = None,
        client: PassEntryClient | None = None,
    ) -> None:  # fmt: skip
        self._spec = spec = config.source(request.source_id)
        pe, kafka, br = spec.passentry, config.kafka, config.bridge
        self._config = config
        self._request = request
        self.metrics = metrics if metrics is not None else Metrics()
        self._progress = progress
        self._stop = stop if stop is not None else threading.Event()
        self._client = client or PassEntryClient(
            str(pe.api_url),
            pe.token(),
            metrics=self.metrics,
            budget=RequestBudget(min(request.request_budget, pe.request_budget)),
            timeout_s=pe.timeout_s,
            retry_deadline_s=pe.retry_deadline_s,
        )
        self._census = Census(
            self._client,
            SlicePlan(
                filters=pe.filters.as_query(),
                per_page=pe.per_page,
                concurrency=pe.backfill_concurrency,
                max_scans=pe.max_cycle_scans,
                overlap_ms=0,
                sweep_interval_s=pe.sweep_interval_s,
            ),
        )
        self._conf = kafka.librdkafka()
        self._checkpoints = CheckpointStore(self._conf, br.state_topic, request.source_id)
        self._timeout_s = kafka.transaction_timeout_ms / 1000 + 30
        self._repairer = (
            Repairer(
                config, request.source_id, self._client, self.metrics, chunk=request.repair_batch
            )
            if request.repair
            else None
        )

    def close(self) -> None:
        if self._repairer is not None:
            self._repairer.close()
        self._census.close()
        self._client.close()

    def run(self) -> AuditReport:
        started = time.monotonic()
        req = self._request
        if self._repairer is not None:
            self._repairer.open()  # step 1: fence older audits before reading anything
        checkpoint = self._checkpoints.read(self._timeout_s)
        horizon = self._horizon(checkpoint)
        scope = self._scope(checkpoint, self._repaired_topics())
        report = AuditReport(req.source_id, req.since_ms, req.until_ms, req.bucket_ms, horizon,
                             repair=req.repair)  # fmt: skip
        buckets = split_range(req.since_ms, req.until_ms, req.bucket_ms)
        results, repairs = self._audit(buckets, scope, horizon, report, repair=req.repair)
        todo = [r for r in repairs if len(r)]
        if self._repairer is not None and todo and not self._stop.is_set():
            totals = self._repairer.publish(
                [s for r in todo for s in r.scans],
                [x for r in todo for x in r.rejects],
                req.since_ms,
                req.until_ms,
                self._stop,
                self._progress,
            )
            report.published, report.dead_letters_written = totals.published, totals.dead_letters
            log.info("repair committed", extra={"published": totals.published,
                                                "dead_letters": totals.dead_letters})  # fmt: skip
            # The repair may have written to a routed topic nothing had used before.
            scope = self._scope(checkpoint, sorted(self._repairer.topics))
            results = self._recheck(buckets, results, repairs, scope, horizon, report)
        report.buckets = results
        report.requests = api_requests(self.metrics)
        report.seconds = time.monotonic() - started
        return report

    def _horizon(self, checkpoint: Checkpoint | None) -> LiveHorizon:
        pe = self._spec.passentry
        lookback_ms = int(pe.lookback_s * 1000)
        sweep_ms = lookback_ms if pe.late_sweep_s is None else int(pe.late_sweep_s * 1000)
        return live_horizon(
            checkpoint,
            lookback_ms=lookback_ms,
            late_sweep_ms=sweep_ms,
            margin_ms=self._request.live_margin_ms,
        )

    def _repaired_topics(self) -> list[str]:
        if self._repairer is not None:
            return sorted(self._repairer.topics)  # read by open(), after the fence
        return repaired_topics(self._conf, self._config.bridge.state_topic, self._request.source_id)

    def _scope(self, checkpoint: Checkpoint | None, repaired: list[str]) -> KafkaScope:
        dlq = self._config.bridge.dlq_topic
        topics = set(checkpoint.topics) if checkpoint is not None else set()
        topics.update(repaired)
        if self._spec.topic_template is None:
            topics.add(self._spec.scans_topic)
        topics.discard(dlq)
        return KafkaScope(self._request.source_id, tuple(sorted(topics)), dlq)

    def _audit(
        self, buckets: list[Bucket], scope: KafkaScope, horizon: LiveHorizon,
        report: AuditReport, *, repair: bool,
    ) -> tuple[list[BucketResult], list[Repairs]]:  # fmt: skip
        bar = self._progress("passentry", "buckets", len(buckets)) if self._progress else None
        totals: list[int | None] = []
        for bucket in buckets:
            totals.append(self._census.count(bucket.start_ms, bucket.end_ms))
            if bar is not None:
                bar.advance(1)
        if bar is not None:
            bar.close()
        reader = InventoryReader(self._conf, scope, self._timeout_s)
        inventory = reader.read(buckets, self._progress)
        report.kafka_records += inventory.records_read
        results: list[BucketResult] = []
        repairs: list[Repairs] = []
        for index, total in enumerate(totals):
            compared = compare_bucket(
                inventory, index, total, self._census, self._stop,
                horizon_ms=horizon.ms, repair=repair,
            )  # fmt: skip
            results.append(compared.result)
            repairs.append(compared.repairs)
        return results, repairs

    def _recheck(
        self, buckets: list[Bucket], results: list[BucketResult], repairs: list[Repairs],
        scope: KafkaScope, horizon: LiveHorizon, report: AuditReport,
    ) -> list[BucketResult]:  # fmt: skip
        """Audit again the buckets a repair touched, and say what it added to each."""
        touched = [i for i, r in enumerate(repairs) if len(r)]
        first, last = touched[0], touched[-1]
        again, _ = self._audit(buckets[first : last + 1], scope, horizon, report, repair=False)
        merged = list(results)
        for offset, result in enumerate(again):
            result.repaired = len(repairs[first + offset])
            merged[first + offset] = result
        return merged
