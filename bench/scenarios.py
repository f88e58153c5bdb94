"""The four scenarios: backfill, cpu, latency, memory. Each returns its ``latest.json`` entry.

Sizes come from :class:`Sizes`; ``--quick`` scales them down. Each scenario starts its own
simulator and shares it between the programs and repetitions it runs (building a big
backlog takes a while); every run uses a fresh source id and topics, so each reads all.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench._procs import Child, Simulator, scrape_metrics
from bench._runs import (
    Context,
    RunResult,
    bridge_child,
    bridge_executable,
    fixed_cpu,
    fresh_names,
    run_bridge,
    run_comparator,
)

__all__ = [
    "FULL",
    "QUICK",
    "Arrivals",
    "Sizes",
    "backfill",
    "cpu",
    "latency",
    "memory",
    "quantile",
    "say",
    "wait_ready",
]

WEEK_S = 7 * 86_400


@dataclass(frozen=True)
class Sizes:
    mode: str
    backfill_scans: int
    cpu_scans: int
    cpu_repetitions: int
    latency_s: float
    memory_scans: int
    memory_early: int
    failover_rounds: int
    many_sources_scans: int
    broker_fault_rounds: int


FULL = Sizes("full", 30_000, 200_000, 3, 60.0, 1_000_000, 100_000, 10, 100_000, 5)
QUICK = Sizes("quick", 5_000, 30_000, 3, 20.0, 200_000, 20_000, 3, 30_000, 2)


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _backlog(scans: int, span_s: float, seed: int, *extra: str) -> tuple[list[str], str]:
    """Simulator flags for a backlog ending now, and the ``since`` just before its start."""
    anchor = datetime.now(UTC).replace(microsecond=0)
    args = ["--backlog", str(scans), "--backlog-span", str(span_s), "--anchor", _iso(anchor)]
    args += ["--seed", str(seed), *extra]
    return args, _iso(anchor - timedelta(seconds=span_s + 1))


def _gap() -> None:
    time.sleep(1.2)  # let the simulator's one-second sliding window empty between runs


def backfill(ctx: Context, sizes: Sizes) -> dict[str, Any]:
    n = sizes.backfill_scans
    # --jitter-ms adds uniform(0, jitter): 100 + U(0, 100) ms is 150 +- 50 ms.
    args, since = _backlog(n, 3600, 7, "--latency-ms", "100", "--jitter-ms", "100")
    ideal_s = n / (100 * 10)
    say(f"backfill: {n} scans, simulator 150+-50 ms, 10 req/s limit on")
    runs: dict[str, RunResult] = {}
    with Simulator(args, log_dir=ctx.log_dir, name="sim-backfill") as sim:
        variants: list[tuple[str, dict[str, str]]] = [
            ("bridge", {}),
            ("bridge_budget_10", {"PASSENTRY_REQUEST_BUDGET": "10"}),
            ("bridge_lookback_0", {"PASSENTRY_LOOKBACK_S": "0"}),
        ]
        if ctx.baseline is not None:
            variants.append(("baseline", {}))
        for name, env in variants:
            runs[name] = run_bridge(
                ctx, sim, name=name, expected=n, since=since, env=env,
                executable=_executable(ctx, name),
            )  # fmt: skip
            _report(runs[name])
            _gap()
        runs["naive"] = run_comparator(ctx, sim, program="naive", expected=n, since=since)
        _report(runs["naive"])

    def figures(r: RunResult) -> dict[str, Any]:
        return {
            "efficiency": round(ideal_s / r.drain_s, 4),
            "rate_limited_fraction": round(r.rate_limited / max(r.requests, 1), 4),
            "drain_s": round(r.drain_s, 2),
            "requests": r.requests,
            "rate_limited": r.rate_limited,
        }

    main = figures(runs["bridge"])
    return {
        "scans": n,
        "per_page": 100,
        "backlog_span_s": 3600,
        "simulator": "latency 100 ms + uniform(0, 100) ms; 10 req/s sliding window",
        "theoretical_min_s": ideal_s,
        **main,
        "naive": figures(runs["naive"]),
        "budget_10": figures(runs["bridge_budget_10"]),
        "lookback_0": figures(runs["bridge_lookback_0"]),
        **({"baseline": figures(runs["baseline"])} if "baseline" in runs else {}),
        "runs": [r.as_dict() for r in runs.values()],
    }


def _executable(ctx: Context, name: str) -> Path | None:
    """The baseline's ``passentry-bridge`` for the run named ``baseline``, else this one's."""
    return bridge_executable(ctx.baseline) if name == "baseline" and ctx.baseline else None


# The bridges' request budget in the cpu scenario: the configuration's maximum.
_CPU_BUDGET = 100
# The floor's variants in the cpu scenario, by name: paced as the bridges are, and with the
# contract's work besides (transactions of the bridge's default cycle, 10,000 scans).
_FLOOR_VARIANTS = {
    "floor_paced": ("--budget", str(_CPU_BUDGET)),
    "floor_contract": ("--budget", str(_CPU_BUDGET), "--contract", "10000"),
}


def cpu(ctx: Context, sizes: Sizes) -> dict[str, Any]:
    n, reps = sizes.cpu_scans, sizes.cpu_repetitions
    args, since = _backlog(n, WEEK_S, 11, "--no-rate-limit")
    future = _iso(datetime.now(UTC) + timedelta(minutes=5))
    # With --baseline, another checkout's bridge runs too, so the two compare in one run.
    bridges = {"bridge": bridge_executable()}
    if ctx.baseline is not None:
        bridges["baseline"] = bridge_executable(ctx.baseline)
    # The floor paced as the bridges are (their budget): not a target, a measure of what
    # the pacing alone costs. The contract's floor adds what else a bridge must do whatever
    # its code (transactions of a cycle's scans, a scan record's headers): not a target
    # either, it splits the bridge's CPU into the contract's and its own. Both take the
    # floor's start-up.
    programs = [*bridges, "naive", "floor", "floor_paced", "floor_contract"]
    say(f"cpu: {n} scans x {reps} repetitions of {', '.join(programs)}, no latency, no limit")
    runs: list[RunResult] = []
    with Simulator(args, log_dir=ctx.log_dir, name="sim-cpu") as sim:
        for rep in range(reps):
            # Interleaved, so a noisy neighbour hits all programs alike.
            for program in programs:
                if program in bridges:
                    env = {"PASSENTRY_REQUEST_BUDGET": str(_CPU_BUDGET)}
                    r = run_bridge(
                        ctx,
                        sim,
                        name=program,
                        expected=n,
                        since=since,
                        env=env,
                        executable=bridges[program],
                    )
                elif program in _FLOOR_VARIANTS:
                    r = run_comparator(
                        ctx, sim, program="floor", name=program, expected=n, since=since,
                        extra=_FLOOR_VARIANTS[program],
                    )  # fmt: skip
                else:
                    r = run_comparator(ctx, sim, program=program, expected=n, since=since)
                r.extra["repetition"] = rep + 1
                runs.append(r)
                _report(r)
        fixed = {
            p: round(fixed_cpu(ctx, sim, p, future, bridges.get(p)), 3)
            for p in programs
            if p not in _FLOOR_VARIANTS
        }
        fixed |= dict.fromkeys(_FLOOR_VARIANTS, fixed["floor"])
    # The same backlog with as many passes as scans (an event's gates, where each holder
    # scans about once): most scans bring a pass the bridge has not seen, which no cache
    # saves. A diagnostic beside the targets.
    many_args, many_since = _backlog(n, WEEK_S, 11, "--no-rate-limit", "--passes", str(n))
    many: list[RunResult] = []
    say(f"cpu: the same with {n} passes, {reps} repetitions of {', '.join(bridges)}")
    with Simulator(many_args, log_dir=ctx.log_dir, name="sim-cpu-passes") as sim:
        for rep in range(reps):
            for program, executable in bridges.items():
                r = run_bridge(
                    ctx, sim, name=f"{program}_many_passes", expected=n, since=many_since,
                    env={"PASSENTRY_REQUEST_BUDGET": str(_CPU_BUDGET)}, executable=executable,
                )  # fmt: skip
                r.extra["repetition"] = rep + 1
                many.append(r)
                _report(r)
    per_cpu: dict[str, float] = {}
    net: dict[str, float] = {}
    for program in programs:
        mine = [r for r in runs if r.program == program]
        per_cpu[program] = round(statistics.median(r.scans_per_cpu_s for r in mine))
        cpu_s = statistics.median(r.cpu_s for r in mine)
        net[program] = round(n / max(cpu_s - fixed[program], 1e-3))
    out: dict[str, Any] = {
        "scans": n,
        "repetitions": reps,
        "scans_per_cpu_second": per_cpu,
        "ratio_vs_naive": round(per_cpu["bridge"] / per_cpu["naive"], 2),
        "ratio_vs_floor": round(per_cpu["bridge"] / per_cpu["floor"], 2),
        "ratio_vs_paced_floor": round(per_cpu["bridge"] / per_cpu["floor_paced"], 2),
        "ratio_vs_contract_floor": round(per_cpu["bridge"] / per_cpu["floor_contract"], 2),
        "fixed_cpu_s": fixed,
        "scans_per_cpu_second_net_of_startup": net,
    }
    many_per_cpu = {
        p: round(
            statistics.median(r.scans_per_cpu_s for r in many if r.program == f"{p}_many_passes")
        )
        for p in bridges
    }
    out["many_passes"] = {
        "passes": n,
        "scans_per_cpu_second": many_per_cpu,
        "ratio_vs_default_backlog": {p: round(many_per_cpu[p] / per_cpu[p], 2) for p in bridges},
    }
    if ctx.baseline is not None:
        out["baseline"] = {
            "checkout": str(ctx.baseline),
            "ratio_vs_naive": round(per_cpu["baseline"] / per_cpu["naive"], 2),
            "ratio_vs_floor": round(per_cpu["baseline"] / per_cpu["floor"], 2),
            "bridge_vs_baseline": round(per_cpu["bridge"] / per_cpu["baseline"], 2),
        }
    out["runs"] = [r.as_dict() for r in runs + many]
    return out


class Arrivals:
    """A read_committed consumer in this process: arrival wall time minus record time."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.delays: list[tuple[int, float]] = []  # (scan creation time ms, seconds late)
        self.arrived: list[float] = []  # wall time each record arrived
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        self._consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )
        self._thread = threading.Thread(target=self._run, name="arrivals", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, 0.05):
                if msg.error() is None:
                    arrived = time.time()
                    # The scan's creation time (the Kafka timestamp is when it was published).
                    created = int(dict(msg.headers() or ())["scan-created-ms"])
                    self.delays.append((created, arrived - created / 1000))
                    self.arrived.append(arrived)

    def __enter__(self) -> Arrivals:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def latency(ctx: Context, sizes: Sizes) -> dict[str, Any]:
    """The bridge's latency, and with ``--baseline`` the baseline's, one after the other."""
    result = _latency(ctx, sizes)
    if ctx.baseline is not None:
        result["baseline"] = _latency(ctx, sizes, name="baseline")
    return result


