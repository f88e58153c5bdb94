"""Page fetching shared by the comparators (naive and floor): sequential, 429-aware.

``GET /api/v1/scans`` page 1.. until ``totalPages``, ``createdAfter`` = the start time. A
429 sleeps ``x-rate-limit-retry-after`` and asks again; anything else non-2xx is an error.
The naive bridge asks with a plain ``httpx.Client``; the floor with the bridge's own HTTP
path (:class:`~bridge.passentry.http.ApiHttp` on libcurl), so that what the bridge spends
above the floor is never a cheaper HTTP client's doing.
"""

from __future__ import annotations

import argparse
import time

import httpx

from bridge.passentry.http import ApiHttp

__all__ = ["BridgeHttp", "add_source_args", "client", "get_page"]


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


class BridgeHttp:
    """The bridge's HTTP path, asked as ``httpx.Client.get`` is."""

    def __init__(self, args: argparse.Namespace) -> None:
        headers = {"Authorization": f"Bearer {args.token}"}
        self._http = ApiHttp(args.api_url, headers, httpx.Timeout(30))

    def get(self, path: str, params: dict[str, str]) -> httpx.Response:
        return self._http.request("GET", path, params)

    def __enter__(self) -> BridgeHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()


def get_page(
    http: httpx.Client | BridgeHttp, args: argparse.Namespace, page: int
) -> httpx.Response:
    params = {"perPage": str(args.per_page), "page": str(page), "createdAfter": args.since}
    while True:
        response = http.get("/api/v1/scans", params=params)
        if response.status_code == 429:
            time.sleep(float(response.headers.get("x-rate-limit-retry-after", "1")))
            continue
        response.raise_for_status()
        return response
