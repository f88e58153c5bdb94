"""``make demo``'s script as a user meets it: it says how to reach it (export lines that
work as pasted: ``status`` with them sees the demo's source running), prints this source's
scans one short line each, and Ctrl-C ends it with exit 0. It reuses the local broker the
session started (scripts/kafka-local), so it runs only in that mode."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.cli import cli
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_demo_says_how_to_reach_it_and_stops_cleanly(
    kafka_source: str, kafka_bootstrap: str
) -> None:
    if kafka_source != "local":
        pytest.skip("the demo runs scripts/kafka-local; this session's broker is another")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PASSENTRY_", "KAFKA_", "BRIDGE_"))
    }
    env.update(DEMO_METRICS_PORT=str(free_port()), DEMO_WEBHOOK_PORT=str(free_port()))
    proc = subprocess.Popen(
        ["scripts/demo"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
        # Ctrl-C reaches the demo as it would from a terminal, whatever this runner ignores.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        scan = re.compile(r"^\S+Z\s+gate-\d+\s+(nfc|barcode)\s+(successful|failed)\s+pass=")
        while not any(scan.match(line) for line in list(lines)):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "no scan printed:\n" + "".join(lines)
            time.sleep(0.5)
        exports = dict(
            pair.split("=", 1)
            for line in list(lines)
            if line.startswith("export ")
            for pair in line.split()[1:]
        )
        assert exports["KAFKA_BOOTSTRAP_SERVERS"] == kafka_bootstrap
        assert exports["BRIDGE_SOURCE_ID"].startswith("demo-")
        assert Path(exports["PASSENTRY_WEBHOOK_SECRET_FILE"]).is_file()
        # The secret is a file, the token in the environment: neither is on a command line.
        secret = Path(exports["PASSENTRY_WEBHOOK_SECRET_FILE"]).read_text().strip()
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
        assert secret not in ps.stdout
        status = CliRunner().invoke(cli, ["status"], env=exports, catch_exceptions=False)
        assert status.exit_code == 0, status.output
        assert re.search(r"state\s+running", status.stdout), status.stdout
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(90) == 0, "".join(lines[-20:])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
        reader.join(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert "demo: stopped\n" in lines
