"""A read_committed Kafka consumer of the scans topics that yields :class:`ScanRecord`.

Offsets: a record's offset is stored for the next automatic commit only when the loop asks
for the record after it, so a record is committed once the caller's loop body for it has
finished (at-least-once). A crash before that reads it again: that is why a
:class:`ScanDeduper` may be given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

from bridge.consumer._decode import ScanDecodeError, ScanDecoder
from bridge.consumer._dedupe import ScanDeduper
from bridge.consumer._model import ScanRecord

__all__ = ["ScanConsumer"]

log = logging.getLogger(__name__)


class ScanConsumer:
    """Iterate over the scans of ``topics``::

        with ScanConsumer({"bootstrap.servers": "kafka:9092", "group.id": "gates"},
                          ["passentry.scans"], dedupe=ScanDeduper()) as consumer:
            for record in consumer:
                print(record.scan.scan_id, record.scan.reader_id, record.scan.status)

    ``config`` is confluent-kafka's (librdkafka's) configuration. ``isolation.level`` is
    always ``read_committed``: the bridge writes in transactions, and only committed records
    are the stream. A value that cannot be decoded raises :class:`ScanDecodeError` naming
    the record; its offset is not committed, so nothing is skipped unseen.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        topics: Sequence[str],
        *,
        decoder: ScanDecoder | None = None,
        dedupe: ScanDeduper | None = None,
    ) -> None:
        if str(config.get("isolation.level", "read_committed")) != "read_committed":
            raise ValueError(
                "isolation.level must be read_committed: a read_uncommitted consumer sees"
                " records of aborted transactions"
            )
        conf = {
            "auto.offset.reset": "earliest",
            **config,
            "isolation.level": "read_committed",
            "enable.auto.offset.store": False,
        }
        self.decoder = decoder or ScanDecoder()
        self.dedupe = dedupe
        self.records_read = 0
        self._consumer = Consumer(conf)
        self._consumer.subscribe(list(topics))

    def __enter__(self) -> ScanConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Commit what was handled and leave the group."""
        self._consumer.close()

    def __iter__(self) -> Iterator[ScanRecord]:
        return self.records()

    def records(
        self, *, timeout_s: float | None = None, max_records: int | None = None
    ) -> Iterator[ScanRecord]:
        """Scans as they come. With ``timeout_s``, stop when no record came for that long;
        with ``max_records``, once this consumer has read that many (repeats included)."""
        last = time.monotonic()
        while max_records is None or self.records_read < max_records:
            msg = self._consumer.poll(0.5)
            if msg is None:
                if timeout_s is not None and time.monotonic() - last > timeout_s:
                    return
                continue
            err = msg.error()
            if err is not None:
                self._on_error(err)
                continue
            last = time.monotonic()
            self.records_read += 1
            record = self._record(msg)
            if self.dedupe is not None and not self.dedupe.first_time(record.scan.scan_id):
                self._consumer.store_offsets(message=msg)
                continue
            yield record
            self._consumer.store_offsets(message=msg)

    def _record(self, msg: Message) -> ScanRecord:
        topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
        try:
            scan = self.decoder.decode(msg.value())
        except ScanDecodeError as exc:
            raise ScanDecodeError(f"{topic}[{partition}]@{offset}: {exc}") from exc
        headers: dict[str, str] = {}
        for name, value in msg.headers() or []:  # type: ignore[str-unpack]
            if isinstance(value, bytes):
                headers[name] = value.decode("utf-8", "replace")
        return ScanRecord(
            scan=scan,
            topic=topic,
            partition=partition,
            offset=offset,
            published_at=datetime.fromtimestamp(msg.timestamp()[1] / 1000, tz=UTC),
            headers=MappingProxyType(headers),
        )

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            raise KafkaException(err)
        # A topic that does not exist yet, a broker that is restarting: librdkafka retries.
        log.warning("kafka consumer: %s", err.str())