def _latency(ctx: Context, sizes: Sizes, name: str = "bridge") -> dict[str, Any]:
    duration = sizes.latency_s
    names = fresh_names("latency")
    topic = names["BRIDGE_SCANS_TOPIC"]
    ctx.kafka.create_topics([topic])
    say(f"latency: 200 scans/s for {duration:.0f}s, poll interval 1 s, {name}")
    poll = {"PASSENTRY_POLL_INTERVAL_MIN_S": "1", "PASSENTRY_POLL_INTERVAL_MAX_S": "1"}
    sim_args = ["--rate", "200", "--duration", str(duration), "--seed", "5"]
    with (
        Arrivals(ctx.kafka.bootstrap, topic, 6) as arrivals,
        Simulator(sim_args, log_dir=ctx.log_dir, name="sim-latency") as sim,
    ):
        traffic_end = time.monotonic() + duration
        child, port = bridge_child(
            ctx, sim, f"{name}-latency", {**names, **poll}, [], _executable(ctx, name)
        )
        with child:
            ready_ms = wait_ready(ctx, child, port)
            time.sleep(max(0.0, traffic_end - time.monotonic()) + 0.5)
            created = sim.stats()["scans"]["total"]
            deadline = time.monotonic() + 30
            while len(arrivals.delays) < created and time.monotonic() < deadline:
                if not child.alive():
                    raise RuntimeError(f"the bridge exited early: see {child.log_path}")
                time.sleep(0.2)
            metrics = scrape_metrics(port, ctx.http)
            cpu_s = child.cpu()
    measured = [d for stamp, d in arrivals.delays if stamp >= ready_ms]
    return {
        "rate_per_s": 200,
        "duration_s": duration,
        "created": created,
        "received": len(arrivals.delays),
        "missing": max(0, created - len(arrivals.delays)),
        "measured": len(measured),
        "warmup_excluded": len(arrivals.delays) - len(measured),
        "p50_s": round(quantile(measured, 0.50), 3),
        "p99_s": round(quantile(measured, 0.99), 3),
        "max_s": round(max(measured, default=float("nan")), 3),
        "bridge_pages_fetched": int(metrics.get("passentry_bridge_pages_fetched_total", 0)),
        "bridge_duplicates": int(metrics.get("passentry_bridge_scans_duplicate_total", 0)),
        "bridge_cpu_s": round(cpu_s, 2),
    }


