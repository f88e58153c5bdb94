"""The records of a chunk of new scans, in order: straight from each scan's page where
nothing about the scan is odd, through the per-scan stages where something is.

The per-scan path is the stages one after the other: :class:`~bridge.enrich.Enricher` joins
each scan with its pass and reader, :class:`~bridge.avro.encoder.Encoder` writes the Avro
bodies, :class:`~bridge.kafka.records.RecordBuilder` makes the records (a dead letter where
encoding failed). It makes an object per scan at every step, and counts and fetches what
is missing.

The fast path makes the same bytes with none of that: the pass and reader are looked up in
the scan's page and their Avro bytes reused, the strings that repeat (types, statuses,
reader ids, keys) are encoded once, and the headers are the topic's plus the scan's own.
Any scan it is not sure of goes through the per-scan path on its own, in its place: a pass
or reader missing from the page (fetched, or counted as a miss), or a value the encoder
refuses (dead-lettered). ``tests/unit/kafka/test_scan_records.py`` feeds both paths the same
hostile pages and compares every byte.
"""

from __future__ import annotations

from bridge import cloudevents
from bridge.avro.encoder import Encoder
from bridge.avro.wire import NULL
from bridge.enrich import Enricher
from bridge.kafka.records import Headers, OutRecord, RecordBuilder
from bridge.passentry.pages import Listed
from bridge.uuid7 import int_millis

__all__ = ["ScanRecords"]

_KEYS_MAX = 10_000


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
        encoder, builder = self._encoder, self._builder
        framings: dict[str, tuple[bytes, Headers]] = {}
        # (status, scan type) -> the topic, its value prefix and its headers, for this batch.
        routes: dict[tuple[str, str], tuple[str, bytes, Headers]] = {}
        keys, ce_time = self._keys, self._ce_time
        out: list[OutRecord] = []
        for item in items:
            scan, page = item.scan, item.page
            resource = scan.resource
            relationships = resource.relationships
            # A valid scan has a reader id (decode_page checked).
            reader_id = resource.reader_id or ""
            pass_rel = relationships.pass_
            pass_id = None if pass_rel is None or pass_rel.data is None else pass_rel.data.id
            reader = page.readers.get(reader_id)
            pass_ = None if pass_id is None else page.passes.get(pass_id)
            if reader is None or (pass_ is None and pass_id is not None):
                out += self._per_scan([item], framings)
                continue
            try:
                body = encoder.scan_body(
                    scan,
                    reader_id,
                    pass_id,
                    NULL if pass_ is None else encoder.pass_bytes(pass_),
                    encoder.reader_bytes(reader),
                )
            except (ValueError, TypeError, OverflowError):
                out += self._per_scan([item], framings)  # which dead-letters it
                continue
            attrs = resource.attributes
            route_key = (attrs.status, attrs.scan_type)
            route = routes.get(route_key)
            if route is None:
                topic = builder.topic(*route_key)
                framed = framings.get(topic)
                if framed is None:
                    framed = framings[topic] = builder.framed(topic)
                route = routes[route_key] = (topic, *framed)
            topic, prefix, headers = route
            created_ms = int_millis(scan.id_int)
            scan_id = resource.id
            record_headers = [
                *headers,
                ("scan-id", scan_id),
                ("scan-created-ms", str(created_ms)),
                ("ce_id", scan_id),
            ]
            if created_ms < cloudevents.RFC3339_END_MS:
                record_headers.append(("ce_time", ce_time(created_ms)))
            key = keys.get(reader_id)
            if key is None:
                if len(keys) >= _KEYS_MAX:
                    keys.clear()
                key = keys[reader_id] = reader_id.encode()
            out.append(OutRecord(topic, key, prefix + body, record_headers, created_ms))
        return out

    def per_scan(self, items: list[Listed]) -> list[OutRecord]:
        """The same records, every scan through the per-scan stages."""
        return self._per_scan(items, {})

    def _per_scan(
        self, items: list[Listed], framings: dict[str, tuple[bytes, Headers]]
    ) -> list[OutRecord]:
        enriched = self._enricher.enrich(items)
        return self._builder.scans(enriched, self._encoder.encode(enriched), framings)
