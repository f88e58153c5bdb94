"""Turn a ``GET /api/v1/scans`` body into typed scans, dead letters and lookup tables.

A page that is not a JSON:API document at all (truncated, HTML, bad JSON) raises
:class:`MalformedPageError`, which the client retries: skipping it would lose scans. One bad
scan inside a good page becomes a :class:`Rejected` item for the dead-letter topic, and the
rest of the page goes on.

A page is decoded in one typed call. Only when that call refuses the page (one scan lacks a
required attribute, say) are its scans decoded one by one, so that the bad one becomes a
dead letter and the rest are kept. Either way a valid scan is the same :class:`ValidScan`;
its own JSON, which only a dead letter needs, is split out of the page body on demand.

``included`` items repeat from page to page (a reader, a regular's pass), so their decoded
form is remembered by their exact bytes (:class:`IncludedMemo`): the same bytes always
decode to the same resource, and the encoder reuses the Avro it made of it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import msgspec

from bridge.errors import InvalidUUIDv7Error, MalformedPageError
from bridge.passentry.models import (
    PageEnvelope,
    PageLinks,
    PageMeta,
    PassResource,
    ReaderResource,
    ResourceHead,
    ScanResource,
)
from bridge.tracecontext import TraceHeaders
from bridge.uuid7 import int_millis, parse_uuid7_int

__all__ = [
    "DecodedPage",
    "IncludedMemo",
    "Listed",
    "ListedReject",
    "PageBody",
    "Rejected",
    "ValidScan",
    "add_included",
    "add_scan",
    "decode_by_item",
    "decode_page",
    "resource_head",
    "short_error",
]


class _PageRows(msgspec.Struct, frozen=True, gc=False):
    """A list page with every scan typed: the one decode call of a well-formed page."""

    data: list[ScanResource]
    included: list[msgspec.Raw] | None = None
    meta: PageMeta | None = None
    links: PageLinks | None = None


_rows = msgspec.json.Decoder(_PageRows)
_envelope = msgspec.json.Decoder(PageEnvelope)
_scan = msgspec.json.Decoder(ScanResource)
_head = msgspec.json.Decoder(ResourceHead)
# One decode per included item: the "type" member picks the model.
_included = msgspec.json.Decoder(PassResource | ReaderResource)


class PageBody:
    """Where the scans of one page came from, to give a scan's own JSON back (a dead
    letter carries it). A page decoded in one typed call keeps its body and splits the
    items out only when first asked; a page decoded item by item has them already."""

    __slots__ = ("_body", "_raws")

    def __init__(self, body: bytes = b"", raws: list[msgspec.Raw] | None = None) -> None:
        self._body = body
        self._raws = raws

    def raw(self, index: int) -> bytes:
        if self._raws is None:
            # The body decoded as a page already, so it decodes as an envelope too.
            self._raws = _envelope.decode(self._body).data
        return bytes(self._raws[index])


class ValidScan(msgspec.Struct, frozen=True, gc=False):
    """A decoded scan whose id is a valid UUIDv7."""

    id_int: int
    resource: ScanResource
    # Item ``index`` of ``body``'s data: the scan's own JSON.
    body: PageBody
    index: int

    @property
    def created_ms(self) -> int:
        return int_millis(self.id_int)

    @property
    def raw(self) -> bytes:
        return self.body.raw(self.index)


class Rejected(msgspec.Struct, frozen=True, gc=False):
    """A scan that cannot be published; it goes to the dead-letter topic as ``raw``."""

    reason: str
    detail: str
    raw: bytes
    scan_id: str | None = None
    reader_id: str | None = None


@dataclass(slots=True)
class DecodedPage:
    scans: list[ValidScan] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    passes: dict[str, PassResource] = field(default_factory=dict)
    readers: dict[str, ReaderResource] = field(default_factory=dict)
    meta: PageMeta | None = None
    links: PageLinks | None = None
    # The trace its scans' records continue: the request that fetched the page, or the
    # webhook that brought it (``bridge.tracing``); None with tracing off.
    trace: TraceHeaders | None = None

    @property
    def size(self) -> int:
        return len(self.scans) + len(self.rejected)


class Listed(msgspec.Struct, frozen=True, gc=False):
    """A scan as PassEntry listed it: with the page it came on (whose ``included`` holds its
    pass and reader) and the URL of that page (named in dead letters)."""

    scan: ValidScan
    page: DecodedPage
    url: str


class ListedReject(msgspec.Struct, frozen=True, gc=False):
    """A scan that did not decode, with the URL of the page it came on."""

    rejected: Rejected
    url: str


class IncludedMemo:
    """``included`` items decoded before, by their exact JSON bytes (at most ``size``; the
    oldest dropped first). Fetch threads share it: a lookup is one dict read, which the GIL
    makes whole; adding takes the lock. Oldest-first rather than least-recently-used keeps
    a hit to that one read (the move-to-end and lock of an LRU cost half the memo's time, at
    93 items a page): an evicted item that is still in use is decoded once more."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._items: OrderedDict[bytes, PassResource | ReaderResource | None] = OrderedDict()
        self._lock = threading.Lock()

    def file_all(self, items: list[msgspec.Raw], page: DecodedPage) -> None:
        """Each item's resource into ``page``'s passes or readers."""
        get, passes, readers = self._items.get, page.passes, page.readers
        for raw in items:
            key = bytes(raw)
            item = get(key, _MISSING)
            if item is _MISSING:
                item = self._add(key, raw)
            if isinstance(item, PassResource):
                passes[item.id] = item
            elif item is not None:
                readers[item.id] = item

    def _add(self, key: bytes, raw: msgspec.Raw) -> PassResource | ReaderResource | None:
        item = _decode_included(raw)
        with self._lock:
            items = self._items
            items[key] = item
            while len(items) > self._size:
                items.popitem(last=False)
        return item

    def resize(self, by: int) -> None:
        """Hold ``by`` items more (fewer, if negative), dropping the oldest to fit."""
        with self._lock:
            self._size = max(0, self._size + by)
            items = self._items
            while len(items) > self._size:
                items.popitem(last=False)

    @property
    def bound(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._items)


