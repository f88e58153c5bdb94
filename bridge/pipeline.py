"""The loop: fetch -> dedup -> enrich -> encode -> publish -> commit.

This is the one place that decides the order of the stages and when the cursor moves.
A cycle pins ``createdBefore`` at its start, so the set of scans it walks is stable and its
pages may be fetched several at a time. PassEntry lists newest first, so the cycle walks the
pages from the last (oldest) to the first, publishing each chunk in id order; the cursor
(the dedup window) only moves after the broker acknowledged the chunk. A failed chunk leaves
the cursor where it was, and the next cycle fetches the same scans again.
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
from bridge.dedup import DedupWindow, RejectMemory, Verdict
from bridge.encode import Encoder
from bridge.enrich import Enricher
from bridge.health import Health
from bridge.metrics import Metrics
from bridge.passentry.client import FetchedPage, PassEntryClient
from bridge.passentry.pages import Rejected, ValidScan
from bridge.publish import OutRecord, Sink
from bridge.routing import Router

__all__ = ["CycleStats", "Pipeline", "iso_millis"]

log = logging.getLogger(__name__)


def iso_millis(ms: int) -> str:
    """The ISO 8601 form PassEntry's createdAfter/createdBefore take, to the millisecond."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass(slots=True)
class CycleStats:
    pages: int = 0
    fetched: int = 0
    published: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    late: int = 0
    # True when the API had more than one page: poll again soon.
    busy: bool = False
    topics: dict[str, int] = field(default_factory=dict)


