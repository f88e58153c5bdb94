"""Join each scan with its pass and reader from the page's ``included`` array.

A pass missing from ``included`` is fetched with ``GET /api/v1/passes/{id}`` through a small
LRU cache with a TTL (passes change state, so a cached copy must not live for ever). A
missing reader keeps its id and leaves the rest null: PassEntry has no reader endpoint.
Readers seen on polled pages are remembered the same way, for scans pushed by webhook; a
pushed scan whose reader no page showed lately has it read with the scan itself
(``GET /api/v1/scans/{id}``, whose ``included`` holds it in full).
A scan with no pass at all (third-party scans logged without one) is valid as it is.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import msgspec

from bridge.errors import RetriableError
from bridge.ops.metrics import Metrics
from bridge.passentry.models import PassResource, ReaderResource
from bridge.passentry.pages import DecodedPage, Listed, ValidScan

__all__ = ["Enriched", "Enricher", "PassCache", "RecentCache"]

log = logging.getLogger(__name__)

# After a lookup failed, none for this long: an API that is down or slow would otherwise
# cost each webhook batch with an unseen reader a request that fails.
_LOOKUP_PAUSE_S = 10.0

T = TypeVar("T")


class Enriched(msgspec.Struct, frozen=True, gc=False):
    scan: ValidScan
    reader_id: str
    pass_: PassResource | None
    reader: ReaderResource | None
    # Where the scan was read: a dead letter made of it names this.
    url: str


class RecentCache(Generic[T]):
    """LRU of recently seen values, each kept ``ttl_s`` at most: passes and readers change
    state, so a cached copy must not live for ever."""

    def __init__(
        self, size: int, ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._size = size
        self._ttl = ttl_s
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, T]] = OrderedDict()

    def get(self, key: str) -> tuple[bool, T | None]:
        item = self._items.get(key)
        if item is None:
            return False, None
        stored_at, value = item
        if self._clock() - stored_at > self._ttl:
            del self._items[key]
            return False, None
        self._items.move_to_end(key)
        return True, value

    def put(self, key: str, value: T) -> None:
        if self._size <= 0:
            return
        self._items[key] = (self._clock(), value)
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


# Fetched passes; ``None`` remembers a 404.
PassCache = RecentCache[PassResource | None]


class Enricher:
    def __init__(
        self,
        fetch_pass: Callable[[str], PassResource | None],
        metrics: Metrics,
        cache: PassCache | None = None,
        readers: RecentCache[ReaderResource] | None = None,
        look_up_scan: Callable[[str], DecodedPage | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``look_up_scan``: a scan as ``GET /api/v1/scans/{id}`` gives it, at once or not at
        all (``PassEntryClient.look_up_scan``); without it, a pushed scan's reader comes
        only from polled pages."""
        self._fetch = fetch_pass
        self._look_up_scan = look_up_scan
        self._clock = clock
        self._lookups_from = 0.0
        self._metrics = metrics
        self._cache = cache if cache is not None else PassCache(10_000)
        # Full readers seen on polled pages: a webhook names its reader only by name and
        # type, and the record must be the one a poll would give.
        self._readers = readers if readers is not None else RecentCache[ReaderResource](10_000)

    def remember(self, pages: Iterable[DecodedPage]) -> None:
        """Keep the readers of pages just read, for scans that arrive by webhook."""
        for page in pages:
            for reader_id, reader in page.readers.items():
                self._readers.put(reader_id, reader)

    def recent_reader(self, reader_id: str) -> ReaderResource | None:
        return self._readers.get(reader_id)[1]

    def look_up_reader(self, scan: ValidScan) -> ReaderResource | None:
        """The full reader of a pushed scan, read with the scan and remembered; None when
        PassEntry cannot give it now (no request free in the budget soon, the scan not
        visible through the API yet, a failure lately), and polling then publishes the
        scan."""
        if self._look_up_scan is None or self._clock() < self._lookups_from:
            return None
        scan_id, reader_id = scan.resource.id, scan.resource.reader_id or ""
        try:
            page = self._look_up_scan(scan_id)
        except RetriableError as exc:
            self._lookups_from = self._clock() + _LOOKUP_PAUSE_S
            log.info(
                "cannot read a pushed scan's reader; polling publishes such scans for %.0f s",
                _LOOKUP_PAUSE_S,
                extra={"scan_id": scan_id, "reader_id": reader_id, "error": str(exc)},
            )
            return None
        if page is None:
            return None
        self.remember([page])
        reader = page.readers.get(reader_id)
        if reader is not None:
            self._metrics.enrichment_misses.labels("reader_fetched").inc()
        return reader

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
