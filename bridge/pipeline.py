"""The order of the stages and when the cursor moves: read -> dedup -> enrich -> encode ->
publish -> commit.

This is the one place that decides what is new and what one Kafka transaction holds. Scans
come by two paths: the slice reader (``bridge.passentry.slices``) polls what PassEntry has,
and the webhook inbox (``bridge.webhook``) brings what PassEntry pushed. One dedup window
spans both, keyed by the UUIDv7 id, so a scan is one record whichever path brings it (or
both). Each chunk commits in one transaction: the records, the dead letters, the checkpoint
and, for pushed scans, the inbox position become visible together or not at all. The dedup
window moves only after the broker acknowledged a commit; a failed chunk leaves it, and the
reader's position, where they were.

A pipeline runs on its source's one thread. Pushed events are published while a poll waits
for PassEntry (``bridge.webhook.pump``), which is only ever between a read and the judging
of what it found, never between judging a chunk new and committing it.

Start-up order for exactly-once is :meth:`Pipeline.restore`: ``init_transactions`` first (it
fences a zombie with our transactional id and settles its open transaction), then the
checkpoint, then the window rebuilt from what this source committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.avro.encoder import Encoder
from bridge.dedup import DedupWindow, RejectMemory, Verdict
from bridge.enrich import Enricher
from bridge.errors import InvalidWebhookError, KafkaRetriableError
from bridge.kafka.checkpoint import (
    CheckpointStore,
    InboxPosition,
    WindowRebuild,
    make_checkpoint,
)
from bridge.kafka.producer import Sink
from bridge.kafka.records import OutRecord, RecordBuilder
from bridge.kafka.scan_records import ScanRecords
from bridge.ops.metrics import Metrics
from bridge.passentry.pages import Listed, Rejected
from bridge.passentry.slices import ReadStats, Slice, SliceReader
from bridge.tracing.hooks import NO_TRACING, Tracing
from bridge.uuid7 import int_millis
from bridge.webhook.events import decode_event
from bridge.webhook.inbox import InboxBatch, InboxEvent

__all__ = ["CycleStats", "Pipeline", "PipelineSettings", "PushStats", "Restored"]

log = logging.getLogger(__name__)

# Scans per Kafka transaction: big enough to amortise the commit, small enough that a
# failed one costs little to redo.
_CHUNK = 1000
# Readers a webhook batch may ask PassEntry for (a request each), and the time it may spend
# asking: the rest of a batch of many unseen readers (the first after a start) waits for
# the poll, and a slow API holds a batch up for about a second at most.
_READER_LOOKUPS = 4
_READER_LOOKUPS_S = 1.0


@dataclass(slots=True)
class CycleStats:
    pages: int = 0
    walks: int = 0
    fetched: int = 0
    published: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    late: int = 0
    # More than one page, or a slice cut short: poll again soon.
    busy: bool = False
    topics: dict[str, int] = field(default_factory=dict)

    def read(self, stats: ReadStats) -> None:
        self.pages += stats.pages
        self.walks = stats.walks
        self.busy = self.busy or stats.busy


@dataclass(slots=True)
class PushStats:
    """What one batch of inbox events became."""

    events: int = 0
    published: int = 0
    # Already published, by polling or by an earlier delivery of the same event.
    duplicates: int = 0
    # Left to polling: reader not known in full, older than the window, or invalid.
    deferred: int = 0


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    source_id: str
    dlq_topic: str
    # Topics written whatever the checkpoint says (the DLQ, the scans topic unless routed):
    # restore reads them back too.
    fixed_topics: tuple[str, ...]
    # How long a commit may take before its outcome counts as unknown.
    delivery_timeout_s: float
    # Where a source with no checkpoint starts reading (Unix ms).
    start_ms: int


@dataclass(frozen=True, slots=True)
class Restored:
    """Where :meth:`Pipeline.restore` left the source."""

    fresh: bool
    start_ms: int | None
    watermark: str | None
    rebuild: WindowRebuild | None


@dataclass(slots=True)
class _ReaderLookups:
    """The readers one webhook batch asked PassEntry for: each once, a few at most, and
    none more once the asking took ``_READER_LOOKUPS_S``."""

    readers: set[str] = field(default_factory=set)
    spent_s: float = 0.0

    def may_ask(self, reader_id: str) -> bool:
        return (
            reader_id not in self.readers
            and len(self.readers) < _READER_LOOKUPS
            and self.spent_s < _READER_LOOKUPS_S
        )

    def asked(self, reader_id: str, seconds: float) -> None:
        self.readers.add(reader_id)
        self.spent_s += seconds


@dataclass(slots=True)
class _Chunk:
    """One transaction's worth: the scans to publish, dead letters riding with them, and
    the ids the window learns once it commits."""

    scans: list[Listed]
    extra: list[OutRecord]
    extra_ids: list[int]
    # End of the slice, when this chunk completes it: the checkpoint records it.
    slice_end: int | None


@dataclass(slots=True)
class _Tally:
    """What a chunk's records tell the metrics and the checkpoint, read in one pass as soon
    as they are made, while they are in the CPU's caches: the same pass after producing
    them cost 0.6-1.7 µs a scan in ``bench.stages`` (0.04 µs on records still in cache)."""

    topics: set[str]
    # Creation times of the scans published, for the end-to-end latency.
    created: list[int]
    dlq_reasons: list[str]

    @classmethod
    def of(cls, records: list[OutRecord]) -> _Tally:
        tally = cls(set(), [], [])
        for record in records:
            tally.topics.add(record.topic)
            if record.dlq_reason is not None:
                tally.dlq_reasons.append(record.dlq_reason)
            elif record.created_ms:
                tally.created.append(record.created_ms)
        return tally


# How long restores may keep missing the checkpoint's own last scan before the source goes on
# without it (Pipeline._check_rebuilt): far longer than a restarting broker's moment.
_WATERMARK_GRACE_S = 120.0


class Pipeline:
    def __init__(
        self,
        *,
        reader: SliceReader,
        enricher: Enricher,
        encoder: Encoder,
        records: RecordBuilder,
        publisher: Sink,
        checkpoints: CheckpointStore,
        window: DedupWindow,
        metrics: Metrics,
        settings: PipelineSettings,
        ensure_topics: Callable[[list[str]], None],
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self._reader = reader
        self._enricher = enricher
        self._records = records
        self._scan_records = ScanRecords(enricher, encoder, records)
        self._publisher = publisher
        self._checkpoints = checkpoints
        self.window = window
        self._metrics = metrics
        self._settings = settings
        self._ensure_topics = ensure_topics
        self._tracing = tracing
        self._start_ms: int | None = settings.start_ms
        # Every topic this source wrote to: restore reads them back to rebuild the window.
        self.topics_written: set[str] = set()
        # Where the source's webhook events continue in the inbox, as last committed: every
        # checkpoint carries it (None until a transaction read the inbox), and the inbox
        # reader (re)starts there. The one record of it in the process.
        self.inbox: InboxPosition | None = None
        self.rejects = RejectMemory(ttl_s=window.lookback_ms / 1000 + 120)
        # Since when restores have not found the checkpoint's own last scan (see restore).
        self._watermark_missing_since: float | None = None

    @property
    def reader(self) -> SliceReader:
        return self._reader

    def close(self) -> None:
        self._reader.close()

    def restore(self) -> Restored:
        """Fence, then read what was committed, then rebuild the dedup window from it."""
        self._publisher.init()
        with self._checkpoints.sharing_lookups():
            return self._restore()

    def _restore(self) -> Restored:
        state = self._checkpoints.read_state()
        checkpoint = state.checkpoint
        self.inbox = checkpoint.inbox if checkpoint is not None else None
        self.rejects.clear()
        self.window.reset()
        self._reader.reset(None)
        # What this source's repairs and backfills wrote is read back too.
        topics = [*self._settings.fixed_topics, *state.repaired_topics]
        dlq = self._settings.dlq_topic
        if checkpoint is None:
            # A first start: what a backfill already published for this source from where
            # polling starts (and what the sweep may look at behind it) is not published
            # again. The cursor stays at the start, so nothing polled from there is late.
            self._start_ms = self._settings.start_ms
            self.window.read_until_ms = self._start_ms
            if not state.ever_committed:
                # Nothing of this source's is there to find. On topics that other sources
                # share, reading them back would cost every record those published since
                # ``since``: all of a backlog, for a fleet started together from far back.
                return Restored(True, self._start_ms, None, None)
            since = self._start_ms - self.window.lookback_ms - self.window.sweep_ms
            rebuilt = self._checkpoints.rebuild(self.window, self.rejects, topics, dlq,
                                                since_ms=since)  # fmt: skip
            return Restored(True, self._start_ms, None, rebuilt)
        if checkpoint.watermark is None:
            # Moved by ``state reset``: everything from there is published again, by design.
            self._start_ms = checkpoint.since_ms or self._settings.start_ms
            self.window.read_until_ms = self._start_ms
            return Restored(False, self._start_ms, None, None)
        self._start_ms = None
        self.window.reset(checkpoint.watermark_int())
        self.window.read_until_ms = checkpoint.polled_until_ms
        rebuilt = self._checkpoints.rebuild(
            self.window, self.rejects, [*checkpoint.topics, *topics], dlq
        )
        self._check_rebuilt(checkpoint.watermark_int(), rebuilt)
        self.topics_written = set(checkpoint.topics)
        self._reader.reset(checkpoint.polled_until_ms)
        self._watermark_metrics()
        return Restored(False, None, checkpoint.watermark, rebuilt)

    def _check_rebuilt(self, watermark: int, rebuilt: WindowRebuild) -> None:
        """The checkpoint's last scan (published, or dead-lettered) must be among what the
        window was rebuilt from. A broker that has just restarted can answer, for a moment,
        that no record is newer than the window's start (ListOffsets by time gives -1 for
        every partition): an empty window then, and the lookback published again, every
        scan of it twice. Such a restore is failed and tried again; only if the scan stays
        missing for ``_WATERMARK_GRACE_S`` (deleted by the topic's retention after a long
        stop, say) does the source go on with the window it could read."""
        if watermark in self.window:
            self._watermark_missing_since = None
            return
        now = time.monotonic()
        if self._watermark_missing_since is None:
            self._watermark_missing_since = now
        if now - self._watermark_missing_since < _WATERMARK_GRACE_S:
            raise KafkaRetriableError(
                f"the window rebuilt from {', '.join(rebuilt.topics)} lacks the checkpoint's"
                f" own last scan ({rebuilt.records} records read): a broker that has just"
                " restarted answers before its logs are ready; restoring again"
            )
        log.warning(
            "the checkpoint's last scan is not in Kafka any more (retention?): going on with"
            " the window that could be read",
            extra={"source_id": self._settings.source_id, "records_read": rebuilt.records},
        )
        self._watermark_missing_since = None

    def cycle(
        self, stop: threading.Event, *, until_ms: int | None = None, settle_ms: int | None = None
    ) -> CycleStats:
        """Read the slice after the cursor (ending at ``until_ms``, default now), publish it.

        ``settle_ms`` is set while webhooks flow: new time is then checked by counts (the
        window already holds what the webhooks brought) and only differences are read; it
        stays ``settle_ms`` behind now so that webhooks in flight land first.
        """
        started = time.perf_counter()
        stats = CycleStats()
        reads = ReadStats()
        known = self.window.count_between
        for found in self._reader.recheck_overlap(known, reads, stop):
            self._publish(found, stats, stop, slice_end=None)
        stats.read(reads)
        if stop.is_set():
            return stats
        polled_until = self._reader.polled_until
        if settle_ms is not None and polled_until is not None:
            end = int(time.time() * 1000) - settle_ms
            if until_ms is not None:
                end = min(end, until_ms)
            reads = ReadStats()
            confirmed = self._reader.confirm(polled_until - 1, end, known, reads, stop)
            if confirmed is not None:
                for found in confirmed:
                    self._publish(found, stats, stop, slice_end=None)
                stats.read(reads)
                if stop.is_set():
                    return stats
                self._advance(max(end, polled_until))
                return self._after_cycle(stats, stop, started)
            stats.read(reads)
        # Where polling starts when the reader has no position: the start a first start or
        # a reset gave, else (a checkpoint of an older version) the window's cursor.
        start = self._start_ms if self._start_ms is not None else self.window.cursor_ms()
        read = self._reader.next_slice(
            self._settings.start_ms if start is None else start, until_ms, stop
        )
        if read is None or stop.is_set():
            return stats
        stats.read(read.stats)
        try:
            self._publish(read.found, stats, stop, slice_end=read.before)
        except BaseException:
            self._reader.discard_ahead()
            raise
        if stop.is_set():
            return stats
        self._advance(read.before)
        return self._after_cycle(stats, stop, started)

    def _advance(self, polled_until: int) -> None:
        """Polling has read everything before ``polled_until``, and it is committed."""
        self._reader.polled_until = polled_until
        self.window.read_until_ms = polled_until

    def _after_cycle(self, stats: CycleStats, stop: threading.Event, started: float) -> CycleStats:
        if not stats.busy:
            reads = ReadStats()
            cursor, sweep_ms = self.window.cursor_ms(), self.window.sweep_ms
            known = self.window.count_between
            for found in self._reader.sweep(cursor, sweep_ms, known, reads, stop):
                self._publish(found, stats, stop, slice_end=None)
            stats.pages += reads.pages
        self._metrics.poll_cycle_duration.observe(time.perf_counter() - started)
        return stats

    def _publish(
        self, found: Slice, stats: CycleStats, stop: threading.Event, slice_end: int | None
    ) -> None:
        """Publish what is new in ``found``, in id order, one transaction per chunk."""
        fetched = found.size
        stats.fetched += fetched
        self._metrics.scans_fetched.inc(fetched)
        self._enricher.remember(found.pages)
        fresh, late_items, duplicates = self.window.sort_out(found.scans)
        late = [self._late(item) for item in late_items]
        late_ids = [item.scan.id_int for item in late_items]
        stats.late += len(late)
        stats.duplicates += duplicates
        self._metrics.scans_duplicate.inc(duplicates)
        dead = [
            self._records.dead_letter(item.rejected, item.url)
            for item in found.rejected.values()
            if self.rejects.first_time(item.rejected)
        ]
        # Dead letters ride with the first chunk; an empty slice may still carry some. Late
        # scans join the window too, so the next sweep knows they were dead-lettered.
        extra, extra_ids = late + dead, late_ids
        starts = range(0, max(len(fresh), 1 if extra else 0), _CHUNK)
        for start in starts:
            if stop.is_set():
                return
            # The last chunk's checkpoint also records that the slice was read to its end.
            end = slice_end if start == starts[-1] else None
            self._commit(_Chunk(fresh[start : start + _CHUNK], extra, extra_ids, end), stats)
            extra, extra_ids = [], []

    def _late(self, item: Listed) -> OutRecord:
        scan = item.scan
        self._metrics.late_scans.inc()
        log.warning(
            "late scan: created before the dedup window; sent to the DLQ, not published",
            extra={"scan_id": scan.resource.id, "lookback_s": self.window.lookback_ms / 1000},
        )
        rejected = Rejected(
            "late_scan",
            "created before the lookback window; it may or may not have been published",
            bytes(scan.raw),
            scan.resource.id,
            scan.resource.reader_id,
        )
        return self._records.dead_letter(rejected, item.url)

    def publish_pushed(self, batch: InboxBatch) -> PushStats:
        """Publish the new scans of inbox events, in id order, in one transaction with the
        inbox position. A scan already published (by either path) is skipped; one whose
        reader the bridge has not seen in full lately and cannot read with the scan now (nor
        before polling has caught up to it), or that is older than the window, is left to
        polling, which publishes or dead-letters it as usual."""
        stats = PushStats(events=len(batch.events))
        fresh: dict[int, Listed] = {}
        lookups = _ReaderLookups()
        for event in batch.events:
            for item in self._pushed_scans(event, stats, lookups):
                if item.scan.id_int in fresh:
                    stats.duplicates += 1  # PassEntry delivered the event twice
                else:
                    fresh[item.scan.id_int] = item
        cycle = CycleStats()
        items = sorted(fresh.values(), key=lambda item: item.scan.id_int)
        self._commit(_Chunk(items, [], [], None), cycle, batch.next, path="webhook")
        stats.published = cycle.published
        events = self._metrics.webhook_events
        events.labels("published").inc(stats.published)
        events.labels("duplicate").inc(stats.duplicates)
        events.labels("deferred").inc(stats.deferred)
        return stats

    def _pushed_scans(
        self, event: InboxEvent, stats: PushStats, lookups: _ReaderLookups
    ) -> list[Listed]:
        """The event's scans to publish; a reader no poll showed lately is read with its
        scan where ``lookups`` allows."""
        try:
            decoded = decode_event(event.body)
        except InvalidWebhookError:
            # The receiver checked the shape before the event was written: only a foreign
            # record in the inbox lands here.
            self._defer(stats, "invalid_event")
            return []
        page = decoded.page
        if page is None:
            return []
        page.trace = event.trace  # its scans continue the webhook request's trace
        for _ in page.rejected:
            self._defer(stats, "invalid_scan")
        found = []
        for scan in page.scans:
            verdict = self.window.classify(scan.id_int)
            if verdict is Verdict.DUPLICATE:
                stats.duplicates += 1
                continue
            if verdict is Verdict.LATE:
                self._defer(stats, "late")
                continue
            reader_id = scan.resource.reader_id or ""
            reader = self._enricher.recent_reader(reader_id)
            if reader is None and self._polled_near(scan.id_int) and lookups.may_ask(reader_id):
                started = time.monotonic()
                reader = self._enricher.look_up_reader(scan)
                lookups.asked(reader_id, time.monotonic() - started)
            if reader is None:
                self._defer(stats, "unknown_reader")
                continue
            page.readers[reader_id] = reader
            found.append(Listed(scan, page, f"webhook:{decoded.event_id}"))
        return found

    def _polled_near(self, scan_id: int) -> bool:
        """Whether polling has read to within a lookback of the scan. Before that (a start,
        or a poll catching up from far behind) older scans of its partition may still be
        unpublished: a scan published now by webhook would come before them, so one whose
        reader is unseen waits for the poll, which reaches the scans in order."""
        polled = self._reader.polled_until
        return polled is not None and int_millis(scan_id) - polled <= self.window.lookback_ms

    def _defer(self, stats: PushStats, reason: str) -> None:
        stats.deferred += 1
        self._metrics.webhook_deferred.labels(reason).inc()

    def _commit(
        self,
        chunk: _Chunk,
        stats: CycleStats,
        inbox: InboxPosition | None = None,
        path: str = "poll",
    ) -> None:
        """Enrich, encode and publish one chunk in one transaction with its checkpoint (and
        the inbox position its events were read up to).

        Nothing here may serve the webhook inbox while it waits (a missing pass is fetched
        plainly): the chunk's scans were judged new against the window as it is now."""
        records = self._scan_records.build(chunk.scans)
        records.extend(chunk.extra)
        if not records and inbox is None:
            return
        if inbox is None:
            inbox = self.inbox  # a poll's transaction carries the position on unchanged
        new_ids = [item.scan.id_int for item in chunk.scans]
        new_ids.extend(chunk.extra_ids)
        tally = _Tally.of(records)
        topics = tally.topics
        self._ensure_topics(sorted(topics))
        # The watermark as it will be once this chunk commits.
        watermark = max(self.window.watermark, *new_ids, 0)
        polled_until = self._reader.polled_until if chunk.slice_end is None else chunk.slice_end
        checkpoint = make_checkpoint(
            self._settings.source_id,
            watermark,
            self.topics_written | topics,
            polled_until_ms=polled_until,
            inbox=inbox,
        )
        acked = self._tracing.publish(
            self._publisher,
            records,
            chunk.scans,
            self._checkpoints.record(checkpoint),
            self._settings.delivery_timeout_s,
        )
        self.topics_written |= topics
        self.inbox = inbox
        self._account(acked, tally, stats, path)
        self.window.add_all(new_ids)
        self._metrics.dedup_window_ids.labels(self._settings.source_id).set(len(self.window))
        self._watermark_metrics()

    def _account(self, acked: dict[str, int], tally: _Tally, stats: CycleStats, path: str) -> None:
        # Committed: read_committed consumers see the records from now. From the scan's
        # creation to here is the end-to-end latency.
        now_ms = time.time() * 1000
        dlq = self._settings.dlq_topic
        for topic, count in acked.items():
            stats.topics[topic] = stats.topics.get(topic, 0) + count
            if topic == dlq:
                stats.dead_letters += count
            else:
                stats.published += count
                self._metrics.scans_published.labels(topic).inc(count)
        for reason in tally.dlq_reasons:
            self._metrics.dlq_records.labels(reason).inc()
        self._metrics.end_to_end_latency.labels(path).observe_created(tally.created, now_ms)

    def _watermark_metrics(self) -> None:
        if self.window.watermark:
            self._metrics.published_up_to(
                self._settings.source_id, int_millis(self.window.watermark) / 1000
            )
