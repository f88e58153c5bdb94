"""What auditing one day of traffic costs: wall time, PassEntry requests, Kafka records read,
the audit's CPU time and peak memory. Default: a day at 50 scans/s (4,320,000 scans).

    .venv/bin/python -m bench.audit_day                  # a full day, about 15 minutes
    .venv/bin/python -m bench.audit_day --rate 5         # a tenth of it

The simulator holds the day in memory (``Store.build`` with a one-day backlog, served from
this process on a thread, PassEntry's 10 req/s limit on). Putting the same day into Kafka
through the bridge would take 72 minutes at PassEntry's rate alone, so the bench produces
the records directly: the scan ids, keys, Kafka timestamps (the UUIDv7 time) and the
``source-id``/``scan-id`` headers the bridge writes, with a placeholder value of the usual
size. The audit reads only the headers and timestamps, so what it reads is what it would
read after a real day; the bridge's own publishing is not part of the figure.

Two runs on one data set: first with ``--drop`` scans left out of Kafka (the audit finds
them: counts plus halving plus listing), then with them produced too (complete: one count
per bucket). The audit runs as ``passentry-bridge audit --json``, a child process.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from bench._procs import REPO, Exit, Kafka
from bridge.kafka.checkpoint import CheckpointStore, make_checkpoint
from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import Scan, Store, WorldConfig

DAY_MS = 86_400_000
# Values about the size of a real record, cut from random bytes so that lz4 does not shrink
# them to nothing (the reading cost would then be flattered); never decoded here.
_NOISE = os.urandom(1 << 20)
_VALUE_LEN = 400


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def _produce(bootstrap: str, topic: str, source: str, scans: list[Scan]) -> float:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "compression.type": "lz4",
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 500_000,
            "enable.idempotence": True,
        }
    )
    started = time.monotonic()
    for n, scan in enumerate(scans):
        headers = [("source-id", source), ("scan-id", scan.id)]
        while True:
            try:
                at = (n * 7919) % (len(_NOISE) - _VALUE_LEN)
                value = _NOISE[at : at + _VALUE_LEN]
                producer.produce(
                    topic,
                    value,
                    scan.spec.reader.id,
                    headers=headers,
                    timestamp=scan.created_ms or 0,
                )
                break
            except BufferError:
                producer.poll(0.05)
        if n % 10_000 == 0:
            producer.poll(0)
    producer.flush(300)
    return time.monotonic() - started


def _watch_peak(proc: subprocess.Popen[bytes], peak: list[float]) -> None:
    while proc.returncode is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]) / 1024)
        except OSError:
            return
        time.sleep(0.2)


def _audit(env: dict[str, str], since: int, until: int, log_dir: Path, name: str) -> dict[str, Any]:
    argv = [
        str(REPO / ".venv" / "bin" / "passentry-bridge"),
        "audit",
        "--json",
        "--since",
        _iso(since),
        "--until",
        _iso(until),
        "--bucket",
        "1h",
        "--budget",
        "9",
    ]
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    peak = [0.0]
    with open(log_dir / f"{name}.log", "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=log, cwd=REPO)
        # ru_maxrss of a child forked from this (big) process counts the parent's pages
        # before exec; VmHWM read while it runs is the audit's own peak.
        watcher = threading.Thread(target=_watch_peak, args=(proc, peak), daemon=True)
        watcher.start()
        assert proc.stdout is not None
        out = proc.stdout.read()  # to EOF, without reaping: wait4 below gives the rusage
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        watcher.join(5)
    wall = time.monotonic() - started
    ended = Exit(proc.returncode, usage.ru_utime + usage.ru_stime, peak[0])
    report: dict[str, Any] = json.loads(out)
    report["bench"] = {
        "exit": ended.code,
        "wall_s": round(wall, 2),
        "cpu_s": round(ended.cpu_s, 2),
        "max_rss_mb": round(ended.max_rss_mb, 1),
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="scans per second over the day")
    parser.add_argument("--drop", type=int, default=10, help="scans left out of Kafka at first")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    scans_n = int(args.rate * 86_400)
    day_end = (int(time.time() * 1000) - DAY_MS) // DAY_MS * DAY_MS + DAY_MS  # today 00:00 UTC
    day_start = day_end - DAY_MS
    log_dir = REPO / ".local" / "bench" / f"audit-{time.strftime('%Y%m%dT%H%M%S')}"
    tag = uuid.uuid4().hex[:8]
    topics = {
        "scans": f"audit-{tag}-scans",
        "dlq": f"audit-{tag}-dlq",
        "state": f"audit-{tag}-state",
    }
    source = f"audit-{tag}"

    say(f"building a day of {scans_n:,} scans in the simulator (about 40 s per million)")
    started = time.monotonic()
    # The backlog ends 1 ms before midnight: every scan lies inside the audited day.
    world = WorldConfig(
        seed=args.seed, backlog=scans_n, backlog_span_s=86_400 - 0.002, anchor_ms=day_end - 1
    )
    server = SimulatorServer(SimulatorConfig(world=WorldConfig(seed=1)))
    server.sim.store = Store.build(world, server.sim.faults)
    scans = server.store.all_scans()
    say(f"built in {time.monotonic() - started:.0f}s")
    rng = random.Random(args.seed)
    dropped = set(rng.sample(range(len(scans)), args.drop))

    with Kafka() as kafka, server:
        kafka.create_topics([topics["scans"], topics["dlq"]], partitions=6)
        kafka.create_topics([topics["state"]], partitions=1)
        kept = [s for i, s in enumerate(scans) if i not in dropped]
        say(f"producing {len(kept):,} records")
        produce_s = _produce(kafka.bootstrap, topics["scans"], source, kept)
        say(f"produced in {produce_s:.0f}s ({len(kept) / produce_s:,.0f}/s)")
        # A live checkpoint well past the day, as a running bridge would have.
        store = CheckpointStore({"bootstrap.servers": kafka.bootstrap}, topics["state"], source)
        record = store.record(
            make_checkpoint(
                source, max(uuid.UUID(s.id).int for s in scans[-10:]), [topics["scans"]]
            )
        )
        p = Producer({"bootstrap.servers": kafka.bootstrap})
        p.produce(record.topic, record.value, record.key)
        p.flush(30)
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("PASSENTRY_", "BRIDGE_", "KAFKA_"))
            },
            "PASSENTRY_API_URL": server.url,
            "PASSENTRY_API_TOKEN": server.token,
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
            "BRIDGE_SOURCE_ID": source,
            "BRIDGE_SCANS_TOPIC": topics["scans"],
            "BRIDGE_DLQ_TOPIC": topics["dlq"],
            "BRIDGE_STATE_TOPIC": topics["state"],
            "BRIDGE_LOG_FORMAT": "json",
            # A full day of records takes longer to read than one transaction timeout.
            "PASSENTRY_LOOKBACK_S": "300",
        }
        say("audit 1: with gaps")
        gaps = _audit(env, day_start, day_end, log_dir, "audit-gaps")
        say(f"audit 1: {json.dumps(gaps['cost'])} {json.dumps(gaps['bench'])}")
        produce_s = _produce(
            kafka.bootstrap, topics["scans"], source, [scans[i] for i in sorted(dropped)]
        )
        say("audit 2: complete")
        complete = _audit(env, day_start, day_end, log_dir, "audit-complete")
        say(f"audit 2: {json.dumps(complete['cost'])} {json.dumps(complete['bench'])}")
        requests = server.sim.stats.requests
        rate_limited = sum(server.sim.stats.rate_limited.values())
    found = sorted(i for b in gaps["buckets"] for i in b["missingIds"])
    expected = sorted(scans[i].id for i in dropped)
    result = {
        "scans": scans_n,
        "dropped": args.drop,
        "found_exactly": found == expected,
        "rate_limited": rate_limited,
        "simulator_requests": dict(requests),
        "gaps": {
            "totals": gaps["totals"],
            "cost": gaps["cost"],
            "process": gaps["bench"],
            "exit": gaps["bench"]["exit"],
        },
        "complete": {
            "totals": complete["totals"],
            "cost": complete["cost"],
            "process": complete["bench"],
            "exit": complete["bench"]["exit"],
        },
    }
    out = REPO / "bench" / "results" / "audit_day.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
