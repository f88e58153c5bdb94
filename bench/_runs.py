"""Run one program under test (the bridge, naive or floor) against a running simulator.

The bridge runs as ``passentry-bridge run`` (not ``--once``: see bench/README.md) and is
done when its ``scans_published_total`` on ``/metrics`` reaches the expected count; its CPU
is read from ``/proc`` at that moment, then it is stopped. The comparators stop by
themselves at the end of the backlog; their CPU comes from ``os.wait4``. Drain time runs
from the program's first API request (seen in the simulator's ``/_sim/stats``) to done.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench._procs import Child, Kafka, Simulator, free_port, scrape_metrics
from passentry_simulator.app import MAX_PER_PAGE

__all__ = [
    "Context",
    "ProbePace",
    "RunResult",
    "bridge_executable",
    "fixed_cpu",
    "fresh_names",
    "run_bridge",
    "run_comparator",
    "turn_order",
]

PUBLISHED = "passentry_bridge_scans_published_total"


@dataclass
class Context:
    kafka: Kafka
    log_dir: Path
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5))
    # BRIDGE_LOG_LEVEL of every bridge the scenarios run.
    log_level: str = "WARNING"
    # Another checkout's ``passentry-bridge`` (``--baseline``), measured beside this one.
    baseline: Path | None = None
    # ``--group-protocol``: the consumer group protocol of the replicas in ``failover`` and
    # ``broker_faults``; None: classic in ``failover``, both in ``broker_faults``.
    group_protocol: str | None = None


def bridge_executable(checkout: Path | None = None) -> Path:
    """The ``passentry-bridge`` of ``checkout``'s virtualenv, or of this one."""
    if checkout is None:
        return Path(sys.executable).parent / "passentry-bridge"
    return checkout / ".venv" / "bin" / "passentry-bridge"


@dataclass
class RunResult:
    program: str
    scans: int
    cpu_s: float
    drain_s: float
    requests: int
    rate_limited: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def scans_per_cpu_s(self) -> float:
        return self.scans / self.cpu_s if self.cpu_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "program": self.program,
            "scans": self.scans,
            "cpu_s": round(self.cpu_s, 3),
            "drain_s": round(self.drain_s, 3),
            "scans_per_cpu_second": round(self.scans_per_cpu_s),
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            **self.extra,
        }


def fresh_names(prefix: str) -> dict[str, str]:
    """A fresh source id and topics, so each run starts with no checkpoint."""
    tag = f"{prefix}-{uuid.uuid4().hex[:8]}"
    return {
        "BRIDGE_SOURCE_ID": tag,
        "BRIDGE_SCANS_TOPIC": f"bench.{tag}.scans",
        "BRIDGE_DLQ_TOPIC": f"bench.{tag}.dlq",
        "BRIDGE_STATE_TOPIC": f"bench.{tag}.state",
    }


def bridge_child(
    ctx: Context, sim: Simulator, name: str, env: dict[str, str], args: list[str],
    executable: Path | None = None,
) -> tuple[Child, int]:  # fmt: skip
    port = free_port()
    full_env = {
        "PASSENTRY_API_URL": sim.url,
        "PASSENTRY_API_TOKEN": "sim-token",
        "KAFKA_BOOTSTRAP_SERVERS": ctx.kafka.bootstrap,
        "BRIDGE_HTTP_PORT": str(port),
        "BRIDGE_LOG_LEVEL": ctx.log_level,
        **env,
    }
    if executable is not None:
        # Another checkout's bridge imports its own code: a PYTHONPATH naming this checkout
        # (the children start in it) would measure this bridge twice.
        full_env["PYTHONPATH"] = ""
    argv = [str(executable or bridge_executable()), "run", *args]
    return Child(name, argv, env=full_env, log_dir=ctx.log_dir), port


