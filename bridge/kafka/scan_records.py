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
finds known already. It hands the rest to :meth:`ScanRecords._one`, which makes the record
in Python and fills what the next such scan finds (the route's framing, the pass's and the
reader's Avro bytes). Any scan that one is not sure of goes through the per-scan path on its
own, in its place: a pass or reader missing from the page (fetched, or counted as a miss),
or a value the encoder refuses (dead-lettered). ``tests/unit/kafka/test_scan_records.py``
feeds both paths the same hostile pages and compares every byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge import cloudevents
from bridge.avro.encoder import Encoder
from bridge.avro.wire import NULL
from bridge.enrich import Enricher
from bridge.kafka._scanrecord import record as native_record
from bridge.kafka.records import Headers, OutRecord, RecordBuilder
from bridge.passentry.pages import Listed
from bridge.uuid7 import int_millis

__all__ = ["ScanRecords"]

# As bridge/kafka/_scanrecord.c's KEYS_MAX: more reader ids than this, and the keys start over.
_KEYS_MAX = 10_000


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
        self._ce_time = cloudevents.TimeFormatter()
        # Reader id -> record key.
        self._keys: dict[str, bytes] = {}

    def build(self, items: list[Listed]) -> list[OutRecord]:
        """One record per item, in the items' order."""
        batch = _Batch()
        objects, keys, source = self._encoder.objects, self._keys, self._encoder.source
        routes = batch.routes
        out: list[OutRecord] = []
        for item in items:
            record = native_record(item, routes, objects, keys, source)
            if record is not None:
                out.append(record)
            else:
                out += self._one(item, batch)
        return out

    def _one(self, item: Listed, batch: _Batch) -> list[OutRecord]:
        """The record of a scan :func:`native_record` left to Python: made here, filling
        the caches it reads, or through the per-scan stages."""
        encoder, builder = self._encoder, self._builder
        scan, page = item.scan, item.page
        resource = scan.resource
        # A valid scan has a reader id (decode_page checked).
        reader_id = resource.reader_id or ""
        pass_id = resource.pass_id
        reader = page.readers.get(reader_id)
        pass_ = None if pass_id is None else page.passes.get(pass_id)
        if reader is None or (pass_ is None and pass_id is not None):
            return self._per_scan([item], batch.framings)
        attrs = resource.attributes
        route_key = (attrs.status, attrs.scan_type)
        route = batch.routes.get(route_key)
        if route is None:
            topic = builder.topic(*route_key)
            framed = batch.framings.get(topic)
            if framed is None:
                framed = batch.framings[topic] = builder.framed(topic)
            route = batch.routes[route_key] = (topic, *framed)
        topic, prefix, headers = route
        try:
            value = encoder.scan_body(
                prefix,
                scan,
                reader_id,
                pass_id,
                NULL if pass_ is None else encoder.pass_bytes(pass_),
                encoder.reader_bytes(reader),
            )
        except (ValueError, TypeError, OverflowError):
            return self._per_scan([item], batch.framings)  # which dead-letters it
        created_ms = int_millis(scan.id_int)
        scan_id = resource.id
        record_headers = [
            *headers,
            ("scan-id", scan_id),
            ("scan-created-ms", str(created_ms)),
            ("ce_id", scan_id),
        ]
        if created_ms < cloudevents.RFC3339_END_MS:
            record_headers.append(("ce_time", self._ce_time(created_ms)))
        keys = self._keys
        key = keys.get(reader_id)
        if key is None:
            if len(keys) >= _KEYS_MAX:
                keys.clear()
            key = keys[reader_id] = reader_id.encode()
        return [OutRecord(topic, key, value, record_headers, created_ms)]

    def per_scan(self, items: list[Listed]) -> list[OutRecord]:
        """The same records, every scan through the per-scan stages."""
        return self._per_scan(items, {})

    def _per_scan(
        self, items: list[Listed], framings: dict[str, tuple[bytes, Headers]]
    ) -> list[OutRecord]:
        enriched = self._enricher.enrich(items)
        return self._builder.scans(enriched, self._encoder.encode(enriched), framings)
