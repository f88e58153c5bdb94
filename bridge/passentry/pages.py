"""Turn a ``GET /api/v1/scans`` body into typed scans, dead letters and lookup tables.

A page that is not a JSON:API document at all (truncated, HTML, bad JSON) raises
:class:`MalformedPageError`, which the client retries: skipping it would lose scans. One bad
scan inside a good page becomes a :class:`Rejected` item for the dead-letter topic, and the
rest of the page goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
from bridge.uuid7 import parse_uuid7_int

__all__ = [
    "DecodedPage",
    "Listed",
    "ListedReject",
    "Rejected",
    "ValidScan",
    "add_included",
    "add_scan",
    "decode_page",
    "resource_head",
    "short_error",
]

_envelope = msgspec.json.Decoder(PageEnvelope)
_scan = msgspec.json.Decoder(ScanResource)
_head = msgspec.json.Decoder(ResourceHead)
# One decode per included item: the "type" member picks the model.
_included = msgspec.json.Decoder(PassResource | ReaderResource)


@dataclass(slots=True, frozen=True)
class ValidScan:
    """A decoded scan whose id is a valid UUIDv7."""

    id_int: int
    created_ms: int
    resource: ScanResource
    # The scan's own JSON, a view into the page body; bytes(raw) for a dead letter.
    raw: msgspec.Raw


@dataclass(slots=True, frozen=True)
class Rejected:
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


@dataclass(slots=True, frozen=True)
class Listed:
    """A scan as PassEntry listed it: with the page it came on (whose ``included`` holds its
    pass and reader) and the URL of that page (named in dead letters)."""

    scan: ValidScan
    page: DecodedPage
    url: str


@dataclass(slots=True, frozen=True)
class ListedReject:
    """A scan that did not decode, with the URL of the page it came on."""

    rejected: Rejected
    url: str


def decode_page(body: bytes) -> DecodedPage:
    try:
        envelope = _envelope.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedPageError(f"not a scans page: {short_error(exc)}") from None
    page = DecodedPage(meta=envelope.meta, links=envelope.links)
    for raw in envelope.data:
        add_scan(raw, page)
    for raw in envelope.included or ():
        add_included(raw, page)
    return page


def add_scan(raw: msgspec.Raw, page: DecodedPage) -> None:
    """Decode one scan resource into ``page``: a valid scan, or a rejected one."""
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
        page.rejected.append(Rejected("invalid_id", str(exc), bytes(raw), scan.id, reader_id))
        return
    page.scans.append(ValidScan(id_int, id_int >> 80, scan, raw))


def add_included(raw: msgspec.Raw, page: DecodedPage) -> None:
    """Decode one ``included`` item into ``page``'s passes or readers."""
    try:
        item = _included.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        # Another type of resource, or a pass or reader that does not decode: enrichment
        # treats it as missing (fetches the pass, counts the reader miss).
        return
    if isinstance(item, PassResource):
        page.passes[item.id] = item
    else:
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
