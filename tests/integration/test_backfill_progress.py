"""``backfill`` off a terminal: its progress goes out as JSON log lines with the total that
PassEntry counted, the rate and the ETA, and the last one says everything was published."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from tests.integration.eos_harness import Topics, bridge_env

BRIDGE = str(Path(sys.executable).with_name("passentry-bridge"))


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def test_backfill_reports_progress_as_log_lines(kafka_bootstrap: str) -> None:
    anchor = (int(time.time()) - 600) * 1000
    world = WorldConfig(seed=2, backlog=1500, backlog_span_s=1200, anchor_ms=anchor)
    with SimulatorServer(SimulatorConfig(world=world, rate_limit=None)) as sim:
        env = bridge_env(sim.url, kafka_bootstrap, Topics.fresh(), PASSENTRY_REQUEST_BUDGET="50")
        since, until = _iso(anchor - 1_300_000), _iso(anchor + 1000)
        proc = subprocess.run(
            [BRIDGE, "backfill", "--since", since, "--until", until],
            env=env, capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    progress = [line for line in lines if line.get("task") == "backfill"]
    assert progress, proc.stderr[-3000:]
    last = progress[-1]
    assert last["msg"] == "backfill done"
    assert (last["done"], last["total"], last["unit"]) == (1500, 1500, "scans")
    assert last["rate_per_s"] > 0
    assert last["eta_s"] == 0


def test_a_second_backfill_counts_the_records_it_read_back(kafka_bootstrap: str) -> None:
    """The Kafka read's bar is planned in offsets (commit markers take some) and ends at the
    records read: the second run finds the first's 1500 scans and ends its bar there."""
    anchor = (int(time.time()) - 600) * 1000
    world = WorldConfig(seed=2, backlog=1500, backlog_span_s=1200, anchor_ms=anchor)
    with SimulatorServer(SimulatorConfig(world=world, rate_limit=None)) as sim:
        env = bridge_env(sim.url, kafka_bootstrap, Topics.fresh(), PASSENTRY_REQUEST_BUDGET="50")
        since, until = _iso(anchor - 1_300_000), _iso(anchor + 1000)
        command = [BRIDGE, "backfill", "--since", since, "--until", until]
        runs = [
            subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
            for _ in range(2)
        ]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in runs[1].stderr.splitlines() if line.startswith("{")]
    (read,) = [line for line in lines if line.get("msg") == "kafka done"]
    assert read["unit"] == "records"
    assert read["done"] == read["total"] == 1500, read
