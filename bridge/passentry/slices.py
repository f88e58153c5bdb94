"""Read PassEntry's scans in time slices, completely, however the list shifts under us.

The API pages by offset, newest first, and a scan can become visible after its id was
minted, which inserts it in the middle of the list while we walk it and shifts every older
scan one place later. A walk can then miss a scan that moved from a page not yet fetched
into one already fetched. So the reader:

1. pins a time slice ``[createdAfter, createdBefore)``: after = where the last committed
   slice ended, less one millisecond, before = now, shrunk until the slice holds at most
   ``max_scans`` (that bounds memory however far behind the bridge is);
2. fetches every page of the slice, several at a time, keeping the scans by id;
3. checks completeness: the number of distinct scans kept must reach the largest
   ``meta.totalCount`` any page reported. If it falls short, items moved under the walk, and
   the slice is walked again (what was kept stays; duplicates merge);
4. while the caller publishes a slice that was cut short, reads the next one ahead, which
   would otherwise leave the request budget idle.

Behind the last slice it reconciles by counts: the short overlap on every poll (scans
minted on a PassEntry node with a slow clock, or visible a moment late) and, every
``sweep_interval_s``, the lookback window and the range behind it. A reconcile first
compares PassEntry's ``totalCount`` for a range with the ids the caller holds there (one
request); only a range whose counts differ is split and read, so a quiet check costs one
request whatever the traffic.

The reader never publishes: it hands slices to the pipeline, which decides what is new and
tells it, through :attr:`SliceReader.polled_until`, how far the committed slices reach.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from bridge.ops.logs import carry_source
from bridge.passentry.client import FetchedPage, PassEntryClient
from bridge.passentry.pages import DecodedPage, Listed, ListedReject

__all__ = [
    "ReadStats",
    "Slice",
    "SlicePlan",
    "SliceRead",
    "SliceReader",
    "Waiter",
    "iso_millis",
]

log = logging.getLogger(__name__)

# How many full walks of one slice before the reader settles for what it has; the next
# poll's overlap check picks up anything still missing.
_MAX_WALKS = 3
# A reconciled range is split while counts disagree, down to this depth.
_MAX_SPLIT_DEPTH = 12

# How many ids the caller holds in ``(after_ms, before_ms)``: the dedup window's count.
KnownCount = Callable[[int, int], int]

T = TypeVar("T")


class Waiter(Protocol):
    """How the caller's thread waits for a request: ``Future.result``, or a wait that does
    the caller's other work meanwhile (a source serves its webhook inbox)."""

    def __call__(self, future: Future[T], /) -> T: ...


def _result(future: Future[T], /) -> T:
    return future.result()


def iso_millis(ms: int) -> str:
    """The ISO 8601 form PassEntry's createdAfter/createdBefore take, to the millisecond."""
    text = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@dataclass(slots=True)
class Slice:
    """What walks of one time range collected, keyed so that repeated walks merge."""

    scans: dict[int, Listed] = field(default_factory=dict)
    rejected: dict[bytes, ListedReject] = field(default_factory=dict)
    total: int | None = None
    # Every page read, in order: their readers are remembered for webhooks.
    pages: list[DecodedPage] = field(default_factory=list)

    def add(self, fetched: FetchedPage) -> None:
        page, url, scans = fetched.page, fetched.url, self.scans
        self.pages.append(page)
        for scan in page.scans:
            if scan.id_int not in scans:
                scans[scan.id_int] = Listed(scan, page, url)
        for rejected in page.rejected:
            self.rejected.setdefault(rejected.raw, ListedReject(rejected, fetched.url))
        meta = page.meta
        if meta is not None and meta.total_count is not None:
            self.total = max(self.total or 0, meta.total_count)

    @property
    def size(self) -> int:
        return len(self.scans) + len(self.rejected)

    @property
    def complete(self) -> bool:
        return self.total is None or self.size >= self.total


