"""The records of a chunk of new scans, in order: straight from each scan's page where
nothing about the scan is odd, through the per-scan stages where something is.

The per-scan path is the stages one after the other: :class:`~bridge.enrich.Enricher` joins
each scan with its pass and reader, :class:`~bridge.avro.encoder.Encoder` writes the Avro
bodies, :class:`~bridge.kafka.records.RecordBuilder` makes the records (a dead letter where
encoding failed). It makes an object per scan at every step, and counts and fetches what
is missing.

The fast path makes the same bytes with none of that: the pass and reader are looked up in
the scan's page and their Avro bytes reused, the keys are made once per reader, and the
headers are the topic's plus the scan's own. Most scans never reach a line of Python here:
``bridge/kafka/_scanrecord.c`` makes the record of a scan whose pass, reader and route it
finds known already. It hands the rest back, and :meth:`ScanRecords._learn` fills what it
lacked (the route's framing, the pass's and the reader's Avro bytes) for it to try once
more; the next scans of that pass, reader and route find them too. A scan it still declines
goes through the per-scan path on its own, in its place: a pass or reader missing from the
page (fetched, or counted as a miss), a value the encoder refuses (dead-lettered), a
``scannedAt`` outside UTC. ``tests/unit/kafka/test_scan_records.py`` feeds both paths the
same hostile pages and compares every byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.avro.encoder import Encoder
from bridge.enrich import Enricher
from bridge.kafka._scanrecord import record as native_record
from bridge.kafka.records import Headers, OutRecord, RecordBuilder
from bridge.passentry.pages import Listed

__all__ = ["ScanRecords"]


@dataclass(slots=True)
class _Batch:
    """What one call of :meth:`ScanRecords.build` looks up once: each topic's framing (a
    registry framer may raise a RetriableError while the registry is unreachable) and each
    (status, scan type)'s topic, value prefix and headers."""

    framings: dict[str, tuple[bytes, Headers]] = field(default_factory=dict)
    routes: dict[tuple[str, str], tuple[str, bytes, Headers]] = field(default_factory=dict)


class ScanRecords:
    def __init__(self, enricher: Enricher, encoder: Encoder, builder: RecordBuilder) -> None:
        self._enricher = enricher
        self._encoder = encoder
        self._builder = builder
        # Reader id -> record key, which bridge/kafka/_scanrecord.c fills.
        self._keys: dict[str, bytes] = {}

    def build(self, items: list[Listed]) -> list[OutRecord]:
        """One record per item, in the items' order."""
        batch = _Batch()
        objects, keys, source = self._encoder.objects, self._keys, self._encoder.source
        routes = batch.routes
        out: list[OutRecord] = []
        for item in items:
            record = native_record(item, routes, objects, keys, source)
            if record is None and self._learn(item, batch):
                record = native_record(item, routes, objects, keys, source)
            if record is not None:
                out.append(record)
            else:
                out += self._per_scan([item], batch.framings)
        return out

    def _learn(self, item: Listed, batch: _Batch) -> bool:
        """Fill what :func:`native_record` reads for ``item``: its route in ``batch``, its
        pass's and reader's Avro bytes in the encoder. False where the scan is the per-scan
        path's: its reader or pass is not on the page, or the encoder refuses one of them."""
        encoder, builder = self._encoder, self._builder
        resource, page = item.scan.resource, item.page
        # A valid scan has a reader id (decode_page checked).
        reader = page.readers.get(resource.reader_id or "")
        pass_id = resource.pass_id
        pass_ = None if pass_id is None else page.passes.get(pass_id)
        if reader is None or (pass_ is None and pass_id is not None):
            return False
        attrs = resource.attributes
        route_key = (attrs.status, attrs.scan_type)
        if route_key not in batch.routes:
            topic = builder.topic(*route_key)
            framed = batch.framings.get(topic)
            if framed is None:
                framed = batch.framings[topic] = builder.framed(topic)
            batch.routes[route_key] = (topic, *framed)
        try:
            if pass_ is not None:
                encoder.pass_bytes(pass_)
            encoder.reader_bytes(reader)
        except (ValueError, TypeError, OverflowError):
            return False  # the per-scan path dead-letters it
        return True

    def per_scan(self, items: list[Listed]) -> list[OutRecord]:
        """The same records, every scan through the per-scan stages."""
        return self._per_scan(items, {})

    def _per_scan(
        self, items: list[Listed], framings: dict[str, tuple[bytes, Headers]]
    ) -> list[OutRecord]:
        enriched = self._enricher.enrich(items)
        return self._builder.scans(enriched, self._encoder.encode(enriched), framings)
