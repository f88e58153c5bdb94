"""The loop: fetch -> dedup -> enrich -> encode -> publish -> commit.

This is the one place that decides the order of the stages and when the cursor moves.

How a cycle reads PassEntry safely. The API pages by offset, newest first, and a scan can
become visible after its id was minted, which inserts it in the middle of the list while we
walk it and shifts every older scan one place later. A walk can then miss a scan that moved
from a page not yet fetched into one already fetched. So a cycle:

1. pins a time slice ``[createdAfter, createdBefore)``: after = where the last complete
   slice ended, less a short overlap (for clock skew between PassEntry's nodes and short
   visibility delays), before = now, shrunk until the slice holds at most
   ``max_cycle_scans`` (that bounds memory however far behind the bridge is);
2. fetches every page of the slice, several at a time, keeping the scans by id;
3. checks completeness: the number of distinct scans kept must reach the largest
   ``meta.totalCount`` any page reported. If it falls short, items moved under the walk, and
   the slice is walked again (what was kept stays; duplicates merge);
4. publishes the slice in id order, in chunks; the cursor (the dedup window) moves only
   after the broker acknowledged a chunk. A failed chunk leaves it where it was.

Scans that turn up behind the overlap are found by a periodic sweep over the lookback
window and the range behind it. The sweep first compares PassEntry's ``totalCount`` for
the range with the ids the window holds there (one request); only a range whose counts
differ is split and read, so a quiet sweep costs one request whatever the traffic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bridge import __version__
from bridge.checkpoint import CheckpointStore, make_checkpoint
from bridge.dedup import DedupWindow, RejectMemory, Verdict
from bridge.encode import Encoder, Framer, Framing
from bridge.enrich import Enricher
from bridge.metrics import Metrics
from bridge.passentry.client import FetchedPage, PassEntryClient
from bridge.passentry.pages import DecodedPage, Rejected, ValidScan
from bridge.publish import OutRecord, Sink
from bridge.routing import Router

__all__ = ["CycleStats", "Pipeline", "iso_millis"]

log = logging.getLogger(__name__)

# How many full walks of one slice before the cycle settles for what it has; the next
# cycle's lookback overlap picks up anything still missing.
_MAX_WALKS = 3
_CHUNK = 1000
# A sweep range is split while it holds more than this many pages and counts disagree.
_MAX_SWEEP_DEPTH = 12


def iso_millis(ms: int) -> str:
    """The ISO 8601 form PassEntry's createdAfter/createdBefore take, to the millisecond."""
    text = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


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


@dataclass(slots=True)
class _Slice:
    """What one walk of a time slice collected, keyed so that repeated walks merge."""

    scans: dict[int, tuple[ValidScan, DecodedPage, str]] = field(default_factory=dict)
    rejected: dict[bytes, tuple[Rejected, str]] = field(default_factory=dict)
    total: int | None = None

    def add(self, fetched: FetchedPage) -> None:
        page = fetched.page
        for scan in page.scans:
            self.scans.setdefault(scan.id_int, (scan, page, fetched.url))
        for rejected in page.rejected:
            self.rejected.setdefault(rejected.raw, (rejected, fetched.url))
        meta = page.meta
        if meta is not None and meta.total_count is not None:
            self.total = max(self.total or 0, meta.total_count)

    @property
    def complete(self) -> bool:
        return self.total is None or len(self.scans) + len(self.rejected) >= self.total


@dataclass(slots=True, frozen=True)
class _Ahead:
    """The next slice, being read while the current one is published."""

    after: int
    until_ms: int | None
    future: Future[tuple[int, _Slice, CycleStats] | None]