def _wait_first_request(sim: Simulator, child: Child, before: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sim.requests()[0] > before:
            return time.monotonic()
        if not child.alive():
            raise RuntimeError(f"{child.name} exited before its first request: {child.log_path}")
        time.sleep(0.02)
    raise TimeoutError(f"{child.name} sent no request in {timeout:.0f}s: {child.log_path}")


def run_bridge(
    ctx: Context,
    sim: Simulator,
    *,
    name: str,
    expected: int,
    since: str,
    env: dict[str, str] | None = None,
    timeout: float = 900.0,
    on_progress: Callable[[Child, int], None] | None = None,
    executable: Path | None = None,
) -> RunResult:
    """Run the bridge (``executable``, by default this checkout's) until it has published
    ``expected`` scans; then stop it."""
    env = {**fresh_names(name), **(env or {})}
    base_requests, base_429 = sim.requests()
    child, port = bridge_child(ctx, sim, name, env, ["--since", since], executable)
    metrics: dict[str, float] = {}
    with child:
        first = _wait_first_request(sim, child, base_requests, 120)
        deadline = time.monotonic() + timeout
        pace = ProbePace(sim, base_requests, expected)
        while True:
            if not child.alive():
                raise RuntimeError(f"{name} exited early: see {child.log_path}")
            try:
                metrics = scrape_metrics(port, ctx.http)
            except httpx.HTTPError:
                metrics = {}
            published = int(metrics.get(PUBLISHED, 0))
            if on_progress is not None:
                on_progress(child, published)
            if published >= expected:
                cpu, done = child.cpu(), time.monotonic()
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: {published}/{expected} after {timeout:.0f}s")
            pace.wait()
        requests, limited = sim.requests()
    return RunResult(
        name,
        published,
        cpu,
        done - first,
        requests - base_requests,
        limited - base_429,
        {
            "pages_fetched": int(metrics.get("passentry_bridge_pages_fetched_total", 0)),
            "duplicates": int(metrics.get("passentry_bridge_scans_duplicate_total", 0)),
        },
    )


class ProbePace:
    """How long to wait before asking a bridge's ``/metrics`` again. A scrape costs the
    bridge CPU (it renders every series: 1.3-2 ms for one source, 7-12 for ten), which
    the comparators never pay: one every 0.1 s throughout was ~3 % of a cpu run. Asking the
    simulator costs the bridge nothing: until it has served the pages the backlog needs
    (counted from ``base_requests``), look twice a second; from then on, every 0.1 s, so
    that the moment the last scan is published is as precise as before."""

    def __init__(self, sim: Simulator, base_requests: int, expected: int) -> None:
        self._sim = sim
        self._base = base_requests
        self._pages = -(-expected // MAX_PER_PAGE)
        self._fetched = False

    def wait(self) -> None:
        self._fetched = self._fetched or self._sim.requests()[0] - self._base >= self._pages
        time.sleep(0.1 if self._fetched else 0.5)


T = TypeVar("T")


def turn_order(items: Sequence[T], rep: int) -> list[T]:
    """The order of repetition ``rep``: each repetition starts with the next item, so that
    no program (or size) always runs first, after the simulator starts or after another's
    run. With a fixed order, ``bench.ab``'s A/A runs put ``head`` at 1.068 and 1.111 of
    ``base``; in turns, at 1.018 (bench/README.md, "Requests in bursts")."""
    turn = rep % len(items)
    return [*items[turn:], *items[:turn]]


def run_comparator(
    ctx: Context,
    sim: Simulator,
    *,
    program: str,
    expected: int,
    since: str,
    timeout: float = 900.0,
    name: str | None = None,
    extra: tuple[str, ...] = (),
) -> RunResult:
    """Run ``bench.naive`` or ``bench.floor`` (with ``extra`` arguments, reported as
    ``name``) to the end of the backlog."""
    name = name or program
    topic = f"bench.{name}-{uuid.uuid4().hex[:8]}"
    ctx.kafka.create_topics([topic])
    base_requests, base_429 = sim.requests()
    argv = [sys.executable, "-m", f"bench.{program}", "--api-url", sim.url]
    argv += ["--bootstrap", ctx.kafka.bootstrap, "--topic", topic, "--since", since, *extra]
    with Child(name, argv, log_dir=ctx.log_dir, capture_stdout=True) as child:
        first = _wait_first_request(sim, child, base_requests, 60)
        result = child.wait(timeout)
        done = time.monotonic()
        if result.code != 0:
            raise RuntimeError(f"{name} exited {result.code}: see {child.log_path}")
        summary = json.loads(child.read_line(5))
        requests, limited = sim.requests()
    if summary["published"] != expected:
        raise RuntimeError(f"{name} published {summary['published']}, expected {expected}")
    return RunResult(
        name,
        summary["published"],
        result.cpu_s,
        done - first,
        requests - base_requests,
        limited - base_429,
        {"pages_fetched": summary["pages"]},
    )


def fixed_cpu(
    ctx: Context, sim: Simulator, program: str, since: str, executable: Path | None = None
) -> float:
    """CPU seconds of a run that finds nothing to do: start-up, connect, one page, exit.
    ``program`` is ``naive``, ``floor``, or a bridge (``executable``)."""
    if program not in ("naive", "floor"):
        args = ["--once", "--since", since]
        names = fresh_names("empty")
        child, _ = bridge_child(ctx, sim, f"{program}-empty", names, args, executable)
    else:
        topic = f"bench.{program}-{uuid.uuid4().hex[:8]}"
        ctx.kafka.create_topics([topic])
        child = Child(
            f"{program}-empty",
            [sys.executable, "-m", f"bench.{program}", "--api-url", sim.url, "--bootstrap",
             ctx.kafka.bootstrap, "--topic", topic, "--since", since],
            log_dir=ctx.log_dir,
        )  # fmt: skip
    with child:
        result = child.wait(120)
    if result.code != 0:
        raise RuntimeError(f"{child.name} exited {result.code}: see {child.log_path}")
    return result.cpu_s
