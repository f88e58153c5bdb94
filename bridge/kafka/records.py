"""The Kafka records the bridge writes: a scan's Avro record, or a dead letter.

Every record carries ``source-id`` and ``scan-id`` headers: start-up reads them back to
rebuild the dedup window, and consumers can trace a record to its source. A scan record's
key is its reader id, so one reader's scans stay in one partition in id order. Its Kafka
timestamp is when it was published (retention counts from there, so a backfill of old scans
is kept as long as live ones); the scan's creation time, from its UUIDv7 id, is in the value
(``createdAt``) and in the ``scan-created-ms`` header. A dead letter keeps the scan's raw
JSON as its value and says why in ``dlq-reason`` and ``dlq-detail``.

Both also carry the CloudEvents attributes as ``ce_*`` headers, binary mode
(``bridge.cloudevents``). The ones that are the same for every record of a topic are built
once per topic and batch; per record only ``scan-id``, ``scan-created-ms``, ``ce_id`` and
``ce_time`` are added.
"""

from __future__ import annotations

import msgspec

from bridge import __version__, cloudevents
from bridge.avro.framing import Framer
from bridge.enrich import Enriched
from bridge.kafka.routing import Router
from bridge.passentry.pages import Rejected
from bridge.uuid7 import int_millis, parse_uuid7_int

__all__ = ["Headers", "OutRecord", "RecordBuilder"]

Headers = list[tuple[str, str | bytes | None]]


class OutRecord(msgspec.Struct, frozen=True, gc=False):
    """One record to produce. Its Kafka timestamp is the time it is produced (librdkafka
    stamps it): a timestamp as old as the scan would let time-based retention delete a
    backfilled scan the moment it is written. One per record on the hot path: a struct
    costs a tenth of a frozen dataclass to make, and the collector never scans it."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers
    # The scan's creation time (from its UUIDv7 id), for the end-to-end latency; None for
    # dead letters and checkpoints.
    created_ms: int | None = None
    # Set on dead letters: why the scan could not be published (a metric label).
    dlq_reason: str | None = None


class RecordBuilder:
    def __init__(self, source_id: str, dlq_topic: str, router: Router, framer: Framer) -> None:
        self.source_id = source_id
        self.dlq_topic = dlq_topic
        self._router = router
        self._framer = framer
        self._source_uri = cloudevents.source_uri(source_id)
        self._ce_time = cloudevents.TimeFormatter()

    def scans(
        self, items: list[Enriched], bodies: list[bytes | Exception],
        framings: dict[str, tuple[bytes, Headers]] | None = None,
    ) -> list[OutRecord]:  # fmt: skip
        """One record per item: its framed Avro body, or a dead letter where encoding failed.
        The framing is looked up once per topic and batch (a registry framer may raise a
        RetriableError while the registry is unreachable); ``framings`` holds the batch's."""
        if framings is None:
            framings = {}
        out: list[OutRecord] = []
        for item, body in zip(items, bodies, strict=True):
            resource = item.scan.resource
            if isinstance(body, Exception):
                detail = f"{type(body).__name__}: {body}"[:300]
                rejected = Rejected(
                    "encode_error", detail, bytes(item.scan.raw), resource.id, item.reader_id
                )
                out.append(self.dead_letter(rejected, item.url))
                continue
            attrs = resource.attributes
            topic = self._router.topic(attrs.status, attrs.scan_type)
            framed = framings.get(topic)
            if framed is None:
                framed = framings[topic] = self.framed(topic)
            prefix, headers = framed
            created_ms = item.scan.created_ms
            record_headers = [
                *headers,
                ("scan-id", resource.id),
                ("scan-created-ms", str(created_ms)),
                ("ce_id", resource.id),
            ]
            if created_ms < cloudevents.RFC3339_END_MS:
                record_headers.append(("ce_time", self._ce_time(created_ms)))
            out.append(
                OutRecord(topic, item.reader_id.encode(), prefix + body, record_headers, created_ms)
            )
        return out

    def dead_letter(self, rejected: Rejected, url: str) -> OutRecord:
        headers: Headers = [
            ("dlq-reason", rejected.reason),
            ("dlq-detail", rejected.detail[:500]),
            ("source-id", self.source_id),
            ("source-url", url),
            ("bridge-version", __version__),
            ("content-type", "application/json"),
        ]
        scan_id = rejected.scan_id[:200] if rejected.scan_id is not None else None
        if scan_id is not None:
            headers.append(("scan-id", scan_id))
        headers += [
            ("ce_specversion", cloudevents.SPEC_VERSION),
            ("ce_id", cloudevents.dead_letter_id(rejected.reason, scan_id, rejected.raw)),
            ("ce_source", self._source_uri),
            ("ce_type", cloudevents.DEAD_LETTER_TYPE),
        ]
        created_ms = _created_ms(scan_id)
        if created_ms is not None and created_ms < cloudevents.RFC3339_END_MS:
            headers.append(("ce_time", cloudevents.TimeFormatter()(created_ms)))
        key = rejected.reader_id.encode() if rejected.reader_id else None
        return OutRecord(self.dlq_topic, key, rejected.raw, headers, dlq_reason=rejected.reason)

    def topic(self, status: str, scan_type: str) -> str:
        return self._router.topic(status, scan_type)

    def framed(self, topic: str) -> tuple[bytes, Headers]:
        """The prefix of ``topic``'s values, and the headers every scan record on it
        carries."""
        framing = self._framer.framing(topic)
        headers: Headers = [
            ("content-type", framing.content_type),
            ("schema-version", framing.schema_version),
            ("source-id", self.source_id),
            ("ce_specversion", cloudevents.SPEC_VERSION),
            ("ce_source", self._source_uri),
            ("ce_type", framing.event_type),
            ("ce_dataschema", framing.dataschema),
        ]
        return framing.prefix, headers


def _created_ms(scan_id: str | None) -> int | None:
    """The creation time in a dead letter's scan id, if it is a UUIDv7 (an ``invalid_id``
    dead letter's is not: it then has no ``ce_time``)."""
    if not scan_id:
        return None
    try:
        return int_millis(parse_uuid7_int(scan_id))
    except ValueError:
        return None
