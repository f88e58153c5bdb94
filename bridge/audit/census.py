"""PassEntry's side of an audit: how many scans a time range holds, and which.

Counting costs one request: a one-scan page of the range carries ``meta.totalCount``. Only
where PassEntry's count and Kafka's differ does the census look closer: it halves the range
(on whole seconds, as the live sweep does) and counts each half, down to ranges small enough
to list, whose pages it then reads completely with the bridge's own slice reader (pinned
range, pages fetched several at a time inside the budget, walked again if scans moved). A
range of which Kafka holds nothing (a first import) is listed at once: halving it would only
add counts. Listings come in slices of at most ``PASSENTRY_MAX_CYCLE_SCANS`` scans, so
memory stays bounded however large the range.

Ranges are half-open, ``[start, end)``: a query sends ``createdAfter = start - 1 ms`` and
``createdBefore = end`` (both exclusive, to the millisecond), so two neighbouring ranges
share no scan and miss none. PassEntry does not document the precision of these bounds; a
coarser one shows up as counts that disagree at the edges and costs requests, not scans.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bridge.passentry.client import PassEntryClient
from bridge.passentry.slices import Slice, SlicePlan, SliceReader, iso_millis

__all__ = ["Census", "KnownCount", "Leaf", "differences"]

# Kafka's count for ``[start, end)``: what PassEntry's count is compared with.
KnownCount = Callable[[int, int], int]

# Halving stops at this depth (a 1 h bucket is then down to about a second).
_MAX_DEPTH = 14
_MIN_SPAN_MS = 2_000


@dataclass(frozen=True, slots=True)
class Leaf:
    """A range whose counts disagreed: to be listed scan by scan."""

    start_ms: int
    end_ms: int


class Census:
    def __init__(self, client: PassEntryClient, plan: SlicePlan) -> None:
        self._client = client
        self._plan = plan
        self._reader = SliceReader(client, plan)
        self.requests = 0

    @property
    def per_page(self) -> int:
        return self._plan.per_page

    def close(self) -> None:
        self._reader.close()

    def count(self, start_ms: int, end_ms: int) -> int | None:
        """PassEntry's ``totalCount`` for ``[start, end)``: one request."""
        params = {
            **self._plan.filters,
            "perPage": "1",
            "page": "1",
            "createdAfter": iso_millis(start_ms - 1),
            "createdBefore": iso_millis(end_ms),
        }
        fetched = self._client.list_scans(params)
        self.requests += 1
        meta = fetched.page.meta
        return meta.total_count if meta is not None else None

    def listing(self, start_ms: int, end_ms: int, stop: threading.Event) -> Iterator[Slice]:
        """Every scan PassEntry lists in ``[start, end)``, read to completeness, in slices of
        at most ``max_scans``, oldest first."""
        after = start_ms - 1
        self._reader.reset(None)  # no read-ahead of another range is ours
        while not stop.is_set():
            read = self._reader.next_slice(after, end_ms, stop)
            if read is None:
                return
            self.requests += read.stats.pages
            yield read.found
            if read.before >= end_ms:
                return
            self._reader.polled_until = read.before  # where the slice read ahead starts
            after = read.before - 1


def differences(
    census: Census, start_ms: int, end_ms: int, total: int | None, known: KnownCount,
    stop: threading.Event, depth: int = 0,
) -> Iterator[Leaf]:  # fmt: skip
    """The ranges inside ``[start, end)`` where PassEntry's count (``total`` for the whole)
    and Kafka's disagree, to be listed. Nothing at all when the counts agree."""
    if stop.is_set():
        return
    have = known(start_ms, end_ms)
    if total is not None and total == have:
        return
    span = end_ms - start_ms
    small = total is None or total <= 2 * census.per_page
    if small or have == 0 or span <= _MIN_SPAN_MS or depth >= _MAX_DEPTH:
        yield Leaf(start_ms, end_ms)
        return
    mid = (start_ms + span // 2) // 1000 * 1000
    if mid <= start_ms:
        mid = start_ms + span // 2
    for lo, hi in ((start_ms, mid), (mid, end_ms)):
        yield from differences(census, lo, hi, census.count(lo, hi), known, stop, depth + 1)