@dataclass(slots=True)
class ReadStats:
    """What reading cost: requests, walks of the last slice, and whether it was cut short
    (more is waiting: poll again at once)."""

    pages: int = 0
    walks: int = 0
    busy: bool = False


@dataclass(slots=True, frozen=True)
class SliceRead:
    """A slice ``[after, before)`` read to its end."""

    after: int
    before: int
    found: Slice
    stats: ReadStats


@dataclass(frozen=True, slots=True)
class SlicePlan:
    """How the reader reads: the query and the limits it keeps to."""

    filters: dict[str, str]
    per_page: int
    concurrency: int
    max_scans: int
    overlap_ms: int
    sweep_interval_s: float


@dataclass(slots=True, frozen=True)
class _Ahead:
    """The next slice, being read while the current one is published."""

    after: int
    until_ms: int | None
    future: Future[SliceRead | None]


class SliceReader:
    def __init__(
        self,
        client: PassEntryClient,
        plan: SlicePlan,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._plan = plan
        self._clock = clock
        # End of the last slice committed (its createdBefore); None before the first.
        self.polled_until: int | None = None
        self._next_sweep = clock() + plan.sweep_interval_s
        self._pool = ThreadPoolExecutor(
            plan.concurrency, thread_name_prefix="fetch", initializer=carry_source()
        )
        # One slice read ahead at a time, on its own thread: its page fetches use _pool.
        self._ahead_pool = ThreadPoolExecutor(
            1, thread_name_prefix="ahead", initializer=carry_source()
        )
        self._ahead: _Ahead | None = None
        # Every request the caller's thread makes runs on a fetch thread and is waited for
        # through this; the read-ahead thread waits plainly.
        self.wait: Waiter = _result

    @property
    def overlap_ms(self) -> int:
        return self._plan.overlap_ms

    def close(self) -> None:
        self.discard_ahead()
        self._ahead_pool.shutdown(wait=False, cancel_futures=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def reset(self, polled_until: int | None) -> None:
        """Start again from a committed position (restore, or a rewind after an abort)."""
        self.discard_ahead()
        self.polled_until = polled_until

    def discard_ahead(self) -> None:
        """Forget a slice read ahead: the position moved another way."""
        if self._ahead is not None:
            self._ahead.future.cancel()
            self._ahead = None

    def next_slice(
        self, fallback_ms: int, until_ms: int | None, stop: threading.Event
    ) -> SliceRead | None:
        """The slice after the last committed one (after ``fallback_ms`` before the first),
        ending at ``until_ms`` (default now); None when there is nothing to read yet.

        A slice cut short starts the next one reading ahead; it is used only if the caller
        commits this one (then ``polled_until`` is where the next one starts).
        """
        after = self._start(fallback_ms)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.after == after and ahead.until_ms == until_ms:
            read = self.wait(ahead.future)
        else:
            if ahead is not None:
                ahead.future.cancel()
            read = self._read(after, until_ms, stop, self.wait)
        if read is not None and read.stats.busy and not stop.is_set():
            nxt = read.before - 1
            future = self._ahead_pool.submit(self._read, nxt, until_ms, stop, _result)
            self._ahead = _Ahead(nxt, until_ms, future)
        return read

    def recheck_overlap(
        self, known: KnownCount, stats: ReadStats, stop: threading.Event
    ) -> Iterator[Slice]:
        """The overlap behind the last slice: one count request when nothing new is there,
        which is the usual case; read only if PassEntry has more than we do."""
        if self.polled_until is None or self._plan.overlap_ms <= 0:
            return
        hi = self.polled_until
        yield from self._reconcile(
            hi - self._plan.overlap_ms, hi, known, stats, stop, self.wait, _MAX_SPLIT_DEPTH
        )

    def sweep(
        self, cursor_ms: int | None, sweep_ms: int, known: KnownCount, stats: ReadStats,
        stop: threading.Event,
    ) -> Iterator[Slice]:  # fmt: skip
        """Every ``sweep_interval_s``, look again behind the poll overlap: over the lookback
        (from ``cursor_ms``) and the ``sweep_ms`` behind it. Boundaries are whole seconds,
        in case PassEntry compares in seconds."""
        if self._clock() < self._next_sweep:
            return
        self._next_sweep = self._clock() + self._plan.sweep_interval_s
        if cursor_ms is None or self.polled_until is None:
            return
        lo = (cursor_ms - sweep_ms) // 1000 * 1000
        hi = (self.polled_until - self._plan.overlap_ms) // 1000 * 1000
        if hi > lo:
            yield from self._reconcile(lo, hi, known, stats, stop, self.wait, 0)

    def confirm(
        self, after: int, before: int, known: KnownCount, stats: ReadStats, stop: threading.Event
    ) -> Iterator[Slice] | None:
        """Check ``(after, before)`` by counts, where the caller should already hold its
        scans (webhooks brought them): one request when it does; the ranges that differ are
        read. None when the difference is too big to bisect cheaply: read it as a slice."""
        if before <= after:
            return iter(())
        probe = self._get(self._params(after, before, 1, per_page=1), self.wait)
        stats.pages += 1
        meta = probe.page.meta
        total = meta.total_count if meta is not None else None
        if total is None:
            return None
        have = known(after, before)
        if total == have:
            return iter(())
        if total - have > 4 * self._plan.per_page:
            return None
        return self._reconcile(after, before, known, stats, stop, self.wait, 0, total)

    def sweep_now(self) -> None:
        """Make the next :meth:`sweep` run whatever the timer says (tests, operators)."""
        self._next_sweep = self._clock()

    def _start(self, fallback_ms: int) -> int:
        # createdAfter is exclusive: start one ms early so a scan created in the very ms
        # the last slice ended (its createdBefore, also exclusive) is not skipped.
        return fallback_ms if self.polled_until is None else self.polled_until - 1

    def _get(self, params: dict[str, str], wait: Waiter) -> FetchedPage:
        return wait(self._pool.submit(self._client.list_scans, params))

    def _read(
        self, after: int, until_ms: int | None, stop: threading.Event, wait: Waiter
    ) -> SliceRead | None:
        stats = ReadStats()
        before = until_ms if until_ms is not None else int(time.time() * 1000)
        if before <= after:
            return None
        before, first = self._fit(after, before, stats, wait)
        return SliceRead(after, before, self._walk(after, before, first, stats, stop, wait), stats)

    def _reconcile(
        self, lo: int, hi: int, known: KnownCount, stats: ReadStats, stop: threading.Event,
        wait: Waiter, depth: int, total: int | None = None,
    ) -> Iterator[Slice]:  # fmt: skip
        """Read what PassEntry has in ``(lo, hi)`` where its count differs from ours;
        ``total`` is PassEntry's count when the caller already asked."""
        if stop.is_set():
            return
        if total is None:
            # A one-scan page is enough to read totalCount, and cheap to decode.
            probe = self._get(self._params(lo, hi, 1, per_page=1), wait)
            stats.pages += 1
            meta = probe.page.meta
            total = meta.total_count if meta is not None else None
            if total is not None and total == known(lo, hi):
                return
        small = total is None or total <= 2 * self._plan.per_page
        if small or depth >= _MAX_SPLIT_DEPTH or hi - lo <= 2000:
            first = self._get(self._params(lo, hi, 1), wait)
            stats.pages += 1
            walks = stats.walks
            found = self._walk(lo, hi, first, stats, stop, wait)
            stats.walks = walks
            if not stop.is_set():
                yield found
            return
        mid = (lo + (hi - lo) // 2) // 1000 * 1000
        # Both bounds are exclusive: the second half starts a millisecond early, or a scan
        # created in the very millisecond ``mid`` would be in neither half.
        yield from self._reconcile(lo, mid, known, stats, stop, wait, depth + 1)
        yield from self._reconcile(mid - 1, hi, known, stats, stop, wait, depth + 1)

    def _params(
        self, after: int, before: int, page: int, per_page: int | None = None
    ) -> dict[str, str]:
        return {
            **self._plan.filters,
            "perPage": str(per_page or self._plan.per_page),
            "createdAfter": iso_millis(after),
            "createdBefore": iso_millis(before),
            "page": str(page),
        }

    def _fit(
        self, after: int, before: int, stats: ReadStats, wait: Waiter
    ) -> tuple[int, FetchedPage]:
        """Shrink ``before`` until the slice holds at most ``max_scans`` scans."""
        max_scans = self._plan.max_scans
        while True:
            first = self._get(self._params(after, before, 1), wait)
            stats.pages += 1
            meta = first.page.meta
            count = meta.total_count if meta is not None else None
            if count is None or count <= max_scans or before - after <= 1:
                return before, first
            # Assume scans spread evenly, aim a little under the cap, and check again. Never
            # shrink into the overlap: a slice must end past what was already read, or the
            # poll would not move.
            span = max(1, int((before - after) * max_scans * 0.9 / count))
            new_before = max(after + span, after + 1000)
            if new_before >= before:
                return before, first
            before = new_before
            stats.busy = True

    def _walk(
        self, after: int, before: int, first: FetchedPage, stats: ReadStats,
        stop: threading.Event, wait: Waiter,
    ) -> Slice:  # fmt: skip
        found = Slice()
        found.add(first)
        for walk in range(1, _MAX_WALKS + 1):
            stats.walks = walk
            if walk > 1:
                first = self._get(self._params(after, before, 1), wait)
                stats.pages += 1
                found.add(first)
            total_pages = _total_pages(first)
            if total_pages is None:
                self._walk_links(after, before, first, found, stats, stop, wait)
                return found  # no totalCount to check against: one sequential walk
            for fetched in self._fetch_pages(after, before, range(2, total_pages + 1), wait):
                if stop.is_set():
                    return found
                stats.pages += 1
                found.add(fetched)
            if found.complete:
                return found
            log.info(
                "scans moved while the slice was walked; walking it again",
                extra={"walk": walk, "have": found.size, "total": found.total},
            )
        log.warning(
            "slice still incomplete after %d walks; the overlap check retries the rest",
            _MAX_WALKS,
            extra={"have": found.size, "total": found.total},
        )
        return found

    def _walk_links(
        self, after: int, before: int, first: FetchedPage, found: Slice, stats: ReadStats,
        stop: threading.Event, wait: Waiter,
    ) -> None:  # fmt: skip
        # Without meta, walk forward one page at a time: a scan inserted ahead of us only
        # pushes the rest to later pages, so this order sees duplicates, never gaps.
        page, number = first, 1
        while page.page.size > 0 and not stop.is_set():
            links = page.page.links
            if links is not None and links.next is None:
                break
            number += 1
            page = self._get(self._params(after, before, number), wait)
            stats.pages += 1
            found.add(page)

    def _fetch_pages(
        self, after: int, before: int, numbers: range, wait: Waiter
    ) -> Iterator[FetchedPage]:
        """Fetch pages with up to ``concurrency`` requests in flight, yielding in order."""
        pending: list[Future[FetchedPage]] = []
        try:
            for number in numbers:
                params = self._params(after, before, number)
                pending.append(self._pool.submit(self._client.list_scans, params))
                if len(pending) >= self._plan.concurrency:
                    yield wait(pending.pop(0))
            while pending:
                yield wait(pending.pop(0))
        finally:
            for future in pending:
                future.cancel()


def _total_pages(fetched: FetchedPage) -> int | None:
    meta = fetched.page.meta
    if meta is None or meta.total_pages is None or meta.total_count is None:
        return None
    return max(1, meta.total_pages)
