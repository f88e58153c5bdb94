"""``passentry-bridge status`` against a real bridge (``run`` in a subprocess, in a consumer
group, webhooks on), the simulator and the broker: who owns the source, running, its
checkpoint and what PassEntry holds beyond it, the inbox, the last audit; failing with the
error its owner reports when PassEntry answers 500; unowned once the bridge has stopped."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from bridge.cli import cli
from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from tests.integration.harness import wait_for
from tests.support import free_port

SECRET = "w" * 40


@pytest.fixture
def setting(kafka_bootstrap: str) -> Iterator[dict[str, str]]:
    with SimulatorServer(SimulatorConfig(world=WorldConfig(backlog=200, seed=3), rate=5.0)) as sim:
        yield {
            "PASSENTRY_API_URL": sim.url,
            "PASSENTRY_API_TOKEN": sim.token,
            "PASSENTRY_POLL_INTERVAL_MAX_S": "1",
            "PASSENTRY_RETRY_DEADLINE_S": "2",
            "PASSENTRY_WEBHOOK_SECRET": SECRET,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "BRIDGE_HTTP_HOST": "127.0.0.1",
            "BRIDGE_HTTP_PORT": str(free_port()),
            "BRIDGE_WEBHOOK_PORT": str(free_port()),
            "BRIDGE_SOURCE_ID": f"status-{uuid.uuid4().hex[:8]}",
            "BRIDGE_GROUP_ID": f"status-{uuid.uuid4().hex[:8]}",
            "BRIDGE_COORDINATION_TOPIC": f"status-coord-{uuid.uuid4().hex[:8]}",
            "BRIDGE_SCANS_TOPIC": f"status-scans-{uuid.uuid4().hex[:8]}",
            "BRIDGE_STATE_TOPIC": f"status-state-{uuid.uuid4().hex[:8]}",
            "BRIDGE_WEBHOOK_TOPIC": f"status-inbox-{uuid.uuid4().hex[:8]}",
            "BRIDGE_LOG_FORMAT": "text",
            "SIM_URL": sim.url,
        }


@pytest.fixture
def bridge(setting: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PASSENTRY_", "KAFKA_", "BRIDGE_"))
    }
    env.update({k: v for k, v in setting.items() if k != "SIM_URL"})
    since = "2020-01-01T00:00:00Z"
    exe = Path(sys.executable).parent / "passentry-bridge"
    with (tmp_path / "bridge.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(exe), "run", "--since", since], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def _status(setting: dict[str, str]) -> dict[str, Any]:
    env = {k: v for k, v in setting.items() if k != "SIM_URL"}
    result = CliRunner().invoke(cli, ["status", "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    (source,) = doc["sources"]
    return source


def test_status_follows_a_source_through_failure_and_stop(
    setting: dict[str, str], bridge: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    def running_with_a_checkpoint() -> bool:
        seen.update(_status(setting))
        return seen["state"] == "running" and seen["watermark"] is not None

    wait_for(running_with_a_checkpoint, 120, f"a running source with a checkpoint: {seen}")
    assert seen["owner"]["host"] == "127.0.0.1"
    assert seen["owner"]["clientId"].startswith("passentry-bridge@")
    assert 0 <= seen["checkpointAgeSeconds"] < 60
    assert isinstance(seen["behindScans"], int)
    assert seen["behindScans"] >= 0
    assert seen["inboxLag"] == 0  # webhooks on, none sent
    assert seen["lastAudit"] is None
    assert seen["error"] is None

    env = {k: v for k, v in setting.items() if k != "SIM_URL"}
    until = datetime.fromisoformat(seen["watermarkCreatedAt"].replace("Z", "+00:00"))
    since = (until - timedelta(hours=2)).isoformat()
    audited = CliRunner().invoke(
        cli, ["audit", "--since", since, "--until", until.isoformat()],
        env=env, catch_exceptions=False,
    )  # fmt: skip
    assert audited.exit_code == 0, audited.output
    audit = _status(setting)["lastAudit"]
    assert audit["missing"] == 0
    assert audit["duplicated"] == 0
    assert audit["command"] == "audit"

    put = httpx.put(f"{setting['SIM_URL']}/_sim/faults", json={"error_5xx_rate": 1.0})
    assert put.status_code == 200
    wait_for(lambda: seen.update(_status(setting)) or seen["state"] == "failing", 60,
             "the owner to report the source failing")  # fmt: skip
    # The simulator's 5xx fault answers 500, 502 or 503 at random.
    assert re.search(r"GET /api/v1/scans answered 50[023]", seen["error"]), seen["error"]
    httpx.put(f"{setting['SIM_URL']}/_sim/faults", json={"error_5xx_rate": 0.0})
    wait_for(lambda: seen.update(_status(setting)) or seen["state"] == "running", 60,
             "the source to run again")  # fmt: skip

    bridge.send_signal(signal.SIGTERM)
    assert bridge.wait(60) == 0
    after = _status(setting)
    assert after["state"] == "unowned"
    assert after["owner"] is None
    # The checkpoint outlives its owner, and is where the owner left it (UUIDv7s sort by time).
    assert after["watermark"] is not None
    assert after["watermark"] >= seen["watermark"]
