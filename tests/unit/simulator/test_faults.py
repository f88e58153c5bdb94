"""Each fault does what it says, as seen by an HTTP client."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from bridge.errors import InvalidUUIDv7Error
from bridge.uuid7 import parse_uuid7
from passentry_simulator import Faults, SimulatorServer

Make = Callable[..., SimulatorServer]
ClientFor = Callable[..., httpx.Client]


def test_reset(make_server: Make, client_for: ClientFor) -> None:
    server = make_server(backlog=5, faults=Faults(reset_rate=1.0))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client_for(server).get("/api/v1/scans")


def test_truncated_body(make_server: Make, client_for: ClientFor) -> None:
    server = make_server(backlog=50, faults=Faults(truncated_rate=1.0))
    with pytest.raises(httpx.RemoteProtocolError, match=r"incomplete|closed"):
        client_for(server).get("/api/v1/scans")


def test_malformed_json(make_server: Make, client_for: ClientFor) -> None:
    server = make_server(backlog=50, faults=Faults(malformed_rate=1.0))
    resp = client_for(server).get("/api/v1/scans")
    assert resp.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        resp.json()


def test_html_error_page(make_server: Make, client_for: ClientFor) -> None:
    server = make_server(faults=Faults(html_rate=1.0))
    resp = client_for(server).get("/api/v1/scans")
    assert resp.status_code == 502
    assert resp.headers["content-type"].startswith("text/html")
    assert "<html>" in resp.text


def test_5xx_rate_is_a_probability(make_server: Make, client_for: ClientFor) -> None:
    faults = Faults(error_5xx_rate=0.5)
    faults.rng.seed(3)
    client = client_for(make_server(faults=faults))
    statuses = [client.get("/api/v1/scans").status_code for _ in range(60)]
    assert set(statuses) <= {200, 500, 502, 503}
    assert 10 < statuses.count(200) < 50


def test_hang_outlasts_a_short_client_timeout(make_server: Make, client_for: ClientFor) -> None:
    server = make_server(faults=Faults(hang_rate=1.0, hang_s=3.0))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client_for(server, timeout=0.3).get("/api/v1/scans")
    assert time.monotonic() - started < 2


def test_latency(make_server: Make, client_for: ClientFor) -> None:
    client = client_for(make_server(faults=Faults(latency_ms=150, jitter_ms=50)))
    started = time.monotonic()
    assert client.get("/api/v1/scans").status_code == 200
    assert time.monotonic() - started >= 0.15


def test_bad_ids_are_served(make_server: Make, client_for: ClientFor) -> None:
    server = make_server(backlog=40, faults=Faults(bad_id_rate=0.5))
    ids = [d["id"] for d in client_for(server).get("/api/v1/scans").json()["data"]]
    bad = []
    for scan_id in ids:
        try:
            parse_uuid7(scan_id)
        except InvalidUUIDv7Error:
            bad.append(scan_id)
    assert 0 < len(bad) < len(ids)
    assert {s.id for s in server.store.all_scans() if s.created_ms is None} == set(bad)


def test_missing_included(make_server: Make, client_for: ClientFor) -> None:
    server = make_server(backlog=40, faults=Faults(missing_included_rate=1.0))
    body = client_for(server).get("/api/v1/scans").json()
    referenced = {(d["relationships"]["reader"]["data"]["id"]) for d in body["data"]}
    referenced |= {
        d["relationships"]["pass"]["data"]["id"]
        for d in body["data"]
        if d["relationships"]["pass"]["data"]
    }
    assert len({i["id"] for i in body["included"]}) == len(referenced) - 1


def test_late_visibility(make_server: Make, client_for: ClientFor) -> None:
    server = make_server(faults=Faults(late_rate=1.0, late_s=0.6))
    client = client_for(server)
    scan_id = httpx.post(f"{server.url}/_sim/scans/generate", params={"n": 1}).json()["ids"][0]
    assert client.get("/api/v1/scans").json()["data"] == []
    assert client.get(f"/api/v1/scans/{scan_id}").status_code == 404
    truth = httpx.get(f"{server.url}/_sim/scans").json()
    assert [t["id"] for t in truth] == [scan_id]
    due = truth[0]["visibleAtMs"] / 1000
    deadline = time.time() + 5
    while not client.get("/api/v1/scans").json()["data"]:
        assert time.time() < deadline, "late scan never became visible"
        time.sleep(0.05)
    assert time.time() >= due
    assert client.get(f"/api/v1/scans/{scan_id}").status_code == 200


def test_skewed_nodes_mint_out_of_order(make_server: Make, client_for: ClientFor) -> None:
    server = make_server(faults=Faults(nodes=4, max_skew_ms=5_000))
    created = server.store.generate(40)
    minted = [parse_uuid7(s.id).int for s in created]
    assert minted != sorted(minted)
    served = [d["id"] for d in client_for(server).get("/api/v1/scans").json()["data"]]
    assert served == sorted(served, reverse=True)  # the API still lists by id


def test_faults_change_at_runtime_over_http(make_server: Make, client_for: ClientFor) -> None:
    server = make_server(backlog=30)
    client = client_for(server)
    put = httpx.put(f"{server.url}/_sim/faults", json={"error_5xx_rate": 1.0, "max_page_size": 3})
    assert put.status_code == 200
    assert put.json()["max_page_size"] == 3
    assert client.get("/api/v1/scans").status_code in {500, 502, 503}
    # Admin routes are never spoiled.
    assert httpx.get(f"{server.url}/_sim/stats").json()["faultsFired"]["5xx"] == 1
    server.faults.error_5xx_rate = 0.0
    assert len(client.get("/api/v1/scans").json()["data"]) == 3
    bad = httpx.put(f"{server.url}/_sim/faults", json={"error_5xx_rate": 2, "nope": 1})
    assert bad.status_code == 400
    assert bad.json()["errors"]
    assert httpx.get(f"{server.url}/_sim/faults").json()["error_5xx_rate"] == 0.0
