"""Run the benchmarks, write ``bench/results/latest.json`` (and a timestamped copy), print a
Markdown table.

    python -m bench.run --quick            # reduced sizes, about 3 minutes
    python -m bench.run --full             # the sizes the targets are stated for
    python -m bench.run --quick --only cpu,latency
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import broker_faults, failover, scenarios, webhooks
from bench._procs import REPO, Kafka
from bench._runs import Context, bridge_executable

RESULTS = REPO / "bench" / "results"
SCENARIOS: dict[str, Callable[[Context, scenarios.Sizes], dict[str, Any]]] = {
    "backfill": scenarios.backfill,
    "cpu": scenarios.cpu,
    "latency": scenarios.latency,
    "memory": scenarios.memory,
    "failover": failover.failover,
    "many_sources": failover.many_sources,
    "broker_faults": broker_faults.broker_faults,
    "webhook_latency": lambda ctx, sizes: webhooks.webhook_latency(
        ctx, sizes, plot_to=RESULTS / "webhook_latency.png"
    ),
}
# (scenario, figure, comparison, target)
# Run only when named with --only: broker_faults takes three Kafka nodes and most of an hour.
OPT_IN = frozenset({"broker_faults"})
TARGETS = [
    ("backfill", "efficiency", ">=", 0.85),
    ("backfill", "rate_limited_fraction", "<=", 0.01),
    ("cpu", "scans_per_cpu_second.bridge", ">=", 25_000),
    ("cpu", "ratio_vs_naive", ">=", 3.0),
    ("cpu", "ratio_vs_floor", ">=", 0.45),
    ("latency", "p99_s", "<=", 1.5),
    ("memory", "rss_growth_mb", "<=", 15.0),
    ("webhook_latency", "webhook.p99_s", "<=", 0.25),
    ("webhook_latency", "webhook_hostile.p99_s", "<=", 0.25),
    ("webhook_latency", "api_requests_per_s", "<=", 1.0),
    ("failover", "sigterm.max_gap_s", "<=", 5.0),
    ("failover", "sigkill.max_gap_s", "<=", 15.0),
    ("many_sources", "ratio_ten_vs_one", ">=", 0.85),
    *(
        ("broker_faults", f"{protocol}.{kind}.max_s", "<=", limit)
        for protocol in broker_faults.PROTOCOLS
        for kind, limit in broker_faults.TARGETS_S.items()
    ),
]


def _get(data: dict[str, Any], path: str) -> Any:
    """The figure at ``path``, or None where the run did not measure it."""
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for scenario, figure, op, target in TARGETS:
        if scenario not in results:
            continue
        value = _get(results[scenario], figure)
        if value is None:
            continue  # e.g. broker_faults run for one group protocol only
        met = value >= target if op == ">=" else value <= target
        out.append(
            {"scenario": scenario, "figure": figure, "value": value, "target": f"{op} {target}"}
            | {"met": bool(met)}
        )
    return out


def _many_runs(m: dict[str, Any]) -> str:
    """Each run's CPU behind the medians (results from before there were several: none)."""
    if "cpu_s_runs" not in m["one"]:
        return ""
    return (
        f" (medians of {len(m['one']['cpu_s_runs'])} interleaved runs; CPU s one source"
        f" {m['one']['cpu_s_runs']}, ten {m['ten']['cpu_s_runs']}; each repetition's ratio"
        f" {m['ratio_ten_vs_one_runs']})"
    )


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Mode: {results['mode']} ({results['duration_s']:.0f} s), bridge log level"
        f" {results['bridge_log_level']}",
        "",
        "| scenario | figure | value | target | met |",
        "|---|---|---|---|---|",
    ]
    for t in results["targets"]:
        mark = "yes" if t["met"] else "**no**"
        lines.append(f"| {t['scenario']} | {t['figure']} | {t['value']} | {t['target']} | {mark} |")
    if "backfill" in results:
        b = results["backfill"]
        lines += [
            "",
            f"Backfill, {b['scans']} scans (ideal {b['theoretical_min_s']:.1f} s):",
            "",
            "| program | efficiency | drain s | requests | 429s | rate_limited_fraction |",
            "|---|---|---|---|---|---|",
        ]
        programs = [
            ("bridge (default, budget 9)", b),
            ("bridge, budget 10", b["budget_10"]),
            ("bridge, lookback 0", b["lookback_0"]),
            ("naive", b["naive"]),
        ]
        if "baseline" in b:
            programs.append(("baseline (default)", b["baseline"]))
        for name, f in programs:
            lines.append(
                f"| {name} | {f['efficiency']} | {f['drain_s']} | {f['requests']} |"
                f" {f['rate_limited']} | {f['rate_limited_fraction']} |"
            )
    if "cpu" in results:
        c = results["cpu"]
        lines += [
            "",
            f"CPU, {c['scans']} scans, median of {c['repetitions']}:",
            "",
            "| program | scans / CPU s | fixed start-up CPU s | scans / CPU s net of start-up |",
            "|---|---|---|---|",
        ]
        for p in c["scans_per_cpu_second"]:
            lines.append(
                f"| {p} | {c['scans_per_cpu_second'][p]:,} | {c['fixed_cpu_s'][p]} |"
                f" {c['scans_per_cpu_second_net_of_startup'][p]:,} |"
            )
        lines.append(
            f"\nratio_vs_naive {c['ratio_vs_naive']}, ratio_vs_floor {c['ratio_vs_floor']}"
            f" (not targets: against the floor paced as the bridge is"
            f" {c['ratio_vs_paced_floor']}, against the contract's floor"
            f" {c.get('ratio_vs_contract_floor', '-')})"
        )
        many = c.get("many_passes")  # results written before it was measured have none
        if many is not None:
            lines.append(
                f"\nWith {many['passes']:,} passes in the backlog (not a target): "
                + ", ".join(
                    f"{p} {v:,} scans / CPU s ({many['ratio_vs_default_backlog'][p]} of its rate"
                    " on the default backlog)"
                    for p, v in many["scans_per_cpu_second"].items()
                )
            )
        if "baseline" in c:
            base = c["baseline"]
            lines.append(
                f"\nbaseline ({base['checkout']}): ratio_vs_naive {base['ratio_vs_naive']},"
                f" ratio_vs_floor {base['ratio_vs_floor']}; bridge / baseline"
                f" {base['bridge_vs_baseline']}"
            )
    if "latency" in results:
        la = results["latency"]
        for name, f in (("bridge", la), ("baseline", la.get("baseline"))):
            if f is None:
                continue
            lines.append(
                f"\nLatency ({name}): {f['created']} created, {f['received']} received,"
                f" {f['missing']} missing; p50 {f['p50_s']} s, p99 {f['p99_s']} s, max"
                f" {f['max_s']} s; fetched {f['bridge_pages_fetched']} pages,"
                f" {f['bridge_duplicates']} duplicates"
            )
    if "webhook_latency" in results:
        w = results["webhook_latency"]
        lines += [
            "",
            f"Webhook latency, {w['rate_per_s']} scans/s for {w['duration_s']:.0f} s:",
            "",
            "| path | measured | p50 s | p99 s | max s | API requests / s | missing |",
            "|---|---|---|---|---|---|---|",
        ]
        paths = (
            ("poll", "poll"),
            ("webhook", "webhook"),
            ("webhook_hostile", "webhook, hostile mix"),
        )
        rows = [(label, w.get(name)) for name, label in paths]
        if "baseline" in w:
            rows += [(f"baseline: {label}", w["baseline"].get(name)) for name, label in paths]
        for label, f in rows:
            if f is None:
                continue
            lines.append(
                f"| {label} | {f['measured']} | {f['p50_s']} | {f['p99_s']} | {f['max_s']} |"
                f" {f['api_requests_per_s']} | {f['missing']} |"
            )
        if "webhook_hostile" in w:
            h = w["webhook_hostile"]
            outcomes = "; ".join(
                f"{kind} " + ", ".join(f"{n} x {o}" for o, n in sorted(counts.items()))
                for kind, counts in sorted(h["outcomes"].items())
            )
            lines.append(
                f"\nUnder the hostile mix the bridge used {h['bridge_cpu_s']} CPU s, RSS"
                f" {h['rss_before_mb']} -> peak {h['rss_peak_mb']} MiB; the attackers got:"
                f" {outcomes}"
            )
    if "failover" in results:
        f = results["failover"]
        lines += [
            "",
            f"Failover, {f['rate_per_s']} scans/s, session timeout {f['session_timeout_s']} s,"
            f" {f['group_protocol']} group protocol, {f['rounds']} of each:",
            "",
            "| owner stopped by | median gap s | max gap s | gaps s |",
            "|---|---|---|---|",
        ]
        for how in ("sigterm", "sigkill"):
            g = f[how]
            lines.append(f"| {how} | {g['median_gap_s']} | {g['max_gap_s']} | {g['gaps_s']} |")
    if "broker_faults" in results:
        lines += ["", *broker_faults.markdown(results["broker_faults"])]
    if "many_sources" in results:
        m = results["many_sources"]
        lines += [
            "",
            f"Many sources, {m['one']['scans']} scans in one process:",
            "",
            "| sources | CPU s | scans / CPU s |",
            "|---|---|---|",
            *(
                f"| {m[k]['sources']} | {m[k]['cpu_s']} | {m[k]['scans_per_cpu_second']:,} |"
                for k in ("one", "ten")
            ),
            f"\nratio_ten_vs_one {m['ratio_ten_vs_one']}{_many_runs(m)}",
        ]
        if "baseline" in m:
            b = m["baseline"]
            lines.append(
                f"\nbaseline: one source {b['one']['scans_per_cpu_second']:,} scans / CPU s,"
                f" ten {b['ten']['scans_per_cpu_second']:,}; ratio_ten_vs_one"
                f" {b['ratio_ten_vs_one']}{_many_runs(b)}"
            )
    if "memory" in results:
        m = results["memory"]
        for name, f in (("bridge", m), ("baseline", m.get("baseline"))):
            if f is None:
                continue
            lines.append(
                f"\nMemory ({name}): RSS {f['rss_early_mb']} MiB after {f['early_scans']:,},"
                f" {f['rss_end_mb']} MiB after {f['scans']:,} (peak {f['rss_peak_mb']});"
                f" growth {f['rss_growth_mb']} MiB"
            )
    return "\n".join(lines)


