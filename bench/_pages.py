"""Page fetching shared by the comparators (naive and floor): sequential, 429-aware.

``GET /api/v1/scans`` page 1.. until ``totalPages``, ``createdAfter`` = the start time. A
429 sleeps ``x-rate-limit-retry-after`` and asks again; anything else non-2xx is an error.
"""

from __future__ import annotations

import argparse
import time

import httpx

__all__ = ["add_source_args", "client", "get_page"]


def add_source_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--token", default="sim-token")
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--since", required=True, help="createdAfter, ISO 8601")
    parser.add_argument("--per-page", type=int, default=100)


def client(args: argparse.Namespace) -> httpx.Client:
    return httpx.Client(
        base_url=args.api_url, headers={"Authorization": f"Bearer {args.token}"}, timeout=30
    )


def get_page(http: httpx.Client, args: argparse.Namespace, page: int) -> httpx.Response:
    params = {"perPage": str(args.per_page), "page": str(page), "createdAfter": args.since}
    while True:
        response = http.get("/api/v1/scans", params=params)
        if response.status_code == 429:
            time.sleep(float(response.headers.get("x-rate-limit-retry-after", "1")))
            continue
        response.raise_for_status()
        return response
