"""How fast does the simulator serve pages? Target: >= 30,000 scans/s on one core.

Starts ``passentry-bridge simulate`` as a child process (backlog, no rate limit, no faults),
pins it to one CPU where the OS allows, and pages through the whole backlog with a plain
httpx client from this process (pinned to another CPU). Prints the client-seen scans/s and
the simulator's own CPU time per scan, read from /proc before and after the walk, so the
start-up (building the backlog) is not counted.

    .venv/bin/python bench/simulator_throughput.py --backlog 30000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import time

import httpx
import msgspec

from bench._procs import cpu_seconds
from passentry_simulator.server import SimulatorProcess


class _Meta(msgspec.Struct):
    totalPages: int  # the API's JSON name


class _Page(msgspec.Struct):
    # Raw items: the client still receives every byte, but skips building Python objects,
    # so the client (one process, one core) is not what the benchmark measures.
    data: list[msgspec.Raw]
    meta: _Meta


_PAGE_DECODER = msgspec.json.Decoder(_Page)


def _pin(pid: int, cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(pid, {cpu})


def _walk(client: httpx.Client, per_page: int) -> int:
    """Page 1..totalPages of the newest-first list; returns the number of scans seen."""
    seen, page, total_pages = 0, 1, 1
    while page <= total_pages:
        resp = client.get("/api/v1/scans", params={"perPage": per_page, "page": page})
        resp.raise_for_status()
        page_body = _PAGE_DECODER.decode(resp.content)
        seen += len(page_body.data)
        total_pages = page_body.meta.totalPages
        page += 1
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=30_000)
    parser.add_argument("--per-page", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with SimulatorProcess(
        "--backlog", str(args.backlog), "--no-rate-limit", "--seed", "7", "--log-level", "WARNING"
    ) as sim:
        _pin(sim.pid, 0)
        _pin(0, 1)
        headers = {"Authorization": f"Bearer {sim.token}"}
        with httpx.Client(base_url=sim.url, headers=headers, timeout=30.0) as client:
            _walk(client, args.per_page)  # warm-up: fills the query cache, JITs nothing
            cpu0, t0 = cpu_seconds(sim.pid), time.perf_counter()
            scans = sum(_walk(client, args.per_page) for _ in range(args.rounds))
            wall, cpu = time.perf_counter() - t0, cpu_seconds(sim.pid) - cpu0
    print(f"scans served:        {scans} in {wall:.2f}s ({args.rounds} walks of {args.backlog})")
    print(f"client-seen rate:    {scans / wall:,.0f} scans/s")
    print(f"simulator CPU/scan:  {cpu / scans * 1e6:.2f} us  ({cpu:.2f} CPU s)")
    print(f"one-core capacity:   {scans / cpu:,.0f} scans per simulator CPU second")


if __name__ == "__main__":
    main()
