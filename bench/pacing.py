"""What a page costs by how its requests are spaced: back to back, evenly, or in bursts.

One thread fetches the cpu scenario's backlog page by page with the bridge's own HTTP path
(:class:`~bridge.passentry.http.ApiHttp` on libcurl) and decodes each page as the bridge
does (:func:`~bridge.passentry.pages.decode_page`), three ways at the same budget:

- ``back_to_back``: no pacing, as the floor fetches;
- ``even``: each request ``1/budget`` after the last, as the request budget paced every
  request before bursts;
- ``bursts``: through :class:`~bridge.passentry.ratelimit.RequestBudget` as it is now (at a
  budget of 100, ten requests back to back every 0.1 s).

It reports the thread's CPU per page (fetch and decode), median of the repetitions, which
run interleaved so that a noisy neighbour hits all three alike.

    python -m bench.pacing [--scans 30000] [--budget 100] [--repetitions 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from bench._procs import REPO, Simulator
from bench.scenarios import WEEK_S, _backlog
from bridge.passentry.http import ApiHttp
from bridge.passentry.pages import IncludedMemo, decode_page
from bridge.passentry.ratelimit import RequestBudget

_PER_PAGE = 100


def _even(budget: float) -> Callable[[], None]:
    interval = 1.0 / budget
    next_start = [0.0]

    def wait() -> None:
        now = time.monotonic()
        start = max(now, next_start[0])
        next_start[0] = start + interval
        if start > now:
            time.sleep(start - now)

    return wait


def _pages(http: ApiHttp, since: str, pages: int, wait: Callable[[], None] | None) -> float:
    """CPU seconds of this thread per page, fetching and decoding ``pages`` pages."""
    memo = IncludedMemo(4096)
    cpu = 0.0
    for number in range(1, pages + 1):
        if wait is not None:
            wait()
        began = time.thread_time()
        params = {"perPage": str(_PER_PAGE), "page": str(number), "createdAfter": since}
        response = http.request("GET", "/api/v1/scans", params)
        decode_page(response.content, memo)
        cpu += time.thread_time() - began
    return cpu / pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=30_000)
    parser.add_argument("--budget", type=float, default=100.0, help="requests a second")
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args()
    pages = args.scans // _PER_PAGE
    sim_args, since = _backlog(args.scans, WEEK_S, 11, "--no-rate-limit")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = REPO / ".local" / "bench" / f"pacing-{stamp}"
    ways: dict[str, Callable[[], Callable[[], None] | None]] = {
        "back_to_back": lambda: None,
        "even": lambda: _even(args.budget),
        "bursts": lambda: RequestBudget(args.budget).acquire,
    }
    per_page: dict[str, list[float]] = {way: [] for way in ways}
    with Simulator(sim_args, log_dir=log_dir) as sim:
        http = ApiHttp(sim.url, {"Authorization": "Bearer sim-token"}, httpx.Timeout(30))
        try:
            _pages(http, since, pages, None)  # warm: the connection, the memo's first decode
            for _ in range(args.repetitions):
                for way, pacer in ways.items():
                    per_page[way].append(_pages(http, since, pages, pacer()))
        finally:
            http.close()
    burst = RequestBudget(args.budget).burst
    print(f"{pages} pages of {_PER_PAGE} scans, budget {args.budget:g}/s (bursts of {burst}),"
          f" {args.repetitions} repetitions, one thread")  # fmt: skip
    print("\n| requests | CPU µs a page, fetch and decode (median) | runs |")
    print("|---|---|---|")
    for way, runs in per_page.items():
        each = ", ".join(f"{r * 1e6:.0f}" for r in runs)
        print(f"| {way} | {statistics.median(runs) * 1e6:.0f} | {each} |")


if __name__ == "__main__":
    main()
