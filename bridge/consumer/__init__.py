"""Read the bridge's scans topics as typed Python data.

::

    from bridge.consumer import ScanConsumer, ScanDecoder, ScanDeduper

    consumer = ScanConsumer(
        {"bootstrap.servers": "kafka:9092", "group.id": "gate-dashboard"},
        ["passentry.scans"],
        decoder=ScanDecoder(registry_url="https://schema-registry:8081"),  # registry mode
        dedupe=ScanDeduper(),
    )
    for record in consumer:
        scan = record.scan  # a Scan dataclass: scan_id, created_at, reader_id, status, ...

- :class:`ScanConsumer`: a ``read_committed`` consumer group member yielding
  :class:`ScanRecord` (the :class:`Scan` plus topic, partition, offset, headers).
- :class:`ScanDecoder`: one value to a :class:`Scan`, in single-object encoding or the
  registry wire format, resolved to one reader schema.
- :class:`ScanDeduper`: drops repeats of a scan id within a window of creation time; its
  docstring lists when a consumer sees an id again.

``examples/python/print_scans.py`` is a complete program built on it.
"""

from bridge.consumer._consume import ScanConsumer
from bridge.consumer._decode import ScanDecodeError, ScanDecoder, schema_file
from bridge.consumer._dedupe import ScanDeduper
from bridge.consumer._model import Barcode, Pass, Reader, Scan, ScanRecord, scan_from_avro

__all__ = [
    "Barcode",
    "Pass",
    "Reader",
    "Scan",
    "ScanConsumer",
    "ScanDecodeError",
    "ScanDecoder",
    "ScanDeduper",
    "ScanRecord",
    "scan_from_avro",
    "schema_file",
]
