"""Profile the bridge's hot path during the cpu scenario with py-spy (all threads, no idle).

Starts the local Kafka (or reuses it) and a no-limit simulator with a backlog, runs
``passentry-bridge run --once`` under ``py-spy record`` to the end of the backlog, and
prints the functions with the most samples, by own time and by inclusive time.

    make profile                            # installs the bench extra (py-spy); needs ptrace
    python -m bench.profile --scans 100000 [--py-spy PATH] [--top 25]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bench._procs import REPO, Child, Kafka, Simulator
from bench._runs import fresh_names
from bench.run import compile_sources
from bench.scenarios import WEEK_S, _backlog


def summarise(raw: Path, top: int) -> str:
    """Top frames of a py-spy ``--format raw`` (collapsed stacks) file."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    out = [f"{total} samples", "", "own time:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(top)]
    out += ["", "inclusive time:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in inclusive.most_common(top)]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=100_000)
    here = Path(sys.executable).parent / "py-spy"
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or str(here))
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if not Path(args.py_spy).is_file() and shutil.which(args.py_spy) is None:
        print(
            f"py-spy not found ({args.py_spy}): run `make profile`, which installs it",
            file=sys.stderr,
        )
        return 2

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = REPO / ".local" / "bench" / f"profile-{stamp}"
    raw = log_dir / "bridge.pyspy.txt"
    sim_args, since = _backlog(args.scans, WEEK_S, 11, "--no-rate-limit")
    bridge = str(Path(sys.executable).parent / "passentry-bridge")
    compile_sources()
    with Kafka() as kafka, Simulator(sim_args, log_dir=log_dir) as sim:
        env = {
            "PASSENTRY_API_URL": sim.url,
            "PASSENTRY_API_TOKEN": "sim-token",
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
            "BRIDGE_HTTP_PORT": "0",
            "BRIDGE_LOG_LEVEL": "WARNING",
            "PASSENTRY_REQUEST_BUDGET": "100",
            **fresh_names("profile"),
        }
        # --gil: only the thread holding the GIL is sampled, so waits (sleeps, queue gets,
        # socket reads) drop out and the profile shows where Python spends CPU.
        argv = [args.py_spy, "record", "--gil", "--format", "raw", "-r", str(args.rate)]
        argv += ["-o", str(raw)]
        argv += ["--", bridge, "run", "--once", "--since", since]
        with Child("py-spy", argv, env=env, log_dir=log_dir) as child:
            result = child.wait(900)
        if result.code != 0:
            print(f"py-spy/bridge exited {result.code}: see {child.log_path}", file=sys.stderr)
            return 1
    print(f"profile: {raw}")
    print(summarise(raw, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
