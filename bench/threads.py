"""Where the bridge's CPU goes, by thread: the cpu scenario's backlog, one real run.

``bench.stages`` times the publishing thread's stages in-process; this measures the whole
``passentry-bridge run`` as the cpu scenario runs it (no-limit simulator, budget 100 req/s)
and splits its CPU by thread: the page fetchers, the publishing thread, librdkafka's threads,
the main thread (start-up), the status server. Each thread's user and system time come
from ``/proc/<pid>/task/<tid>/stat`` the moment the last scan is published; its Python name
from ``py-spy dump`` half-way through (librdkafka's threads name themselves ``rdk:...``).
``--env`` runs the bridge with other settings, e.g. ``PASSENTRY_BACKFILL_CONCURRENCY=1``.

    python -m bench.threads --scans 50000 [--env VAR=VALUE ...]     # prints a Markdown table
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from bench._procs import REPO, Child, Kafka, Simulator, stat_cpu
from bench._runs import Context, run_bridge
from bench.run import compile_sources
from bench.scenarios import WEEK_S, _backlog

# ``Thread 1234 (idle): "fetch_2"`` in py-spy's dump.
_DUMPED = re.compile(r'^Thread (\d+) \(\w+\): "([^"]+)"', re.MULTILINE)
# Pool threads end in their index; sources' threads in their source id.
_GROUPS = ((re.compile(r"_\d+$"), "_N"), (re.compile(r"^source-.*"), "source-<id>"))


def thread_cpu(pid: int) -> dict[int, tuple[str, float, float]]:
    """Each thread of ``pid``: its OS name, user and system CPU seconds."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            found[int(tid)] = stat_cpu(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue  # ended meanwhile
    return found


def python_names(py_spy: str, pid: int) -> dict[int, str]:
    dump = subprocess.run([py_spy, "dump", "--pid", str(pid)], capture_output=True, text=True)
    return dumped_names(dump.stdout)


def dumped_names(dump: str) -> dict[int, str]:
    """Thread id -> Python thread name, from ``py-spy dump``'s text."""
    return {int(tid): name for tid, name in _DUMPED.findall(dump)}


def group(name: str) -> str:
    for pattern, replacement in _GROUPS:
        name = pattern.sub(replacement, name)
    return name


def table(
    threads: dict[int, tuple[str, float, float]], names: dict[int, str], scans: int,
    process: tuple[float, float] | None = None,
) -> str:  # fmt: skip
    """Busiest first. ``process``: the whole process's user and system CPU at the same
    moment, which also counts the threads that had ended (one per ``/metrics`` scrape)."""
    groups: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for tid, (os_name, user, system) in threads.items():
        row = groups[group(names.get(tid, os_name))]
        row[0] += user
        row[1] += system
        row[2] += 1
    if process is not None:
        live_user = sum(user for _, user, _ in threads.values())
        live_system = sum(system for _, _, system in threads.values())
        groups["(threads that had ended)"] = [
            max(0.0, process[0] - live_user),
            max(0.0, process[1] - live_system),
            0.0,
        ]
    total = sum(user + system for user, system, _ in groups.values())
    lines = [
        "| thread | count | user s | system s | µs/scan | share |",
        "|---|---|---|---|---|---|",
    ]
    for name, (user, system, count) in sorted(groups.items(), key=lambda kv: -sum(kv[1][:2])):
        cpu = user + system
        counted = f"{count:.0f}" if count else ""
        lines.append(
            f"| {name} | {counted} | {user:.2f} | {system:.2f} | {cpu / scans * 1e6:.1f}"
            f" | {cpu / total:.0%} |"
        )
    lines.append(f"| **all** | | | | **{total / scans * 1e6:.1f}** | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=50_000)
    parser.add_argument("--env", action="append", default=[], help="VAR=VALUE for the bridge")
    here = Path(sys.executable).parent / "py-spy"
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or str(here))
    args = parser.parse_args()
    env = {"PASSENTRY_REQUEST_BUDGET": "100"}  # as the cpu scenario runs it
    for setting in args.env:
        name, sep, value = setting.partition("=")
        if not sep:
            parser.error(f"--env {setting!r}: expected VAR=VALUE")
        env[name] = value

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = REPO / ".local" / "bench" / f"threads-{stamp}"
    names: dict[int, str] = {}
    threads: dict[int, tuple[str, float, float]] = {}
    process: list[tuple[float, float]] = []

    def progress(child: Child, published: int) -> None:
        if published >= args.scans // 2 and not names:
            names.update(python_names(args.py_spy, child.pid))
        if published >= args.scans and not threads:
            threads.update(thread_cpu(child.pid))
            process.append(stat_cpu(f"/proc/{child.pid}/stat")[1:])

    compile_sources()
    sim_args, since = _backlog(args.scans, WEEK_S, 11, "--no-rate-limit")
    with Kafka() as kafka, Simulator(sim_args, log_dir=log_dir) as sim:
        ctx = Context(kafka=kafka, log_dir=log_dir)
        result = run_bridge(
            ctx, sim, name="threads", expected=args.scans, since=since, env=env,
            on_progress=progress,
        )  # fmt: skip
    if not names:
        print(f"py-spy named no thread ({args.py_spy}): run `make profile`", file=sys.stderr)
    settings = " ".join(f"{k}={v}" for k, v in env.items())
    print(f"{args.scans} scans, {settings}: CPU {result.cpu_s:.2f} s, drained in"
          f" {result.drain_s:.1f} s")  # fmt: skip
    print(table(threads, names, args.scans, process[0] if process else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