class Pipeline:
    def __init__(
        self,
        *,
        client: PassEntryClient,
        enricher: Enricher,
        encoder: Encoder,
        framer: Framer,
        publisher: Sink,
        checkpoints: CheckpointStore,
        router: Router,
        window: DedupWindow,
        metrics: Metrics,
        filters: dict[str, str],
        per_page: int,
        concurrency: int,
        max_cycle_scans: int,
        poll_overlap_ms: int,
        sweep_interval_s: float,
        source_id: str,
        dlq_topic: str,
        delivery_timeout_s: float,
        start_ms: int,
        ensure_topics: Callable[[list[str]], None],
    ) -> None:
        self._client = client
        self._enricher = enricher
        self._encoder = encoder
        self._framer = framer
        self._publisher = publisher
        self._checkpoints = checkpoints
        # Every topic this source wrote to: start-up reads them back to rebuild the window.
        self.topics_written: set[str] = set()
        self._router = router
        self.window = window
        self._metrics = metrics
        self._filters = filters
        self._per_page = per_page
        self._concurrency = concurrency
        self._max_scans = max_cycle_scans
        self._overlap_ms = min(poll_overlap_ms, window.lookback_ms)
        # End of the last slice read completely (createdBefore); None before the first.
        self.polled_until: int | None = None
        self._sweep_every_s = sweep_interval_s
        self._next_sweep = time.monotonic() + self._sweep_every_s
        self._source = source_id
        self._dlq = dlq_topic
        self._delivery_timeout = delivery_timeout_s
        self._start_ms = start_ms
        self._ensure_topics = ensure_topics
        self.rejects = RejectMemory(ttl_s=window.lookback_ms / 1000 + 120)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="fetch")
        # One slice read ahead at a time, on its own thread: its page fetches use _pool.
        self._ahead_pool = ThreadPoolExecutor(1, thread_name_prefix="ahead")
        self._ahead: _Ahead | None = None

    def close(self) -> None:
        self.discard_ahead()
        self._ahead_pool.shutdown(wait=False, cancel_futures=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def start_at(self, since_ms: int) -> None:
        """Where a source with no watermark starts reading."""
        self._start_ms = since_ms

    def cycle(self, stop: threading.Event, *, until_ms: int | None = None) -> CycleStats:
        """Read one slice after the cursor (ending at ``until_ms``, default now), publish it."""
        started = time.perf_counter()
        stats = CycleStats()
        if self.polled_until is not None and self._overlap_ms > 0:
            # The overlap behind the last slice: one count request when nothing new is
            # there, which is the usual case; read only if PassEntry has more than we do.
            self._reconcile(
                self.polled_until - self._overlap_ms, self.polled_until, stats, stop,
                _MAX_SWEEP_DEPTH,
            )  # fmt: skip
            if stop.is_set():
                return stats
        after = self._poll_start()
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.after == after and ahead.until_ms == until_ms:
            fetched = ahead.future.result()
        else:
            if ahead is not None:
                ahead.future.cancel()
            fetched = self._fetch_slice(after, until_ms, stop)
        if fetched is None or stop.is_set():
            return stats
        before, collected, fetch_stats = fetched
        stats.pages += fetch_stats.pages
        stats.walks, stats.busy = fetch_stats.walks, fetch_stats.busy
        if stats.busy:
            # The slice was cut short, so the next one is already waiting: read it while
            # this one is encoded and committed, which would otherwise leave the request
            # budget idle. It is only used if this slice commits (the next poll then
            # starts where it does).
            self._ahead = _Ahead(
                before - 1,
                until_ms,
                self._ahead_pool.submit(self._fetch_slice, before - 1, until_ms, stop),
            )
        try:
            self._publish_slice(collected, stats, stop, slice_end=before)
        except BaseException:
            self.discard_ahead()
            raise
        if stop.is_set():
            return stats
        self.polled_until = before
        if not stats.busy and time.monotonic() >= self._next_sweep:
            self._sweep(stats, stop)
        self._metrics.poll_cycle_duration.observe(time.perf_counter() - started)
        return stats

    def _fetch_slice(
        self, after: int, until_ms: int | None, stop: threading.Event
    ) -> tuple[int, _Slice, CycleStats] | None:
        """Read the slice after ``after``, cut to ``max_cycle_scans``: its end, its scans,
        and the requests it took. None when there is nothing to read yet."""
        stats = CycleStats()
        before = until_ms if until_ms is not None else int(time.time() * 1000)
        if before <= after:
            return None
        before, first = self._fit_slice(after, before, stats)
        return before, self._walk(after, before, first, stats, stop), stats

    def discard_ahead(self) -> None:
        """Forget a slice read ahead: the cursor moved another way (abort, restart)."""
        if self._ahead is not None:
            self._ahead.future.cancel()
            self._ahead = None

    def _poll_start(self) -> int:
        # createdAfter is exclusive: start one ms early so a scan created in the very ms
        # the last slice ended (its createdBefore, also exclusive) is not skipped.
        if self.polled_until is not None:
            return self.polled_until - 1
        cursor = self.window.cursor_ms()
        return self._start_ms if cursor is None else cursor

    def _sweep(self, stats: CycleStats, stop: threading.Event) -> None:
        """Look again behind the poll overlap: over the lookback (a scan found there is
        published late) and the sweep range behind it (a scan found there is dead-lettered
        as late). Boundaries are whole seconds, in case PassEntry compares in seconds."""
        self._next_sweep = time.monotonic() + self._sweep_every_s
        cursor = self.window.cursor_ms()
        if cursor is None or self.polled_until is None:
            return
        lo = (cursor - self.window.sweep_ms) // 1000 * 1000
        hi = (self.polled_until - self._overlap_ms) // 1000 * 1000
        if hi > lo:
            self._reconcile(lo, hi, stats, stop, 0)

    def _reconcile(
        self, lo: int, hi: int, stats: CycleStats, stop: threading.Event, depth: int
    ) -> None:
        if stop.is_set():
            return
        # A one-scan page is enough to read totalCount, and cheap to decode.
        probe = self._client.list_scans(self._params(lo, hi, 1, per_page=1))
        stats.pages += 1
        meta = probe.page.meta
        total = meta.total_count if meta is not None else None
        if total is not None and total == self.window.count_between(lo, hi):
            return
        small = total is None or total <= 2 * self._per_page
        if small or depth >= _MAX_SWEEP_DEPTH or hi - lo <= 2000:
            busy = stats.busy
            first = self._client.list_scans(self._params(lo, hi, 1))
            stats.pages += 1
            collected = self._walk(lo, hi, first, stats, stop)
            if not stop.is_set():
                self._publish_slice(collected, stats, stop, slice_end=None)
            stats.busy = busy
            return
        mid = (lo + (hi - lo) // 2) // 1000 * 1000
        self._reconcile(lo, mid, stats, stop, depth + 1)
        self._reconcile(mid, hi, stats, stop, depth + 1)

    def _params(
        self, after: int, before: int, page: int, per_page: int | None = None
    ) -> dict[str, str]:
        return {
            **self._filters,
            "perPage": str(per_page or self._per_page),
            "createdAfter": iso_millis(after),
            "createdBefore": iso_millis(before),
            "page": str(page),
        }

    def _fit_slice(self, after: int, before: int, stats: CycleStats) -> tuple[int, FetchedPage]:
        """Shrink ``before`` until the slice holds at most ``max_cycle_scans`` scans."""
        while True:
            first = self._client.list_scans(self._params(after, before, 1))
            stats.pages += 1
            meta = first.page.meta
            count = meta.total_count if meta is not None else None
            if count is None or count <= self._max_scans or before - after <= 1:
                return before, first
            # Assume scans spread evenly, aim a little under the cap, and check again. Never
            # shrink into the overlap: a slice must end past what was already read, or the
            # poll would not move.
            span = max(1, int((before - after) * self._max_scans * 0.9 / count))
            floor = after + 1000
            new_before = max(after + span, floor)
            if new_before >= before:
                return before, first
            before = new_before
            stats.busy = True

    def _walk(
        self, after: int, before: int, first: FetchedPage, stats: CycleStats,
        stop: threading.Event,
    ) -> _Slice:  # fmt: skip
        collected = _Slice()
        collected.add(first)
        for walk in range(1, _MAX_WALKS + 1):
            stats.walks = walk
            if walk > 1:
                first = self._client.list_scans(self._params(after, before, 1))
                stats.pages += 1
                collected.add(first)
            total_pages = _total_pages(first)
            if total_pages is None:
                self._walk_links(after, before, first, collected, stats, stop)
                return collected  # no totalCount to check against: one sequential walk
            for fetched in self._prefetch(after, before, range(2, total_pages + 1)):
                if stop.is_set():
                    return collected
                stats.pages += 1
                collected.add(fetched)
            if collected.complete:
                return collected
            log.info(
                "scans moved while the slice was walked; walking it again",
                extra={"walk": walk, "have": len(collected.scans), "total": collected.total},
            )
        log.warning(
            "slice still incomplete after %d walks; the lookback overlap retries the rest",
            _MAX_WALKS,
            extra={"have": len(collected.scans), "total": collected.total},
        )
        return collected

    def _walk_links(
        self, after: int, before: int, first: FetchedPage, collected: _Slice,
        stats: CycleStats, stop: threading.Event,
    ) -> None:  # fmt: skip
        # Without meta, walk forward one page at a time: a scan inserted ahead of us only
        # pushes the rest to later pages, so this order sees duplicates, never gaps.
        page, number = first, 1
        while page.page.size > 0 and not stop.is_set():
            links = page.page.links
            if links is not None and links.next is None:
                break
            number += 1
            page = self._client.list_scans(self._params(after, before, number))
            stats.pages += 1
            collected.add(page)

    def _prefetch(self, after: int, before: int, numbers: range) -> Iterator[FetchedPage]:
        """Fetch pages with up to ``concurrency`` requests in flight, yielding in order."""
        pending: list[Future[FetchedPage]] = []
        try:
            for number in numbers:
                params = self._params(after, before, number)
                pending.append(self._pool.submit(self._client.list_scans, params))
                if len(pending) >= self._concurrency:
                    yield pending.pop(0).result()
            while pending:
                yield pending.pop(0).result()
        finally:
            for future in pending:
                future.cancel()

    def _publish_slice(
        self, collected: _Slice, stats: CycleStats, stop: threading.Event, slice_end: int | None
    ) -> None:
        window, metrics = self.window, self._metrics
        fetched = len(collected.scans) + len(collected.rejected)
        stats.fetched += fetched
        metrics.scans_fetched.inc(fetched)
        duplicates = 0
        fresh: list[tuple[ValidScan, DecodedPage, str]] = []
        late: list[OutRecord] = []
        late_ids: list[int] = []
        for item in collected.scans.values():
            scan = item[0]
            verdict = window.classify(scan.id_int)
            if verdict is Verdict.NEW:
                fresh.append(item)
            elif verdict is Verdict.LATE:
                stats.late += 1
                late.append(self._late(scan, item[2]))
                late_ids.append(scan.id_int)
            else:
                duplicates += 1
        stats.duplicates += duplicates
        metrics.scans_duplicate.inc(duplicates)
        fresh.sort(key=lambda item: item[0].id_int)
        dead = [
            self._dead_letter(rejected, url)
            for rejected, url in collected.rejected.values()
            if self.rejects.first_time(rejected)
        ]
        # Dead letters ride with the first chunk; an empty slice may still carry some. Late
        # scans join the window too, so the next sweep knows they were dead-lettered.
        extra = late + dead
        starts = range(0, max(len(fresh), 1 if extra else 0), _CHUNK)
        for start in starts:
            if stop.is_set():
                return
            # The last chunk's checkpoint also records that the slice was read to its end.
            last = start == starts[-1]
            polled_until = slice_end if last and slice_end is not None else self.polled_until
            self._publish_chunk(fresh[start : start + _CHUNK], extra, late_ids, stats, polled_until)
            extra, late_ids = [], []

    def _late(self, scan: ValidScan, url: str) -> OutRecord:
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
        return self._dead_letter(rejected, url)

    def _publish_chunk(
        self,
        chunk: list[tuple[ValidScan, DecodedPage, str]],
        extra: list[OutRecord],
        extra_ids: list[int],
        stats: CycleStats,
        polled_until: int | None,
    ) -> None:
        enriched = self._enricher.enrich([(scan, page) for scan, page, _ in chunk])
        values = self._encoder.encode(enriched)
        records: list[OutRecord] = []
        new_ids: list[int] = []
        framings: dict[str, tuple[bytes, list[tuple[str, str | bytes | None]]]] = {}
        for (scan, _, url), item, value in zip(chunk, enriched, values, strict=True):
            new_ids.append(scan.id_int)
            resource = scan.resource
            if isinstance(value, Exception):
                detail = f"{type(value).__name__}: {value}"[:300]
                rejected = Rejected(
                    "encode_error", detail, bytes(scan.raw), resource.id, item.reader_id
                )
                records.append(self._dead_letter(rejected, url))
                continue
            attrs = resource.attributes
            topic = self._router.topic(attrs.status, attrs.scan_type)
            framed = framings.get(topic)
            if framed is None:
                framed = framings[topic] = self._headers_for(self._framer.framing(topic))
            prefix, headers = framed
            records.append(
                OutRecord(
                    topic,
                    item.reader_id.encode(),
                    prefix + value,
                    [*headers, ("scan-id", resource.id)],
                    scan.created_ms,
                )
            )
        records.extend(extra)
        new_ids.extend(extra_ids)
        if not records:
            return
        topics = {r.topic for r in records}
        self._ensure_topics(sorted(topics))
        # The watermark as it will be once this chunk commits.
        watermark = max(self.window.watermark, *new_ids, 0)
        checkpoint = make_checkpoint(
            self._source, watermark, self.topics_written | topics, polled_until_ms=polled_until
        )
        acked = self._publisher.send(
            records, self._checkpoints.record(checkpoint), self._delivery_timeout
        )
        self.topics_written |= topics
        metrics = self._metrics
        for topic, count in acked.items():
            stats.topics[topic] = stats.topics.get(topic, 0) + count
            if topic == self._dlq:
                stats.dead_letters += count
            else:
                stats.published += count
                metrics.scans_published.labels(topic).inc(count)
        for record in records:
            if record.topic == self._dlq:
                metrics.dlq_records.labels(_header(record, "dlq-reason")).inc()
        self.window.add_all(new_ids)
        metrics.dedup_window_ids.set(len(self.window))
        if self.window.watermark:
            metrics.published_up_to((self.window.watermark >> 80) / 1000)

    def _headers_for(self, framing: Framing) -> tuple[bytes, list[tuple[str, str | bytes | None]]]:
        headers: list[tuple[str, str | bytes | None]] = [
            ("content-type", framing.content_type),
            ("schema-version", framing.schema_version),
            ("source-id", self._source),
        ]
        return framing.prefix, headers

    def _dead_letter(self, rejected: Rejected, url: str) -> OutRecord:
        headers: list[tuple[str, str | bytes | None]] = [
            ("dlq-reason", rejected.reason),
            ("dlq-detail", rejected.detail[:500]),
            ("source-id", self._source),
            ("source-url", url),
            ("bridge-version", __version__),
            ("content-type", "application/json"),
        ]
        if rejected.scan_id is not None:
            headers.append(("scan-id", rejected.scan_id[:200]))
        key = rejected.reader_id.encode() if rejected.reader_id else None
        return OutRecord(self._dlq, key, rejected.raw, headers)


def _header(record: OutRecord, name: str) -> str:
    for key, value in record.headers:
        if key == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return "unknown"


def _total_pages(fetched: FetchedPage) -> int | None:
    meta = fetched.page.meta
    if meta is None or meta.total_pages is None or meta.total_count is None:
        return None
    return max(1, meta.total_pages)