class Pipeline:
    def __init__(
        self,
        *,
        client: PassEntryClient,
        enricher: Enricher,
        encoder: Encoder,
        publisher: Sink,
        router: Router,
        window: DedupWindow,
        metrics: Metrics,
        health: Health,
        filters: dict[str, str],
        per_page: int,
        concurrency: int,
        source_id: str,
        dlq_topic: str,
        delivery_timeout_s: float,
        start_ms: int,
        ensure_topics: Callable[[list[str]], None],
    ) -> None:
        self._client = client
        self._enricher = enricher
        self._encoder = encoder
        self._publisher = publisher
        self._router = router
        self.window = window
        self._metrics = metrics
        self._health = health
        self._filters = filters
        self._per_page = per_page
        self._concurrency = concurrency
        self._source = source_id
        self._dlq = dlq_topic
        self._delivery_timeout = delivery_timeout_s
        self._start_ms = start_ms
        self._ensure_topics = ensure_topics
        self._rejects = RejectMemory(ttl_s=window.lookback_ms / 1000 + 120)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="fetch")
        framing = encoder.framing
        self._static_headers: list[tuple[str, str | bytes | None]] = [
            ("content-type", framing.content_type),
            ("schema-version", framing.schema_version),
            ("source-id", source_id),
        ]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def cycle(
        self, stop: threading.Event, *, until_ms: int | None = None, since_ms: int | None = None
    ) -> CycleStats:
        """Walk every page created after the cursor and before ``until_ms`` (default now)."""
        started = time.perf_counter()
        after = self.window.cursor_ms()
        if after is None:
            after = self._start_ms if since_ms is None else since_ms
        before = until_ms if until_ms is not None else int(time.time() * 1000)
        params = dict(self._filters)
        params.update(
            perPage=str(self._per_page), createdAfter=iso_millis(after),
            createdBefore=iso_millis(before),
        )  # fmt: skip
        stats = CycleStats()
        first = self._client.list_scans({**params, "page": "1"})
        stats.pages = 1
        total = _total_pages(first)
        if total is None:
            # No meta.totalPages: walk sequentially by links.next / until an empty page.
            self._walk_sequential(first, params, stats, stop)
        else:
            stats.busy = total > 1
            batch: list[FetchedPage] = []
            for fetched in self._prefetch(params, range(total, 1, -1)):
                if stop.is_set():
                    return stats
                stats.pages += 1
                batch.append(fetched)
                if len(batch) >= self._concurrency:
                    self._process(batch, stats)
                    batch = []
            if not stop.is_set():
                self._process([*batch, first], stats)
        self._metrics.poll_cycle_duration.observe(time.perf_counter() - started)
        return stats

    def _walk_sequential(
        self, first: FetchedPage, params: dict[str, str], stats: CycleStats, stop: threading.Event
    ) -> None:
        # Without a page count the oldest page is unknown up front, so hold the walk's pages
        # and publish once it ends. Only servers that omit meta take this path.
        pages = [first]
        number = 1
        while pages[-1].page.size > 0 and not stop.is_set():
            links = pages[-1].page.links
            if links is not None and links.next is None and number > 1:
                break
            number += 1
            pages.append(self._client.list_scans({**params, "page": str(number)}))
            stats.pages += 1
        stats.busy = number > 2
        if not stop.is_set():
            self._process(pages[::-1], stats)

    def _prefetch(self, params: dict[str, str], numbers: range) -> Iterator[FetchedPage]:
        """Fetch pages in order with up to ``concurrency`` requests in flight."""
        pending: list[Future[FetchedPage]] = []
        todo = iter(numbers)
        try:
            for number in todo:
                pending.append(
                    self._pool.submit(self._client.list_scans, {**params, "page": str(number)})
                )
                if len(pending) >= self._concurrency:
                    yield pending.pop(0).result()
            while pending:
                yield pending.pop(0).result()
        finally:
            for future in pending:
                future.cancel()

    def _process(self, fetched: list[FetchedPage], stats: CycleStats) -> None:
        records: list[OutRecord] = []
        new_ids: list[int] = []
        window, metrics = self.window, self._metrics
        seen: set[int] = set()
        for item in fetched:
            page = item.page
            stats.fetched += page.size
            metrics.scans_fetched.inc(page.size)
            fresh: list[ValidScan] = []
            duplicates = 0
            for scan in page.scans:
                verdict = window.classify(scan.id_int)
                if verdict is Verdict.NEW and scan.id_int not in seen:
                    seen.add(scan.id_int)
                    fresh.append(scan)
                elif verdict is Verdict.LATE:
                    stats.late += 1
                    metrics.late_scans.inc()
                    log.warning(
                        "late scan: older than the lookback window, sent to the DLQ",
                        extra={
                            "scan_id": scan.resource.id,
                            "lookback_s": window.lookback_ms / 1000,
                        },
                    )
                    records.append(
                        self._dead_letter(
                            Rejected(
                                "late_scan",
                                "created before the dedup window",
                                scan.raw,
                                scan.resource.id,
                                scan.resource.reader_id,
                            ),
                            item.url,
                        )
                    )
                else:
                    duplicates += 1
            stats.duplicates += duplicates
            metrics.scans_duplicate.inc(duplicates)
            fresh.sort(key=lambda s: s.id_int)
            enriched = self._enricher.enrich(fresh, page)
            values = self._encoder.encode(enriched)
            for scan_item, value in zip(enriched, values, strict=True):
                scan = scan_item.scan
                if isinstance(value, Exception):
                    records.append(
                        self._dead_letter(
                            Rejected(
                                "encode_error",
                                str(value)[:200],
                                scan.raw,
                                scan.resource.id,
                                scan_item.reader_id,
                            ),
                            item.url,
                        )
                    )
                    new_ids.append(scan.id_int)
                    continue
                attrs = scan.resource.attributes
                records.append(
                    OutRecord(
                        self._router.topic(attrs.status, attrs.scan_type),
                        scan_item.reader_id.encode(),
                        value,
                        [*self._static_headers, ("scan-id", scan.resource.id)],
                        scan.created_ms,
                    )
                )
                new_ids.append(scan.id_int)
            for rejected in page.rejected:
                if self._rejects.first_time(rejected):
                    records.append(self._dead_letter(rejected, item.url))
        if not records:
            return
        self._ensure_topics(sorted({r.topic for r in records}))
        acked = self._publisher.send(records, self._delivery_timeout)
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
        window.add_all(new_ids)
        metrics.dedup_window_ids.set(len(window))
        if window.watermark:
            metrics.published_up_to((window.watermark >> 80) / 1000)

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
    if meta is None or meta.total_pages is None:
        return None
    return max(1, meta.total_pages)