def wait_ready(ctx: Context, child: Child, port: int) -> int:
    """Wall time (ms) of the bridge's first finished poll cycle: scans created before it
    are the start-up's backlog, not steady-state latency."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"the bridge exited early: see {child.log_path}")
        try:
            if scrape_metrics(port, ctx.http).get("passentry_bridge_poll_cycles_total", 0) >= 1:
                return int(time.time() * 1000)
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.05)
    raise TimeoutError(f"the bridge finished no poll cycle in 120s: see {child.log_path}")


def memory(ctx: Context, sizes: Sizes) -> dict[str, Any]:
    n, early = sizes.memory_scans, sizes.memory_early
    args, since = _backlog(n, WEEK_S, 13, "--no-rate-limit")
    say(f"memory: {n} scans (building the simulator's backlog first)")
    with Simulator(args, log_dir=ctx.log_dir, name="sim-memory") as sim:
        say("memory: simulator ready, running the bridge")
        result = _memory(ctx, sim, n, early, since, "bridge")
        if ctx.baseline is not None:
            result["baseline"] = _memory(ctx, sim, n, early, since, "baseline")
    return result


def _memory(
    ctx: Context, sim: Simulator, n: int, early: int, since: str, name: str
) -> dict[str, Any]:
    samples: dict[str, float] = {}
    peak = [0.0]

    def progress(child: Child, published: int) -> None:
        rss = child.rss()
        peak[0] = max(peak[0], rss)
        if published >= early and "early" not in samples:
            samples["early"] = rss
            samples["early_at"] = published
        if published >= n:
            samples["end"] = rss

    env = {"PASSENTRY_REQUEST_BUDGET": "100"}
    r = run_bridge(
        ctx, sim, name=f"{name}-memory", expected=n, since=since, env=env,
        on_progress=progress, executable=_executable(ctx, name),
    )  # fmt: skip
    _report(r)
    return {
        "scans": n,
        "early_scans": early,
        "rss_early_mb": round(samples["early"], 1),
        "rss_end_mb": round(samples["end"], 1),
        "rss_peak_mb": round(peak[0], 1),
        "rss_growth_mb": round(samples["end"] - samples["early"], 1),
        "run": r.as_dict(),
    }


def _report(r: RunResult) -> None:
    say(
        f"  {r.program}: {r.scans} scans, {r.cpu_s:.2f} CPU s ({r.scans_per_cpu_s:,.0f}/CPU s),"
        f" drained in {r.drain_s:.1f}s, {r.requests} requests, {r.rate_limited} x 429"
    )
