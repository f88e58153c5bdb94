"""The floor: the bridge's page fetching, producing pre-encoded fixed bytes.

No decode, no enrich, no encode. It counts the scans of a page with a byte search for
``"type":"scan"`` and reads ``totalPages`` with one regex on the page's tail, then produces
that many copies of a fixed value (the size of a real record) under a rotating key, and
flushes once per page. What the bridge spends above this is its own work.

``--budget N`` paces the page requests as the bridge's request budget does (its own
:class:`~bridge.passentry.ratelimit.RequestBudget`, N a second). The cpu scenario runs the
floor both ways: unpaced is the target's floor; paced shows what the pacing alone costs,
since a request that starts after an idle spell takes more CPU than one straight after
another (bench/README.md).

``--contract N`` does what the bridge's contract makes it do besides: records in Kafka
transactions of N (a small record closing each, as the bridge's checkpoint does) in place of
the flush after each page, and on every record the eleven headers of a bridge's scan record,
of the same sizes. The header lists are made before the first request, so what is measured
is their produce, not their making. With ``--budget``, the cpu scenario reports it as the
contract's floor: what a bridge that decoded and encoded nothing would still spend.

    python -m bench.floor --api-url URL --bootstrap HOST:PORT --topic T --since ISO
        [--budget N] [--contract SCANS]
"""

from __future__ import annotations

import argparse
import json
import re
import uuid

from confluent_kafka import Producer

from bench._pages import BridgeHttp, add_source_args, get_page
from bridge.passentry.ratelimit import RequestBudget

_TOTAL_PAGES = re.compile(rb'"totalPages":(\d+)')
_SCAN = b'"type":"scan"'
_KEYS = [f"gate-{n:03d}".encode() for n in range(1, 21)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_args(parser)
    parser.add_argument("--value-size", type=int, default=400, help="bytes per record")
    parser.add_argument("--budget", type=float, help="requests a second, paced (default: unpaced)")
    parser.add_argument(
        "--contract", type=int, metavar="SCANS",
        help="transactions of SCANS records, each record with a scan record's headers",
    )  # fmt: skip
    args = parser.parse_args()
    if args.budget is not None and args.budget <= 0:
        parser.error(f"--budget must be above 0, got {args.budget}")
    if args.contract is not None and args.contract < 1:
        parser.error(f"--contract must be at least 1, got {args.contract}")
    budget = RequestBudget(args.budget) if args.budget is not None else None

    value = b"\xc3\x01" + bytes(args.value_size - 2)
    conf = {"bootstrap.servers": args.bootstrap, "compression.type": "lz4", "acks": "all"}
    if args.contract is not None:
        # As the bridge's producer (bridge/kafka/producer.py), with its default linger.
        conf |= {"transactional.id": f"floor-{uuid.uuid4().hex}", "linger.ms": 20}
    producer = Producer(conf)
    headers = _scan_headers(args.per_page) if args.contract is not None else None
    if args.contract is not None:
        producer.init_transactions(30)
        producer.begin_transaction()
    published = pages = in_transaction = 0
    with BridgeHttp(args) as http:
        page, total_pages = 1, 1
        while page <= total_pages:
            if budget is not None:
                budget.acquire()
            body = get_page(http, args, page).content
            pages += 1
            match = _TOTAL_PAGES.search(body, max(0, len(body) - 2048))
            total_pages = int(match.group(1)) if match else 0
            for i in range(body.count(_SCAN)):
                key = _KEYS[i % len(_KEYS)]
                if headers is None:
                    producer.produce(args.topic, value, key)
                else:
                    producer.produce(args.topic, value, key, headers=headers[i % len(headers)])
                producer.poll(0)
                published += 1
                in_transaction += 1
            if args.contract is None:
                producer.flush()
            elif in_transaction >= args.contract:
                _commit(producer, args.topic)
                producer.begin_transaction()
                in_transaction = 0
            page += 1
    if args.contract is not None:
        _commit(producer, args.topic)
    print(json.dumps({"published": published, "pages": pages}), flush=True)


def _commit(producer: Producer, topic: str) -> None:
    producer.produce(topic, bytes(60), b"checkpoint")
    producer.commit_transaction(30)


def _scan_headers(count: int) -> list[list[tuple[str, str]]]:
    """``count`` header lists as a scan record carries (bridge/kafka/records.py): the
    topic's seven, then the scan's id (twice), creation time and CloudEvents time."""
    topic = [
        ("content-type", "application/avro; encoding=single-object"),
        ("schema-version", "1"),
        ("source-id", "bench.floor-0123abcd"),
        ("ce_specversion", "1.0"),
        ("ce_source", "urn:passentry-bridge:source:bench.floor-0123abcd"),
        ("ce_type", "com.passentry.scan.v1"),
        ("ce_dataschema", "urn:avro:crc-64-avro:d8cb8448677ada91"),
    ]
    lists = []
    for n in range(count):
        scan_id = str(uuid.UUID(int=(0x0190 << 112) | n))
        lists.append([*topic, ("scan-id", scan_id), ("scan-created-ms", "1796601600000"),
                      ("ce_id", scan_id), ("ce_time", "2026-12-06T12:00:00.000Z")])  # fmt: skip
    return lists


if __name__ == "__main__":
    main()
