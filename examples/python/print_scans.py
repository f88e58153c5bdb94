"""Print the bridge's scans as JSON lines, one per distinct scan, with ``bridge.consumer``.

    pip install passentry-bridge   # or, in this repository: make install
    python examples/python/print_scans.py --bootstrap localhost:9092 --topic passentry.scans

Registry mode: add ``--registry-url http://registry:8081``. A scan written with a newer
schema in single-object mode needs that schema's file: ``--writer-schema v2.avsc``. Each line
has the same keys as the Java and Go examples print (tests/integration/consumers compare
them); ``extra`` holds fields of the reader schema the dataclasses do not name yet.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import datetime, timedelta

from bridge.consumer import (
    ScanConsumer,
    ScanDecodeError,
    ScanDecoder,
    ScanDeduper,
    ScanRecord,
    schema_file,
)


def line(record: ScanRecord) -> str:
    scan = record.scan
    return json.dumps(
        {
            "scanId": scan.scan_id,
            "createdAt": rfc3339(scan.created_at),
            "readerId": scan.reader_id,
            "status": scan.status,
            "scanType": scan.scan_type,
            "validationType": scan.validation_type,
            "passId": scan.pass_id,
            "readerName": scan.reader.name if scan.reader else None,
            "sourceId": scan.source_id,
            "partition": record.partition,
            "offset": record.offset,
            "extra": {k: _plain(v) for k, v in scan.extra.items()},
        },
        separators=(",", ":"),
    )


def rfc3339(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--topic", action="append", required=True, help="repeatable")
    parser.add_argument("--group", default="passentry-scans-example", help="consumer group")
    parser.add_argument("--registry-url", help="schema registry (registry wire format)")
    parser.add_argument("--reader-schema", help=".avsc to read every scan as (default: v1)")
    parser.add_argument("--writer-schema", action="append", default=[], help="extra .avsc")
    parser.add_argument("--dedupe-window-s", type=float, default=3600.0)
    parser.add_argument("--max-records", type=int, help="stop after reading this many")
    parser.add_argument("--timeout-s", type=float, help="stop when nothing came for this long")
    args = parser.parse_args(argv)
    try:
        return consume(args)
    except ScanDecodeError as exc:
        # Its offset was not committed: once the cause is fixed, a rerun reads it again.
        print(f"print_scans: {exc}", file=sys.stderr)
        return 1


def consume(args: argparse.Namespace) -> int:
    decoder = ScanDecoder(
        registry_url=args.registry_url,
        reader_schema=schema_file(args.reader_schema) if args.reader_schema else None,
        writer_schemas=[schema_file(p) for p in args.writer_schema],
    )
    dedupe = ScanDeduper(timedelta(seconds=args.dedupe_window_s))
    config = {"bootstrap.servers": args.bootstrap, "group.id": args.group}
    printed = 0
    with decoder, ScanConsumer(config, args.topic, decoder=decoder, dedupe=dedupe) as consumer:
        for record in consumer.records(timeout_s=args.timeout_s, max_records=args.max_records):
            print(line(record), flush=True)
            printed += 1
        read = consumer.records_read
    print(
        f"read {read} records, printed {printed} scans, skipped {dedupe.repeats} repeats",
        file=sys.stderr,
    )
    if args.max_records is not None and read < args.max_records:
        print(f"timed out after {read} of {args.max_records} records", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
