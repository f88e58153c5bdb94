"""The bridge's CPU per scan, this worktree against a base revision, in one run.

    python -m bench.ab --base main                     # head against main
    python -m bench.ab --base HEAD~3 --repetitions 7
    python -m bench.ab --base main --traced                 # and tracing on, into a real Jaeger
    python -m bench.ab --base main --variant big:KAFKA_LINGER_MS=50
    python -m bench.ab --base main --passes 100000          # nearly every scan a new pass

The ``cpu`` scenario's backlog (``--scans``, 30,000 over a week, no latency, no rate limit;
``--passes``, how many distinct passes its scans are of), read by each variant in turn,
interleaved repetition by repetition, each repetition starting with the next variant, so that
a noisy neighbour on a shared machine hits all of them alike: ``base`` is the bridge package of
``--base`` (``git archive`` into .local/bench/, put first on the child's PYTHONPATH),
``head`` the worktree's, and each ``--variant NAME:VAR=VALUE,...`` the worktree's with
those environment variables. ``--traced`` starts Jaeger (scripts/build-jaeger's binary, its
OTLP receiver on a free port) and adds two variants exporting to it: ``traced`` records every
span, ``traced-0.1`` a tenth of the traces (the chart's default). What matters is the ratio
to ``base`` in the same run; the absolute figures move with the machine's load. Writes
bench/results/ab-latest.json.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._procs import REPO, Kafka, Simulator
from bench._runs import Context, run_bridge, turn_order
from bench.run import compile_sources
from bench.scenarios import WEEK_S, _backlog, _gap, say

RESULTS = REPO / "bench" / "results"


@dataclass(frozen=True)
class Variant:
    name: str
    env: dict[str, str]


def base_tree(rev: str) -> str:
    """The bridge package (and the schemas it links to) of ``rev``, unpacked once, with its
    native modules built in place."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short=12", rev], cwd=REPO, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    target = REPO / ".local" / "bench" / f"base-{sha}"
    if not (target / "bridge").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", sha, "bridge", "schemas", "pyproject.toml", "README.md", "LICENSE"],
            cwd=REPO, capture_output=True, check=True,
        ).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
        if any((target / "bridge").rglob("*.c")):
            build = [sys.executable, "-c", "from setuptools import setup; setup()"]
            subprocess.run([*build, "-q", "build_ext", "--inplace"], cwd=target, check=True)
    return str(target)


def parse_variant(text: str) -> Variant:
    name, _, assignments = text.partition(":")
    env = dict(item.split("=", 1) for item in assignments.split(",") if item)
    if not name or not env:
        raise argparse.ArgumentTypeError(f"expected NAME:VAR=VALUE[,VAR=VALUE], got {text!r}")
    return Variant(name, env)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


@contextmanager
def jaeger() -> Iterator[str]:
    """A Jaeger to export to, as the tracing test starts it: its OTLP/HTTP URL."""
    from tests.integration.jaeger_support import build_jaeger, start_jaeger

    with tempfile.TemporaryDirectory(prefix="bench-jaeger-") as workdir:
        proc, found = start_jaeger(build_jaeger(), Path(workdir))
        try:
            yield found.otlp_url
        finally:
            proc.terminate()
            proc.wait(20)


def traced_variants(otlp_url: str) -> list[Variant]:
    exporting = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_url}
    return [
        Variant("traced", {**exporting, "OTEL_TRACES_SAMPLER": "always_on"}),
        Variant("traced-0.1", {**exporting, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                               "OTEL_TRACES_SAMPLER_ARG": "0.1"}),
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the revision to compare with")
    parser.add_argument("--scans", type=int, default=30_000)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--variant", type=parse_variant, action="append", default=[])
    parser.add_argument(
        "--passes",
        type=positive_int,
        help="distinct passes in the backlog (the simulator's default: 1000)",
    )
    parser.add_argument(
        "--traced", action="store_true", help="add tracing-on variants, exporting to Jaeger"
    )
    args = parser.parse_args()
    # A SIGTERM leaves through the context managers, which stop the children.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    base = base_tree(args.base)
    # Both compiled: where PYTHONDONTWRITEBYTECODE is set, the unpacked base would otherwise
    # compile its modules at every start (about 0.04 CPU s here, 3% of a 30,000-scan run).
    compile_sources(Path(base))
    variants = [
        Variant("base", {"PYTHONPATH": base}),
        Variant("head", {}),
        *args.variant,
    ]
    if not args.traced:
        return compare(args, variants)
    with jaeger() as otlp_url:
        return compare(args, [*variants, *traced_variants(otlp_url)])


def compare(args: argparse.Namespace, variants: list[Variant]) -> int:
    n = args.scans
    extra = ("--passes", str(args.passes)) if args.passes is not None else ()
    backlog, since = _backlog(n, WEEK_S, 11, "--no-rate-limit", *extra)
    log_dir = REPO / ".local" / "bench" / time.strftime("ab-%Y%m%dT%H%M%SZ", time.gmtime())
    per_cpu: dict[str, list[float]] = {v.name: [] for v in variants}
    with Kafka() as kafka:
        ctx = Context(kafka, log_dir)
        try:
            with Simulator(backlog, log_dir=log_dir, name="sim-ab") as sim:
                for rep in range(args.repetitions):
                    for v in turn_order(variants, rep):
                        env = {"PASSENTRY_REQUEST_BUDGET": "100", **v.env}
                        r = run_bridge(ctx, sim, name=v.name, expected=n, since=since, env=env)
                        per_cpu[v.name].append(r.scans_per_cpu_s)
                        say(f"{rep + 1}/{args.repetitions} {v.name}: {r.scans_per_cpu_s:,.0f}"
                            " scans/CPU s")  # fmt: skip
                        _gap()
        finally:
            ctx.http.close()
    base = statistics.median(per_cpu["base"])
    out: dict[str, Any] = {"base": args.base, "scans": n, "repetitions": args.repetitions}
    out["passes"] = args.passes
    passes = f", {args.passes:,} distinct passes" if args.passes is not None else ""
    print(f"\nbridge scans per CPU second, median of {args.repetitions} (base: {args.base}"
          f"{passes})\n")  # fmt: skip
    print("| variant | median | min | max | ratio to base |")
    print("|---|---|---|---|---|")
    for v in variants:
        values = per_cpu[v.name]
        median = statistics.median(values)
        out[v.name] = {"runs": [round(x) for x in values], "median": round(median),
                       "ratio_to_base": round(median / base, 3)}  # fmt: skip
        print(f"| {v.name} | {median:,.0f} | {min(values):,.0f} | {max(values):,.0f} |"
              f" {median / base:.3f} |")  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ab-latest.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
