"""PassEntry's rate limit: N requests per sliding window per (endpoint, method)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from passentry_simulator import SimulatorServer, SlidingWindowLimiter
from tests.support import FakeClock

Make = Callable[..., SimulatorServer]
ClientFor = Callable[..., httpx.Client]


def test_eleventh_request_gets_429_until_a_slot_frees(
    make_server: Make, client_for: ClientFor
) -> None:
    server = make_server(backlog=5, rate_limit=10, rate_window_s=0.5)
    clock = FakeClock()  # the window moves only when the test says so
    server.sim.limiter.clock = clock
    client = client_for(server)
    remaining = []
    for _ in range(10):
        resp = client.get("/api/v1/scans")
        assert resp.status_code == 200
        assert resp.headers["x-rate-limit-limit"] == "10"
        assert resp.headers["x-rate-limit-url"] == "/api/v1/scans"
        assert float(resp.headers["x-rate-limit-reset"]) > time.time() - 1
        remaining.append(int(resp.headers["x-rate-limit-remaining"]))
    assert remaining == list(range(9, -1, -1))

    refused = client.get("/api/v1/scans")
    assert refused.status_code == 429
    assert refused.json() == {"errors": ["Too Many Requests"]}
    retry_after = float(refused.headers["x-rate-limit-retry-after"])
    assert 0 < retry_after <= 0.5
    assert refused.headers["x-rate-limit-remaining"] == "0"

    # Another route has its own bucket.
    scan_id = server.store.all_scans()[0].id
    assert (
        client.get(f"/api/v1/scans/{scan_id}").headers["x-rate-limit-url"] == "/api/v1/scans/{id}"
    )

    clock.advance(retry_after)
    assert client.get("/api/v1/scans").status_code == 200
    stats = httpx.get(f"{server.url}/_sim/stats").json()
    assert stats["rateLimited"] == {"GET /api/v1/scans": 1}
    assert stats["requests"]["GET /api/v1/scans"] == 12


def test_refused_requests_do_not_consume_slots() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(limit=2, window_s=0.5, clock=clock)
    opened = clock()
    assert [d is not None and d.allowed for d in (limiter.check("k"), limiter.check("k"))] == [
        True,
        True,
    ]
    # Hammered through most of the window (binary fractions keep the clock exact).
    refusals = []
    for _ in range(50):
        clock.advance(1 / 128)
        refusals.append(limiter.check("k"))
    assert all(d is not None and not d.allowed for d in refusals)
    last = refusals[-1]
    assert last is not None
    # The refusals did not push the reopening back: it is when the first slot leaves.
    assert clock() + last.retry_after == pytest.approx(opened + 0.5)
    clock.now = opened + 0.5 - 1 / 1024
    refused = limiter.check("k")
    assert refused is not None
    assert not refused.allowed
    clock.now = opened + 0.5
    decision = limiter.check("k")
    assert decision is not None
    assert decision.allowed
    assert SlidingWindowLimiter(limit=None).check("k") is None


def test_no_rate_limit_means_no_headers(make_server: Make, client_for: ClientFor) -> None:
    client = client_for(make_server(rate_limit=None))
    for _ in range(30):
        resp = client.get("/api/v1/scans")
        assert resp.status_code == 200
    assert "x-rate-limit-limit" not in resp.headers
