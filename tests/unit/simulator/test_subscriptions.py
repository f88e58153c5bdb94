"""POST/GET /api/v1/webhook-subscriptions, and who receives what."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from passentry_simulator import SimulatorServer
from passentry_simulator.subscriptions import MAX_PER_SCOPE
from tests.unit.simulator.receiver import Receiver, wait_until

Make = Callable[..., SimulatorServer]
MakeReceiver = Callable[..., Receiver]
ClientFor = Callable[..., httpx.Client]
PATH = "/api/v1/webhook-subscriptions"


def _body(url: str, events: Any = ("passScanned",), **extra: Any) -> dict[str, Any]:
    fields = {"url": url, "enabled": True, "subscribedEvents": list(events), **extra}
    return {"webhookSubscription": fields}


def _generate(server: SimulatorServer, n: int) -> list[str]:
    ids: list[str] = httpx.post(f"{server.url}/_sim/scans/generate", params={"n": n}).json()["ids"]
    return ids


def test_created_subscription_has_the_documented_shape_and_receives_scans(
    make_server: Make, make_receiver: MakeReceiver, client_for: ClientFor
) -> None:
    server = make_server(backlog=10)
    client = client_for(server)
    receiver = make_receiver()
    resp = client.post(PATH, json=_body(receiver.url, ["passScanned", "passCreated"]))
    assert resp.status_code == 201
    data = resp.json()["data"]
    assert set(data) == {"id", "type", "attributes"}
    assert data["type"] == "webhookSubscription"
    attrs = data["attributes"]
    assert set(attrs) == {
        "url", "enabled", "subscribedEvents", "secretKey", "scopeType", "scopeName",
    }  # fmt: skip
    assert (attrs["url"], attrs["enabled"], attrs["scopeType"]) == (
        receiver.url,
        True,
        "organisation",
    )
    assert attrs["subscribedEvents"] == ["passScanned", "passCreated"]
    assert re.fullmatch(r"[0-9a-f]{64}", attrs["secretKey"])
    assert attrs["scopeName"]
    assert client.get(f"{PATH}/{data['id']}").json() == {"data": data}
    assert client.get(PATH).json()["data"] == [data]

    # Signed with its own secret; the backlog from before is not announced.
    receiver.secret = attrs["secretKey"]
    ids = _generate(server, 3)
    got = receiver.wait_for(lambda r: len(r) >= 3)
    assert all(r.valid for r in got)
    assert sorted(r.scan_id for r in got) == sorted(ids)


def test_entity_scope_hears_only_its_readers(
    make_server: Make, make_receiver: MakeReceiver, client_for: ClientFor
) -> None:
    server = make_server()
    client = client_for(server)
    receiver = make_receiver()
    entity = server.store.world.readers[1].entity_id
    resp = client.post(PATH, json=_body(receiver.url, entityId=entity))
    assert resp.status_code == 201
    attrs = resp.json()["data"]["attributes"]
    assert (attrs["scopeType"], attrs["scopeName"]) == ("entity", "Entity 2")
    receiver.secret = attrs["secretKey"]
    ids = set(_generate(server, 60))
    scans = [s for s in server.store.all_scans() if s.id in ids]
    mine = {s.id for s in scans if s.spec.reader.entity_id == entity}
    assert 0 < len(mine) < len(ids)
    got = receiver.wait_for(lambda r: len(r) >= len(mine))
    wait_until(lambda: server.sim.webhooks.totals()["pending"] == 0, what="an empty outbox")
    assert {r.scan_id for r in got} == mine
    assert server.sim.webhooks.totals()["events"] == len(mine)
    # The list filters by entity.
    assert len(client.get(PATH, params={"entityId": entity}).json()["data"]) == 1
    assert client.get(PATH, params={"entityId": "other"}).json()["data"] == []


def test_disabled_or_not_passscanned_subscriptions_get_nothing(
    make_server: Make, client_for: ClientFor
) -> None:
    server = make_server()
    client = client_for(server)
    off = _body("http://127.0.0.1:9/off")
    off["webhookSubscription"]["enabled"] = False
    assert client.post(PATH, json=off).status_code == 201
    assert client.post(PATH, json=_body("http://127.0.0.1:9/c", ["passCreated"])).status_code == 201
    _generate(server, 5)
    stats = httpx.get(f"{server.url}/_sim/stats").json()
    assert stats["scans"]["total"] == 5  # created, and no subscription wanted them
    assert server.sim.webhooks.totals()["events"] == 0


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (None, "'webhookSubscription' object"),
        ({"url": "http://127.0.0.1/x"}, "'webhookSubscription' object"),
        ({"webhookSubscription": {"subscribedEvents": ["passScanned"]}}, "url"),
        (_body("http://hooks.example.com/x"), "https"),
        (_body("ftp://hooks.example.com/x"), "https URL"),
        (_body("/relative/path"), "https URL"),
        (_body("https://hooks.example.com:99999/x"), "https URL"),
        (_body("https://hooks.example.com/x", []), "subscribedEvents"),
        (_body("https://hooks.example.com/x", ["passTapped"]), "subscribedEvents"),
        (_body("https://hooks.example.com/x", enabled="yes"), "enabled"),
        (_body("https://hooks.example.com/x", entityId="nope"), "entityId"),
    ],
)
def test_bad_bodies_get_422(
    make_server: Make, client_for: ClientFor, body: Any, problem: str
) -> None:
    client = client_for(make_server())
    resp = client.post(PATH, json=body) if body is not None else client.post(PATH, content=b"{")
    assert resp.status_code == 422
    errors = resp.json()["errors"]
    assert errors
    assert all(isinstance(e, str) for e in errors)
    assert any(problem in e for e in errors)
    assert client.get(PATH).json()["data"] == []


def test_url_rules_one_per_scope_and_a_cap(make_server: Make, client_for: ClientFor) -> None:
    server = make_server()
    client = client_for(server)
    for url in ("https://hooks.example.com/a", "http://localhost:1/a", "http://[::1]:1/a"):
        assert client.post(PATH, json=_body(url, enabled=False)).status_code == 201
    again = client.post(PATH, json=_body("https://hooks.example.com/a"))
    assert again.status_code == 422
    assert "exists" in again.json()["errors"][0]
    # Scope is part of the key: the same URL may be subscribed for an entity.
    entity = server.store.world.readers[0].entity_id
    scoped = _body("https://hooks.example.com/a", enabled=False, entityId=entity)
    assert client.post(PATH, json=scoped).status_code == 201
    for n in range(MAX_PER_SCOPE - 3):
        url = f"https://hooks.example.com/more/{n}"
        assert client.post(PATH, json=_body(url, enabled=False)).status_code == 201
    full = client.post(PATH, json=_body("https://hooks.example.com/one-too-many"))
    assert full.status_code == 422


def test_list_pages_and_404(make_server: Make, client_for: ClientFor) -> None:
    client = client_for(make_server())
    for n in range(7):
        body = _body(f"https://hooks.example.com/{n}", enabled=False)
        assert client.post(PATH, json=body).status_code == 201
    first = client.get(PATH).json()
    assert len(first["data"]) == 5  # the documented default perPage
    assert first["meta"] == {"totalCount": 7, "resultsPerPage": 5, "currentPage": 1,
                             "totalPages": 2}  # fmt: skip
    second = client.get(PATH, params={"page": 2}).json()["data"]
    assert [d["attributes"]["url"] for d in first["data"] + second] == [
        f"https://hooks.example.com/{n}" for n in range(7)
    ]
    assert client.get(PATH, params={"perPage": 500}).json()["meta"]["resultsPerPage"] == 100
    assert client.get(PATH, params={"perPage": "x"}).status_code == 422
    missing = client.get(f"{PATH}/nope")
    assert (missing.status_code, missing.json()) == (404, {"errors": ["Not Found"]})


def test_auth_and_rate_limit_like_the_other_endpoints(
    make_server: Make, client_for: ClientFor
) -> None:
    server = make_server(rate_limit=2, rate_window_s=30)
    with httpx.Client(base_url=server.url) as anonymous:
        for client in (client_for(server, token="wrong"), anonymous):
            assert client.post(PATH, json=_body("http://127.0.0.1:9/x")).status_code == 401
            assert client.get(PATH).status_code == 401
    client = client_for(server)
    assert client.get(PATH).status_code == 200
    assert client.get(PATH).status_code == 200
    refused = client.get(PATH)
    assert refused.status_code == 429
    assert refused.headers["x-rate-limit-url"] == PATH
    # POST has a bucket of its own.
    assert client.post(PATH, json=_body("http://127.0.0.1:9/x", enabled=False)).status_code == 201
    stats = httpx.get(f"{server.url}/_sim/stats").json()
    assert stats["unauthorized"][f"POST {PATH}"] == 2
    assert stats["rateLimited"][f"GET {PATH}"] == 1
