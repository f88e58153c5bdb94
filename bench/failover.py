"""Two scenarios of the consumer-group deployment.

- ``failover``: two replicas share one source under live traffic; the owner is stopped
  (SIGTERM) or killed (SIGKILL) and the gap is measured at a read_committed consumer, from
  the last record before to the first after. The stopped replica comes back each time, as
  a pod would, so there are always two.
- ``many_sources``: scans per CPU-second of one process running ten sources (one reader
  each) against the same process running one source over the same backlog.
"""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench._procs import Child, Simulator, scrape_metrics
from bench._runs import (
    PUBLISHED,
    Context,
    ProbePace,
    bridge_child,
    bridge_executable,
    fresh_names,
    turn_order,
)
from bench.scenarios import Arrivals, Sizes, say

__all__ = ["failover", "many_sources", "ten_against_one"]

RATE = 50
SESSION_TIMEOUT_MS = 10_000
ACTIVE = "passentry_bridge_source_active"


def failover(ctx: Context, sizes: Sizes) -> dict[str, Any]:
    rounds = sizes.failover_rounds
    names = fresh_names("failover")
    topic = names["BRIDGE_SCANS_TOPIC"]
    source = names["BRIDGE_SOURCE_ID"]
    ctx.kafka.create_topics([topic])
    env = {
        **names,
        "BRIDGE_GROUP_ID": f"{source}-group",
        "BRIDGE_COORDINATION_TOPIC": f"bench.{source}.coordination",
        "BRIDGE_GROUP_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "BRIDGE_GROUP_PROTOCOL": ctx.group_protocol or "classic",
        "PASSENTRY_POLL_INTERVAL_MIN_S": "0.2",
        "PASSENTRY_POLL_INTERVAL_MAX_S": "0.2",
    }
    duration = rounds * 2 * 25 + 60
    sim_args = ["--rate", str(RATE), "--duration", str(duration), "--seed", "7"]
    say(f"failover: {RATE} scans/s, {rounds} SIGTERMs and {rounds} SIGKILLs of the owner")
    gaps: dict[str, list[float]] = {"sigterm": [], "sigkill": []}
    with (
        Arrivals(ctx.kafka.bootstrap, topic, 6) as arrivals,
        Simulator(sim_args, log_dir=ctx.log_dir, name="sim-failover") as sim,
    ):
        replicas = [bridge_child(ctx, sim, f"failover-{n}", env, []) for n in range(2)]
        for child, _ in replicas:
            child.start()
        try:
            _wait(lambda: _owner(ctx, replicas), 120, "a first owner")
            _wait(lambda: len(arrivals.delays) > RATE, 60, "records flowing")
            for n in range(rounds * 2):
                how = "sigterm" if n % 2 == 0 else "sigkill"
                at: int = _wait(lambda: _owner(ctx, replicas), 60, "an owner")
                child = replicas[at][0]
                before = len(arrivals.arrived)
                os.killpg(child.pid, signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
                child.wait(60)
                # The next record after the owner went, from the other replica.
                _wait(lambda b=before: len(arrivals.arrived) > b + RATE, 60, "the takeover")
                gaps[how].append(_largest_gap(arrivals.arrived[max(0, before - RATE) :]))
                child.stop()
                back, port = replicas[at] = bridge_child(ctx, sim, f"failover-{n}-back", env, [])
                back.start()
                _wait(lambda p=port: _ready(ctx, p), 60, "the replacement replica")
        finally:
            for child, _ in replicas:
                child.stop()
    return {
        "rate_per_s": RATE,
        "group_protocol": env["BRIDGE_GROUP_PROTOCOL"],
        "session_timeout_s": SESSION_TIMEOUT_MS / 1000,
        "rounds": rounds,
        **{
            how: {
                "median_gap_s": round(statistics.median(values), 2),
                "max_gap_s": round(max(values), 2),
                "gaps_s": [round(v, 2) for v in values],
            }
            for how, values in gaps.items()
        },
    }


def many_sources(ctx: Context, sizes: Sizes) -> dict[str, Any]:
    n = sizes.many_sources_scans
    readers = 10
    reps = sizes.cpu_repetitions
    sim_args = [
        "--backlog",
        str(n),
        "--backlog-span",
        "86400",
        "--readers",
        str(readers),
        "--seed",
        "11",
        "--no-rate-limit",
    ]
    programs = ["bridge"] if ctx.baseline is None else ["bridge", "baseline"]
    say(
        f"many_sources: {n} scans, one source against ten (one reader each) in one process,"
        f" {reps} times each, interleaved"
    )
    cpu: dict[str, dict[str, list[float]]] = {p: {"one": [], "ten": []} for p in programs}
    with Simulator(sim_args, log_dir=ctx.log_dir, name="sim-many") as sim:
        # In turns, so that a noisy spell on this shared machine falls on each program, and
        # on one source and ten, alike.
        for rep in range(reps):
            for program in turn_order(programs, rep):
                for label in turn_order(("one", "ten"), rep):
                    run = _one_run(ctx, sim, n, readers, program, label, rep)
                    cpu[program][label].append(run)
    results = ten_against_one(cpu["bridge"], n, readers)
    if ctx.baseline is not None:
        results["baseline"] = ten_against_one(cpu["baseline"], n, readers)
    return results


def _one_run(
    ctx: Context, sim: Simulator, n: int, readers: int, program: str, label: str, rep: int
) -> float:
    """CPU seconds ``program`` (``bridge``, or the ``baseline`` checkout's) takes to publish
    the whole backlog with one source (``label`` ``one``) or ten, one reader each."""
    executable = bridge_executable(ctx.baseline) if program == "baseline" else None
    # The simulator names its readers gate-001, gate-002, ...
    reader_ids = [f"gate-{i:03d}" for i in range(1, readers + 1)]
    tag = f"{os.getpid()}-{time.time_ns()}"
    names = fresh_names(f"many-{label}")
    args = ["--since", "2000-01-01T00:00:00Z"]
    with tempfile.TemporaryDirectory() as tmp:
        if label == "ten":
            ten = Path(tmp) / "ten.yaml"
            ten.write_text(
                yaml.safe_dump(
                    {
                        "sources": [
                            {"id": f"many-{i}-{tag}", "filters": {"reader_id": r}}
                            for i, r in enumerate(reader_ids)
                        ]
                    }
                )
            )
            del names["BRIDGE_SOURCE_ID"]
            args += ["--config", str(ten)]
        env = {**names, "BRIDGE_GROUP_ID": "", "PASSENTRY_REQUEST_BUDGET": "100"}
        name = f"{program}-many-{label}-{rep}"
        pace = ProbePace(sim, sim.requests()[0], n)
        child, port = bridge_child(ctx, sim, name, env, args, executable)
        with child:
            return _cpu_to(ctx, child, port, n, pace)


def ten_against_one(cpu: dict[str, list[float]], n: int, readers: int) -> dict[str, Any]:
    """Each of one source and ten at its median CPU over the repetitions, and the ratio of
    the medians; each run's CPU and each repetition's own ratio beside them."""
    results: dict[str, Any] = {}
    for label, runs in cpu.items():
        median = statistics.median(runs)
        results[label] = {
            "sources": 1 if label == "one" else readers,
            "scans": n,
            "cpu_s": round(median, 2),
            "cpu_s_runs": [round(c, 2) for c in runs],
            "scans_per_cpu_second": round(n / median),
        }
    results["ratio_ten_vs_one"] = round(
        results["ten"]["scans_per_cpu_second"] / results["one"]["scans_per_cpu_second"], 3
    )
    results["ratio_ten_vs_one_runs"] = [
        round(one / ten, 3) for one, ten in zip(cpu["one"], cpu["ten"], strict=True)
    ]
    return results


def _cpu_to(ctx: Context, child: Child, port: int, expected: int, pace: ProbePace) -> float:
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited early: see {child.log_path}")
        try:
            published = sum(
                v for k, v in scrape_metrics(port, ctx.http).items() if k.startswith(PUBLISHED)
            )
        except Exception:  # not listening yet
            published = 0
        if published >= expected:
            return child.cpu()
        pace.wait()
    raise TimeoutError(f"{child.name} did not publish {expected} scans")


def _owner(ctx: Context, replicas: list[tuple[Child, int]]) -> int | None:
    for at, (child, port) in enumerate(replicas):
        if not child.alive():
            continue
        try:
            metrics = scrape_metrics(port, ctx.http)
        except Exception:  # not listening yet
            continue
        # One source: the sample, summed over its one label, is 1 on the owner.
        if metrics.get(ACTIVE) == 1:
            return at
    return None


def _ready(ctx: Context, port: int) -> bool:
    try:
        return ctx.http.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    except Exception:  # not listening yet
        return False


def _largest_gap(arrivals: list[float]) -> float:
    ordered = sorted(arrivals)
    return max((b - a for a, b in itertools.pairwise(ordered)), default=0.0)


def _wait(condition: Any, timeout: float, what: str) -> Any:
    """The first value of ``condition()`` that is neither None nor False."""
    deadline = time.monotonic() + timeout
    while (value := condition()) is None or value is False:
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value
