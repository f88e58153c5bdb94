"""The Kafka records the bridge writes: a scan's Avro record, or a dead letter.

Every record carries ``source-id`` and ``scan-id`` headers: start-up reads them back to
rebuild the dedup window, and consumers can trace a record to its source. A scan record's
key is its reader id, so one reader's scans stay in one partition in id order. Its Kafka
timestamp is when it was published (retention counts from there, so a backfill of old scans
is kept as long as live ones); the scan's creation time, from its UUIDv7 id, is in the value
(``createdAt``) and in the ``scan-created-ms`` header. A dead letter keeps the scan's raw
JSON as its value and says why in ``dlq-reason`` and ``dlq-detail``.
"""

from __future__ import annotations

from bridge import __version__
from bridge.avro.framing import Framer, Framing
from bridge.enrich import Enriched
from bridge.kafka.producer import Headers, OutRecord
from bridge.kafka.routing import Router
from bridge.passentry.pages import Rejected

__all__ = ["RecordBuilder"]


class RecordBuilder:
    def __init__(self, source_id: str, dlq_topic: str, router: Router, framer: Framer) -> None:
        self.source_id = source_id
        self.dlq_topic = dlq_topic
        self._router = router
        self._framer = framer

    def scans(self, items: list[Enriched], bodies: list[bytes | Exception]) -> list[OutRecord]:
        """One record per item: its framed Avro body, or a dead letter where encoding failed.
        The framing is looked up once per topic and batch (a registry framer may raise a
        RetriableError while the registry is unreachable)."""
        framings: dict[str, tuple[bytes, Headers]] = {}
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
                framed = framings[topic] = self._framed(self._framer.framing(topic))
            prefix, headers = framed
            created_ms = item.scan.created_ms
            out.append(
                OutRecord(
                    topic,
                    item.reader_id.encode(),
                    prefix + body,
                    [*headers, ("scan-id", resource.id), ("scan-created-ms", str(created_ms))],
                    created_ms,
                )
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
        if rejected.scan_id is not None:
            headers.append(("scan-id", rejected.scan_id[:200]))
        key = rejected.reader_id.encode() if rejected.reader_id else None
        return OutRecord(self.dlq_topic, key, rejected.raw, headers, dlq_reason=rejected.reason)

    def _framed(self, framing: Framing) -> tuple[bytes, Headers]:
        headers: Headers = [
            ("content-type", framing.content_type),
            ("schema-version", framing.schema_version),
            ("source-id", self.source_id),
        ]
        return framing.prefix, headers
