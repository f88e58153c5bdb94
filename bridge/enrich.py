"""Join each scan with its pass and reader from the page's ``included`` array.

A pass missing from ``included`` is fetched with ``GET /api/v1/passes/{id}`` through a small
LRU cache with a TTL (passes change state, so a cached copy must not live for ever). A
missing reader keeps its id and leaves the rest null: PassEntry has no reader endpoint.
A scan with no pass at all (third-party scans logged without one) is valid as it is.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from bridge.ops.metrics import Metrics
from bridge.passentry.models import PassResource, ReaderResource
from bridge.passentry.pages import Listed, ValidScan

__all__ = ["Enriched", "Enricher", "PassCache"]


@dataclass(slots=True, frozen=True)
class Enriched:
    scan: ValidScan
    reader_id: str
    pass_: PassResource | None
    reader: ReaderResource | None
    # Where the scan was read: a dead letter made of it names this.
    url: str


class PassCache:
    """LRU of fetched passes (``None`` remembers a 404), each kept ``ttl_s`` at most."""

    def __init__(
        self, size: int, ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._size = size
        self._ttl = ttl_s
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, PassResource | None]] = OrderedDict()

    def get(self, pass_id: str) -> tuple[bool, PassResource | None]:
        item = self._items.get(pass_id)
        if item is None:
            return False, None
        stored_at, value = item
        if self._clock() - stored_at > self._ttl:
            del self._items[pass_id]
            return False, None
        self._items.move_to_end(pass_id)
        return True, value

    def put(self, pass_id: str, value: PassResource | None) -> None:
        if self._size <= 0:
            return
        self._items[pass_id] = (self._clock(), value)
        self._items.move_to_end(pass_id)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class Enricher:
    def __init__(
        self,
        fetch_pass: Callable[[str], PassResource | None],
        metrics: Metrics,
        cache: PassCache | None = None,
    ) -> None:
        self._fetch = fetch_pass
        self._metrics = metrics
        self._cache = cache if cache is not None else PassCache(10_000)

    def enrich(self, items: list[Listed]) -> list[Enriched]:
        """Each scan with its pass and reader, looked up in the page it came from."""
        out = []
        for item in items:
            scan, page = item.scan, item.page
            resource = scan.resource
            pass_id = resource.pass_id
            found_pass = None
            if pass_id is not None:
                found_pass = page.passes.get(pass_id)
                if found_pass is None:
                    found_pass = self._missing_pass(pass_id)
            # decode_page already rejected scans without a reader id.
            reader_id = resource.reader_id or ""
            reader = page.readers.get(reader_id)
            if reader is None:
                self._metrics.enrichment_misses.labels("reader").inc()
            out.append(Enriched(scan, reader_id, found_pass, reader, item.url))
        return out

    def _missing_pass(self, pass_id: str) -> PassResource | None:
        hit, value = self._cache.get(pass_id)
        if not hit:
            value = self._fetch(pass_id)
            self._cache.put(pass_id, value)
        self._metrics.enrichment_misses.labels(
            "pass_fetched" if value is not None else "pass_not_found"
        ).inc()
        return value
