"""Where the bridge's CPU goes per scan, stage by stage, around the real ``Pipeline._publish``.

Fetches the cpu scenario's backlog from a no-limit simulator once (the same seed and span),
then, in this process, decodes the pages and publishes them in slices of 10,000 scans through
a real ``Source`` (its producer, transactions and checkpoints) into the local Kafka. Each
stage is timed in CPU seconds of the thread that runs it, the collector by its callbacks;
the process's CPU over the same span includes librdkafka's threads, which compress and send.

    python -m bench.stages --scans 50000            # prints a Markdown table
    python -m bench.stages --passes 50000           # most scans bring a new pass
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx

from bench._procs import REPO, Kafka, Simulator
from bench._runs import fresh_names
from bench.ab import positive_int
from bench.scenarios import WEEK_S, _backlog

SLICE_PAGES = 100  # 10,000 scans at 100 a page, as PASSENTRY_MAX_CYCLE_SCANS cuts them


class Stages:
    """CPU seconds by stage, on the thread that runs each."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._gc_started = 0.0
        gc.callbacks.append(self._on_gc)
        # Reading a thread's CPU clock is a system call (about 6 us in a Firecracker VM):
        # each interval holds one, which is taken back out.
        started = time.thread_time()
        for _ in range(1000):
            time.thread_time()
        self._clock_cost = (time.thread_time() - started) / 1001

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        started = time.thread_time()
        try:
            yield
        finally:
            self.seconds[stage] += time.thread_time() - started - self._clock_cost

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        """Time every call of ``owner.name`` as ``stage`` (calls made per chunk or per
        page: a wrapper per record would cost more than it measures)."""
        method: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.timed(stage):
                return method(*args, **kwargs)

        setattr(owner, name, timed)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.thread_time()
        else:
            self.seconds["cyclic garbage collection"] += time.thread_time() - self._gc_started


def fetch_pages(url: str, since: str, scans: int) -> list[bytes]:
    bodies = []
    with httpx.Client(base_url=url, headers={"Authorization": "Bearer sim-token"}) as http:
        for page in range(1, -(-scans // 100) + 1):
            params = {"perPage": "100", "page": str(page), "createdAfter": since}
            response = http.get("/api/v1/scans", params=params, timeout=60)
            response.raise_for_status()
            bodies.append(response.content)
    # Newest first as listed; the bridge reads slices from the oldest on.
    bodies.reverse()
    return bodies


def run(bodies: list[bytes], bootstrap: str, api_url: str, since_ms: int) -> dict[str, Any]:
    from bridge.config import load_config
    from bridge.ops.gc_policy import tune_for_streaming
    from bridge.ops.metrics import Metrics
    from bridge.passentry.client import FetchedPage
    from bridge.passentry.pages import IncludedMemo, decode_page
    from bridge.passentry.slices import Slice
    from bridge.pipeline import CycleStats
    from bridge.source import Source
    from bridge.wiring import Wiring

    names = fresh_names("stages")
    os.environ.update({"PASSENTRY_API_URL": api_url, "PASSENTRY_API_TOKEN": "sim-token",
                       "KAFKA_BOOTSTRAP_SERVERS": bootstrap, **names})  # fmt: skip
    config = load_config()
    source = Source(Wiring.of(config, config.sources[0].id, metrics=Metrics()),
                    start_ms=since_ms, sleep=time.sleep)  # fmt: skip
    source.prepare()
    pipeline = source.pipeline
    stages = Stages()
    stages.wrap(pipeline._scan_records, "build", "records (decode to OutRecord)")
    stages.wrap(pipeline, "_account", "metrics")
    stages.wrap(pipeline._enricher, "remember", "classify, remember, sort")
    stages.wrap(pipeline.window, "sort_out", "classify, remember, sort")
    stages.wrap(pipeline.window, "add_all", "window add, checkpoint")
    stages.wrap(source.publisher, "send", "produce + commit")
    stages.wrap(source.publisher, "_call", "commit + begin")  # begin_transaction
    stages.wrap(source.publisher, "_commit", "commit + begin")
    memo = IncludedMemo()
    tune_for_streaming()  # as `run` does once start-up is done
    stats = CycleStats()
    cpu_started, thread_started = time.process_time(), time.thread_time()
    for start in range(0, len(bodies), SLICE_PAGES):
        found = Slice()
        for body in bodies[start : start + SLICE_PAGES]:
            with stages.timed("page decode (typed, + memo)"):
                page = decode_page(body, memo)
            with stages.timed("slice (merge by id)"):
                found.add(FetchedPage(page, "bench"))
        with stages.timed("publish (all of _publish)"):
            pipeline._publish(found, stats, threading.Event(), slice_end=None)
            # As a cycle does after the slice's commit: the window's cursor moves on.
            pipeline._advance((max(found.scans) >> 80) + 1)
    cpu = time.process_time() - cpu_started
    thread = time.thread_time() - thread_started
    source.close(5.0)
    return {"published": stats.published, "cpu_s": cpu, "thread_s": thread, **stages.seconds}


def table(result: dict[str, Any], scans: int) -> str:
    per = {k: v / scans * 1e6 for k, v in result.items() if isinstance(v, float)}
    produce = per["produce + commit"] - per.get("commit + begin", 0.0)
    rows = [
        ("page decode (typed, + memo)", per["page decode (typed, + memo)"]),
        ("slice (merge by id)", per["slice (merge by id)"]),
        ("classify, remember, sort", per["classify, remember, sort"]),
        ("records (enrich, encode, headers: OutRecord)", per["records (decode to OutRecord)"]),
        ("produce loop + poll", produce),
        ("commit + begin", per.get("commit + begin", 0.0)),
        ("metrics (one histogram update per chunk)", per["metrics"]),
        ("window add, checkpoint", per["window add, checkpoint"]),
    ]
    named = sum(v for _, v in rows[2:])
    rows.append(("the rest of _publish / _commit", per["publish (all of _publish)"] - named))
    lines = ["| stage | µs/scan |", "|---|---|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in rows]
    collection = per.get("cyclic garbage collection", 0.0)
    background = per["cpu_s"] - per["thread_s"]
    lines += [
        f"| cyclic garbage collection, across all of them | {collection:.2f} |",
        f"| **this thread, in all** | **{per['thread_s']:.2f}** |",
        f"| librdkafka's threads (process CPU less this thread) | {background:.2f} |",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=50_000)
    parser.add_argument(
        "--passes",
        type=positive_int,
        help="distinct passes in the backlog (the simulator's default: 1000)",
    )
    args = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = REPO / ".local" / "bench" / f"stages-{stamp}"
    extra = ("--passes", str(args.passes)) if args.passes is not None else ()
    sim_args, since = _backlog(args.scans, WEEK_S, 11, "--no-rate-limit", *extra)
    since_ms = int(datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp() * 1000)
    with Kafka() as kafka, Simulator(sim_args, log_dir=log_dir) as sim:
        bodies = fetch_pages(sim.url, since, args.scans)
        result = run(bodies, kafka.bootstrap, sim.url, since_ms)
    if result["published"] != args.scans:
        print(f"published {result['published']} of {args.scans}", file=sys.stderr)
        return 1
    passes = f", {args.passes:,} distinct passes" if args.passes is not None else ""
    cpu = result["cpu_s"]
    print(f"{args.scans} scans{passes} in slices of {SLICE_PAGES * 100}, CPU {cpu:.2f} s")
    print(table(result, args.scans))
    return 0


if __name__ == "__main__":
    sys.exit(main())
