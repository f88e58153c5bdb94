"""``dlq replay``: judge each dead letter again with today's code, and publish those that pass,
exactly once, by the rule ``audit --repair`` follows (``bridge.audit.repair``).

For each id (``bridge.dlq.letters``) whose latest dead letter matches the filters, its
payload is judged as the live bridge would judge it now:

1. decoded (``bridge.passentry.pages``): a scan that does not decode still fails;
2. a scan newer than the live bridge's horizon (``bridge.audit.horizon``) is left for now:
   the live bridge may still publish it itself;
3. a scan the source's topics already hold (read_committed, ``bridge.audit.inventory``) is
   done: an earlier replay, a repair or the live bridge published it;
4. enriched with the pass and reader PassEntry gives for it (``GET /api/v1/scans/{id}``;
   without them, as a scan whose page lacked them) and encoded against today's schema: one
   that cannot be encoded still fails;
5. the rest are published in transactions of ``--batch`` scans, by a ``Repairer``.

A dead letter that still fails stays. When its reason changed, a dead letter with the new
reason is written (with the original's key, beside it), in the same transactions, so that
``dlq list`` shows the reason now and the next replay sees it; with the same reason nothing
is written.

Exactly once, as for a repair: the run fences first (``Repairer.open``: every earlier or
concurrent replay, repair and backfill of the source, under the same transactional ids),
then reads the dead letters and the scans topic, so what an earlier run committed is seen
and what it left open is aborted. A replay killed mid-way and run again publishes only what
the first did not; a second full replay publishes nothing and writes nothing. ``audit
--repair`` publishes ``late_scan`` dead letters by the same rule behind the same fence, so
the two never both publish a scan. ``--dry-run`` fences nothing and writes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import msgspec

from bridge.audit.auditor import api_requests, kafka_scope
from bridge.audit.buckets import split_range
from bridge.audit.horizon import source_horizon
from bridge.audit.inventory import Inventory, InventoryReader
from bridge.audit.job import SourceJob
from bridge.audit.repair import Repairer, Writer, WriterChoice
from bridge.config import Config
from bridge.dedup import BOUNDARY_MARGIN_MS
from bridge.dlq.letters import DeadLetterReader, History
from bridge.dlq.report import Outcome, ReplayItem, ReplayReport
from bridge.kafka.access import KafkaAccess
from bridge.kafka.checkpoint import Checkpoint
from bridge.ops.metrics import Metrics
from bridge.ops.progress import Progress, ProgressFactory
from bridge.passentry.client import PassEntryClient
from bridge.passentry.pages import (
    DecodedPage,
    Listed,
    ListedReject,
    PageBody,
    Rejected,
    ValidScan,
    add_scan,
)

__all__ = ["ReplayRequest", "Replayer"]

log = logging.getLogger(__name__)

# Buckets the scans topic is read in: only their number matters here (one set per bucket).
_BUCKET_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    source_id: str
    # Replay only ids whose reason now is one of these; empty: every reason.
    reasons: frozenset[str] = frozenset()
    # When they were dead-lettered: [since, until); None: from the start, to now.
    since_ms: int | None = None
    until_ms: int | None = None
    dry_run: bool = False
    # Write as the source even while a live member owns it (fencing it).
    force: bool = False
    batch: int = 500
    live_margin_ms: int = BOUNDARY_MARGIN_MS
    request_budget: float = 3.0


@dataclass(slots=True)
class _Passing:
    """A dead letter whose scan decodes, behind the horizon: published unless Kafka has it."""

    history: History
    scan: ValidScan


class Replayer(SourceJob):
    def __init__(
        self, config: Config, request: ReplayRequest, *, metrics: Metrics | None = None,
        progress: ProgressFactory | None = None, stop: threading.Event | None = None,
        client: PassEntryClient | None = None, access: KafkaAccess | None = None,
    ) -> None:  # fmt: skip
        super().__init__(
            config, request.source_id, request_budget=request.request_budget, metrics=metrics,
            progress=progress, stop=stop, client=client, access=access,
        )  # fmt: skip
        self._request = request
        self._letters = DeadLetterReader(self._conf, config.bridge.dlq_topic, self._timeout_s)
        # Today's code: the encoder and enrichment the live bridge runs.
        self._encoder = self._wiring.encoder()
        self._enricher = self._wiring.enricher(self._client)

    def run(self) -> ReplayReport:
        started = time.monotonic()
        req, br = self._request, self._config.bridge
        report = ReplayReport(req.source_id, br.dlq_topic, req.since_ms, req.until_ms,
                              sorted(req.reasons), dry_run=req.dry_run)  # fmt: skip
        choice = self._choose_writer(force=req.force)
        report.writer, report.owner = choice.writer, choice.owner
        report.owners_unknown = choice.owners_unknown
        if not req.dry_run:
            self._repairer = self._open(choice)  # fence before anything is read
        checkpoint = self._checkpoints.read(self._timeout_s, topic_may_be_missing=True)
        report.horizon = horizon = source_horizon(
            self._spec.passentry, checkpoint, req.live_margin_ms
        )
        # Behind a live bridge only what it will never publish; as the source, all of it.
        behind_live = choice.writer is Writer.BEHIND_LIVE
        report.publish_before_ms = horizon.ms if behind_live else None
        histories = self._letters.histories(
            req.source_id, since_ms=req.since_ms, until_ms=req.until_ms, keep_payload=True,
            progress=self._progress,
        )  # fmt: skip
        report.letters_read = sum(h.count for h in histories.values())
        chosen = [h for h in histories.values() if not req.reasons or h.reason in req.reasons]
        bar = self._bar("replay", "scans", len(chosen))
        try:
            passing = self._decode(chosen, report, behind_live, horizon.ms, bar)
            absent = self._absent(passing, checkpoint, report, bar)
            self._publish(absent, report, bar)
            if self._repairer is not None and not self._stop.is_set():
                self._repairer.flush()
        finally:
            if bar is not None:
                bar.close()
        if self._repairer is not None:
            totals = self._repairer.totals
            report.published, report.dead_letters_written = totals.published, totals.dead_letters
        report.requests = api_requests(self.metrics)
        report.seconds = time.monotonic() - started
        return report

    def _open(self, choice: WriterChoice) -> Repairer:
        req = self._request
        return self._open_repairer(
            choice, since_ms=req.since_ms or 0, until_ms=req.until_ms or int(time.time() * 1000),
            command="dlq replay", chunk=req.batch,
        )  # fmt: skip

    def _decode(
        self, chosen: list[History], report: ReplayReport, behind_live: bool,
        horizon_ms: int | None, bar: Progress | None,
    ) -> list[_Passing]:  # fmt: skip
        """Steps 1 and 2: what decodes, and may be published now."""
        passing: list[_Passing] = []
        rejects: list[ListedReject] = []
        for history in chosen:
            page = DecodedPage()
            raw = msgspec.Raw(history.latest.raw)
            add_scan(raw, page, PageBody(raws=[raw]), 0)
            if page.rejected:
                rejects += self._failed(history, page.rejected[0], report)
            elif behind_live and (horizon_ms is None or page.scans[0].created_ms >= horizon_ms):
                self._count(report, history, Outcome.AHEAD_OF_HORIZON)
            else:
                passing.append(_Passing(history, page.scans[0]))
                continue
            if bar is not None:
                bar.advance(1)
        if rejects and self._repairer is not None:
            self._repairer.add([], rejects)
        return passing

    def _absent(
        self, passing: list[_Passing], checkpoint: Checkpoint | None, report: ReplayReport,
        bar: Progress | None,
    ) -> list[_Passing]:  # fmt: skip
        """Step 3: those the source's topics do not hold, in id order."""
        if not passing:
            return []
        created = [p.scan.created_ms for p in passing]
        buckets = split_range(min(created), max(created) + 1, _BUCKET_MS)
        repaired = sorted(self._repairer.topics) if self._repairer is not None else None
        scope = kafka_scope(self._wiring, checkpoint, repaired, with_dlq=False)
        inventory = InventoryReader(self._conf, scope, self._timeout_s).read(
            buckets, self._progress
        )
        report.kafka_records = inventory.records_read
        held = _Held(inventory)
        absent: list[_Passing] = []
        for item in passing:
            if held.has(item.scan):
                self._count(report, item.history, Outcome.ALREADY_PUBLISHED)
                if bar is not None:
                    bar.advance(1)
            else:
                absent.append(item)
        absent.sort(key=lambda p: p.scan.id_int)
        return absent

    def _publish(self, absent: list[_Passing], report: ReplayReport, bar: Progress | None) -> None:
        """Steps 4 and 5, a batch at a time."""
        size = self._request.batch
        for start in range(0, len(absent), size):
            if self._stop.is_set():
                return
            batch = absent[start : start + size]
            listed = [self._listed(item, report) for item in batch]
            enriched = self._enricher.enrich(listed)
            scans: list[Listed] = []
            rejects: list[ListedReject] = []
            for item, one, body in zip(batch, listed, self._encoder.encode(enriched), strict=True):
                if isinstance(body, Exception):
                    detail = f"{type(body).__name__}: {body}"[:300]
                    rejected = Rejected("encode_error", detail, item.history.latest.raw,
                                        item.scan.resource.id)  # fmt: skip
                    rejects += self._failed(item.history, rejected, report)
                else:
                    scans.append(one)
                    self._count(report, item.history, Outcome.PUBLISHED)
            if self._repairer is not None:
                self._repairer.add(scans, rejects)
            if bar is not None:
                bar.advance(len(batch))

    def _listed(self, item: _Passing, report: ReplayReport) -> Listed:
        """The dead letter's scan on a page holding the pass and reader PassEntry gives."""
        letter = item.history.latest
        fetched = self._client.get_scan(item.scan.resource.id)
        page = DecodedPage(scans=[item.scan])
        if fetched is None:
            # Its pass is fetched as for any page that lacks it; its reader stays null.
            report.not_in_passentry += 1
            log.info("scan not found in PassEntry: enriched from the dead letter alone",
                     extra={"scan_id": item.scan.resource.id})  # fmt: skip
        else:
            page.passes, page.readers = fetched.passes, fetched.readers
        url = letter.source_url or f"{self._letters.topic}:{letter.partition}@{letter.offset}"
        return Listed(item.scan, page, url)

    def _failed(
        self, history: History, rejected: Rejected, report: ReplayReport
    ) -> list[ListedReject]:
        """A dead letter that still fails: a new one when its reason changed."""
        letter = history.latest
        if rejected.reason == letter.reason:
            self._count(report, history, Outcome.STILL_FAILING, detail=rejected.detail)
            return []
        self._count(report, history, Outcome.NEW_REASON, rejected.reason, rejected.detail)
        # The original's key, so that the new dead letter lands in its partition.
        reader_id = letter.key.decode(errors="replace") if letter.key else rejected.reader_id
        again = Rejected(rejected.reason, rejected.detail, letter.raw, letter.scan_id, reader_id)
        return [ListedReject(again, letter.source_url)]

    def _count(
        self, report: ReplayReport, history: History, outcome: Outcome,
        new_reason: str | None = None, detail: str | None = None,
    ) -> None:  # fmt: skip
        report.add(ReplayItem(history.id, history.reason, outcome, new_reason, detail))


class _Held:
    """The ids the source's topics hold, one bucket's set built when first asked."""

    def __init__(self, inventory: Inventory) -> None:
        self._inventory = inventory
        self._sets: dict[int, set[int]] = {}

    def has(self, scan: ValidScan) -> bool:
        buckets = self._inventory.buckets
        index = (scan.created_ms - buckets[0].start_ms) // (buckets[0].end_ms - buckets[0].start_ms)
        ids = self._sets.get(index)
        if ids is None:
            ids = self._sets[index] = self._inventory.main_ids(index)
        return scan.id_int in ids
