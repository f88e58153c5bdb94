"""The order of the stages and when the cursor moves: read -> dedup -> enrich -> encode ->
publish -> commit.

This is the one place that decides what is new and what one Kafka transaction holds. It
asks the slice reader (``bridge.passentry.slices``) for what PassEntry has, and commits each
chunk in one transaction: the records, the dead letters and the checkpoint become visible
together or not at all. The dedup window moves only after the broker acknowledged a commit;
a failed chunk leaves it, and the reader's position, where they were.

Start-up order for exactly-once is :meth:`Pipeline.restore`: ``init_transactions`` first (it
fences a zombie with our transactional id and settles its open transaction), then the
checkpoint, then the window rebuilt from what this source committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bridge.avro.encoder import Encoder
from bridge.dedup import DedupWindow, RejectMemory, Verdict
from bridge.enrich import Enricher
from bridge.kafka.checkpoint import CheckpointStore, WindowRebuild, make_checkpoint
from bridge.kafka.producer import OutRecord, Sink
from bridge.kafka.records import RecordBuilder
from bridge.ops.metrics import Metrics
from bridge.passentry.pages import Listed, Rejected
from bridge.passentry.slices import ReadStats, Slice, SliceReader

__all__ = ["CycleStats", "Pipeline", "PipelineSettings", "Restored"]

log = logging.getLogger(__name__)

# Scans per Kafka transaction: big enough to amortise the commit, small enough that a
# failed one costs little to redo.
_CHUNK = 1000


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
class _Chunk:
    """One transaction's worth: the scans to publish, dead letters riding with them, and
    the ids the window learns once it commits."""

    scans: list[Listed]
    extra: list[OutRecord]
    extra_ids: list[int]
    # End of the slice, when this chunk completes it: the checkpoint records it.
    slice_end: int | None


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
    ) -> None:
        self._reader = reader
        self._enricher = enricher
        self._encoder = encoder
        self._records = records
        self._publisher = publisher
        self._checkpoints = checkpoints
        self.window = window
        self._metrics = metrics
        self._settings = settings
        self._ensure_topics = ensure_topics
        self._start_ms = settings.start_ms
        # Every topic this source wrote to: restore reads them back to rebuild the window.
        self.topics_written: set[str] = set()
        self.rejects = RejectMemory(ttl_s=window.lookback_ms / 1000 + 120)

    @property
    def reader(self) -> SliceReader:
        return self._reader

    def close(self) -> None:
        self._reader.close()

    def restore(self) -> Restored:
        """Fence, then read what was committed, then rebuild the dedup window from it."""
        self._publisher.init()
        checkpoint = self._checkpoints.read()
        self.rejects.clear()
        self.window.reset()
        self._reader.reset(None)
        if checkpoint is None:
            self._start_ms = self._settings.start_ms
            return Restored(True, self._start_ms, None, None)
        if checkpoint.watermark is None:
            self._start_ms = checkpoint.since_ms or self._settings.start_ms
            return Restored(False, self._start_ms, None, None)
        self.window.reset(checkpoint.watermark_int())
        rebuilt = self._checkpoints.rebuild(
            self.window,
            self.rejects,
            [*checkpoint.topics, *self._settings.fixed_topics],
            self._settings.dlq_topic,
        )
        self.topics_written = set(checkpoint.topics)
        self._reader.reset(checkpoint.polled_until_ms)
        self._watermark_metrics()
        return Restored(False, None, checkpoint.watermark, rebuilt)

    def cycle(self, stop: threading.Event, *, until_ms: int | None = None) -> CycleStats:
        """Read the slice after the cursor (ending at ``until_ms``, default now), publish it."""
        started = time.perf_counter()
        stats = CycleStats()
        reads = ReadStats()
        known = self.window.count_between
        for found in self._reader.recheck_overlap(known, reads, stop):
            self._publish(found, stats, stop, slice_end=None)
        stats.read(reads)
        if stop.is_set():
            return stats
        fallback = self.window.cursor_ms()
        read = self._reader.next_slice(
            self._start_ms if fallback is None else fallback, until_ms, stop
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
        self._reader.polled_until = read.before
        if not stats.busy:
            reads = ReadStats()
            cursor, sweep_ms = self.window.cursor_ms(), self.window.sweep_ms
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
        fresh: list[Listed] = []
        late: list[OutRecord] = []
        late_ids: list[int] = []
        duplicates = 0
        for item in found.scans.values():
            verdict = self.window.classify(item.scan.id_int)
            if verdict is Verdict.NEW:
                fresh.append(item)
            elif verdict is Verdict.LATE:
                stats.late += 1
                late.append(self._late(item))
                late_ids.append(item.scan.id_int)
            else:
                duplicates += 1
        stats.duplicates += duplicates
        self._metrics.scans_duplicate.inc(duplicates)
        fresh.sort(key=lambda item: item.scan.id_int)
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

    def _commit(self, chunk: _Chunk, stats: CycleStats) -> None:
        """Enrich, encode and publish one chunk in one transaction with its checkpoint."""
        enriched = self._enricher.enrich(chunk.scans)
        records = self._records.scans(enriched, self._encoder.encode(enriched))
        records.extend(chunk.extra)
        if not records:
            return
        new_ids = [item.scan.id_int for item in chunk.scans]
        new_ids.extend(chunk.extra_ids)
        topics = {r.topic for r in records}
        self._ensure_topics(sorted(topics))
        # The watermark as it will be once this chunk commits.
        watermark = max(self.window.watermark, *new_ids, 0)
        polled_until = self._reader.polled_until if chunk.slice_end is None else chunk.slice_end
        checkpoint = make_checkpoint(
            self._settings.source_id,
            watermark,
            self.topics_written | topics,
            polled_until_ms=polled_until,
        )
        acked = self._publisher.send(
            records, self._checkpoints.record(checkpoint), self._settings.delivery_timeout_s
        )
        self.topics_written |= topics
        self._account(acked, records, stats)
        self.window.add_all(new_ids)
        self._metrics.dedup_window_ids.set(len(self.window))
        self._watermark_metrics()

    def _account(
        self, acked: dict[str, int], records: Iterable[OutRecord], stats: CycleStats
    ) -> None:
        dlq = self._settings.dlq_topic
        for topic, count in acked.items():
            stats.topics[topic] = stats.topics.get(topic, 0) + count
            if topic == dlq:
                stats.dead_letters += count
            else:
                stats.published += count
                self._metrics.scans_published.labels(topic).inc(count)
        for record in records:
            if record.dlq_reason is not None:
                self._metrics.dlq_records.labels(record.dlq_reason).inc()

    def _watermark_metrics(self) -> None:
        if self.window.watermark:
            self._metrics.published_up_to((self.window.watermark >> 80) / 1000)