def compile_sources(baseline: Path | None = None) -> None:
    """Compile the bridge's and the comparators' modules (and the baseline's bridge), as the
    image does at build time (Dockerfile): where PYTHONDONTWRITEBYTECODE is set and the
    package is installed editable, each process would otherwise compile them again at every
    start, and the start-up CPU measured would be the development tree's, not the deployed
    bridge's."""
    for folder in ("bridge", "bench"):
        compileall.compile_dir(REPO / folder, quiet=1)
    if baseline is not None:
        compileall.compile_dir(baseline / "bridge", quiet=1)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through every finally: children and Kafka stop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="the full sizes (default)")
    size.add_argument("--quick", action="store_true", help="reduced sizes, about 3 minutes")
    parser.add_argument(
        "--only",
        help="comma-separated scenarios: "
        + ",".join(SCENARIOS)
        + f" (all but {', '.join(sorted(OPT_IN))} when not given)",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING"],
        help="BRIDGE_LOG_LEVEL of the bridges measured (default WARNING)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="CHECKOUT",
        help="another checkout of the bridge, with its .venv (make install): the cpu scenario"
        " runs its passentry-bridge too, interleaved with the others, as 'baseline'",
    )
    parser.add_argument(
        "--group-protocol",
        choices=broker_faults.PROTOCOLS,
        help="the replicas' consumer group protocol (BRIDGE_GROUP_PROTOCOL) in failover and"
        " broker_faults (default: classic in failover, both in broker_faults)",
    )
    args = parser.parse_args()
    sizes = scenarios.QUICK if args.quick else scenarios.FULL
    chosen = args.only.split(",") if args.only else [s for s in SCENARIOS if s not in OPT_IN]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if args.baseline is not None and not bridge_executable(args.baseline).is_file():
        parser.error(f"--baseline: no {bridge_executable(args.baseline)} (run make install there)")

    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    stamp = datetime.now(UTC)
    log_dir = REPO / ".local" / "bench" / stamp.strftime("%Y%m%dT%H%M%SZ")  # git-ignored
    results: dict[str, Any] = {
        "mode": sizes.mode,
        "started_at": stamp.isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.run", *sys.argv[1:]]),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "bridge_log_level": args.log_level,
        "baseline": None if args.baseline is None else str(args.baseline),
        "logs": str(log_dir.relative_to(REPO)),
    }
    compile_sources(args.baseline)
    with Kafka() as kafka:
        ctx = Context(
            kafka,
            log_dir,
            log_level=args.log_level,
            baseline=args.baseline,
            group_protocol=args.group_protocol,
        )
        try:
            for name in chosen:
                results[name] = SCENARIOS[name](ctx, sizes)
        finally:
            ctx.http.close()
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["targets"] = check_targets(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2)
    (RESULTS / "latest.json").write_text(text)
    (RESULTS / f"{stamp.strftime('%Y%m%dT%H%M%SZ')}-{sizes.mode}.json").write_text(text)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