# Typed as any value, so that what ``get`` returns narrows as the values do.
_MISSING: Any = object()


def decode_page(body: bytes, memo: IncludedMemo | None = None) -> DecodedPage:
    try:
        rows = _rows.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return decode_by_item(body, memo)
    page = DecodedPage(meta=rows.meta, links=rows.links)
    source = PageBody(body)
    scans = page.scans
    for index, scan in enumerate(rows.data):
        # What add_scan checks after decoding, inlined: a scan that fails any of it goes
        # through add_scan itself, which says why.
        rel = scan.relationships.reader
        reader = rel.data if rel is not None else None
        if scan.type == "scan" and reader is not None and reader.id:
            try:
                scans.append(ValidScan(parse_uuid7_int(scan.id), scan, source, index))
                continue
            except InvalidUUIDv7Error:
                pass
        add_scan(msgspec.Raw(source.raw(index)), page, source, index)
    _add_all_included(rows.included, page, memo)
    return page


def decode_by_item(body: bytes, memo: IncludedMemo | None = None) -> DecodedPage:
    """The page item by item: what :func:`decode_page` does with a page its typed call
    refused, so that one bad scan is one dead letter (and a body that is not a page at all
    is MalformedPageError)."""
    try:
        envelope = _envelope.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedPageError(f"not a scans page: {short_error(exc)}") from None
    page = DecodedPage(meta=envelope.meta, links=envelope.links)
    source = PageBody(body, envelope.data)
    for index, raw in enumerate(envelope.data):
        add_scan(raw, page, source, index)
    _add_all_included(envelope.included, page, memo)
    return page


def _add_all_included(
    items: list[msgspec.Raw] | None, page: DecodedPage, memo: IncludedMemo | None
) -> None:
    if memo is None:
        for raw in items or ():
            add_included(raw, page)
        return
    if items:
        memo.file_all(items, page)


def add_scan(raw: msgspec.Raw, page: DecodedPage, source: PageBody, index: int) -> None:
    """Decode one scan resource into ``page``: a valid scan, or a rejected one. ``raw`` is
    item ``index`` of ``source``."""
    try:
        scan = _scan.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        head = resource_head(raw)
        page.rejected.append(
            Rejected(
                "invalid_scan", short_error(exc), bytes(raw), head.id if head is not None else None
            )
        )
        return
    if scan.type != "scan":
        page.rejected.append(
            Rejected("invalid_scan", f"type is {scan.type!r}, not 'scan'", bytes(raw), scan.id)
        )
        return
    reader_id = scan.reader_id
    if reader_id is None or not reader_id:
        page.rejected.append(
            Rejected(
                "missing_reader_id", "relationships.reader.data.id is absent", bytes(raw), scan.id
            )
        )
        return
    try:
        id_int = parse_uuid7_int(scan.id)
    except InvalidUUIDv7Error as exc:
        page.rejected.append(Rejected(exc.dlq_reason, str(exc), bytes(raw), scan.id, reader_id))
        return
    page.scans.append(ValidScan(id_int, scan, source, index))


def add_included(raw: msgspec.Raw, page: DecodedPage) -> None:
    """Decode one ``included`` item into ``page``'s passes or readers."""
    _file(_decode_included(raw), page)


def _decode_included(raw: msgspec.Raw) -> PassResource | ReaderResource | None:
    try:
        return _included.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        # Another type of resource, or a pass or reader that does not decode: enrichment
        # treats it as missing (fetches the pass, counts the reader miss).
        return None


def _file(item: PassResource | ReaderResource | None, page: DecodedPage) -> None:
    if isinstance(item, PassResource):
        page.passes[item.id] = item
    elif item is not None:
        page.readers[item.id] = item


def resource_head(raw: msgspec.Raw) -> ResourceHead | None:
    """The ``type`` and ``id`` of a JSON:API resource, or None if it has none."""
    try:
        return _head.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def short_error(exc: Exception) -> str:
    """A decoder's message, cut short: it may quote the input, which can be long."""
    text = str(exc)
    return text if len(text) <= 200 else text[:197] + "..."
