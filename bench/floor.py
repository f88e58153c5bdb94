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

    python -m bench.floor --api-url URL --bootstrap HOST:PORT --topic T --since ISO [--budget N]
"""

from __future__ import annotations

import argparse
import json
import re

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
    args = parser.parse_args()
    if args.budget is not None and args.budget <= 0:
        parser.error(f"--budget must be above 0, got {args.budget}")
    budget = RequestBudget(args.budget) if args.budget is not None else None

    value = b"\xc3\x01" + bytes(args.value_size - 2)
    producer = Producer(
        {"bootstrap.servers": args.bootstrap, "compression.type": "lz4", "acks": "all"}
    )
    published = pages = 0
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
                producer.produce(args.topic, value, _KEYS[i % len(_KEYS)])
                producer.poll(0)
                published += 1
            producer.flush()
            page += 1
    print(json.dumps({"published": published, "pages": pages}), flush=True)


if __name__ == "__main__":
    main()
