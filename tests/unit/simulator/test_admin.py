"""The /_sim/* admin routes, and the simulator run as its own process."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable

import httpx

from passentry_simulator import SimulatorProcess, SimulatorServer

Make = Callable[..., SimulatorServer]


def test_sim_scans_is_the_ground_truth(make_server: Make) -> None:
    server = make_server(backlog=25)
    generated = httpx.post(f"{server.url}/_sim/scans/generate", params={"n": 5}).json()["ids"]
    rows = httpx.get(f"{server.url}/_sim/scans").json()
    assert len(rows) == 30
    assert [r["id"] for r in rows][-5:] == generated
    for row, scan in zip(rows, server.store.all_scans(), strict=True):
        assert row["resource"] == json.loads(scan.json)
        assert row["readerId"] == row["resource"]["relationships"]["reader"]["data"]["id"]
        assert row["reader"]["id"] == row["readerId"]
        assert row["createdAtMs"] == scan.created_ms
        if row["passId"] is None:
            assert row["pass"] is None
        else:
            assert row["pass"]["id"] == row["passId"]
    assert httpx.post(f"{server.url}/_sim/scans/generate", params={"n": "x"}).status_code == 400


def test_sim_stats(make_server: Make) -> None:
    server = make_server(backlog=3)
    headers = {"Authorization": f"Bearer {server.token}"}
    httpx.get(f"{server.url}/api/v1/scans", headers=headers)
    httpx.get(f"{server.url}/api/v1/scans")
    stats = httpx.get(f"{server.url}/_sim/stats").json()
    assert stats["requests"] == {"GET /api/v1/scans": 1}
    assert stats["unauthorized"] == {"GET /api/v1/scans": 1}
    assert stats["scans"] == {"total": 3, "visible": 3, "pending": 0}


def test_command_runs_out_of_process_and_stops_cleanly() -> None:
    with SimulatorProcess("--backlog", "20", "--seed", "5", "--max-page-size", "7") as sim:
        headers = {"Authorization": f"Bearer {sim.token}"}
        body = httpx.get(f"{sim.url}/api/v1/scans", headers=headers).json()
        assert body["meta"]["totalCount"] == 20
        assert len(body["data"]) == 7
        assert httpx.get(f"{sim.url}/_sim/faults").json()["max_page_size"] == 7
        assert sim.stop() == 0
    proc = SimulatorProcess().start()
    os.kill(proc.pid, signal.SIGINT)
    assert proc.stop() == 0
