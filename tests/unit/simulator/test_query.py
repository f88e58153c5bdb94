"""Listing scans: pagination, filters, creation-time ranges, auth and bad input."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from bridge.uuid7 import parse_uuid7
from passentry_simulator import Faults, SimulatorServer
from passentry_simulator.store import Scan

Make = Callable[..., SimulatorServer]
ClientFor = Callable[..., httpx.Client]


def walk(client: httpx.Client, **params: Any) -> list[str]:
    """Page 1..totalPages; returns the scan ids in the order served."""
    ids: list[str] = []
    page, total_pages = 1, 1
    while page <= total_pages:
        body = client.get("/api/v1/scans", params={**params, "page": page}).json()
        ids += [d["id"] for d in body["data"]]
        total_pages = body["meta"]["totalPages"]
        page += 1
    return ids


def newest_first(scans: list[Scan]) -> list[str]:
    return [s.id for s in sorted(scans, key=lambda s: s.key, reverse=True)]


@pytest.mark.parametrize("per_page", [1, 7, 100, 250])
def test_paging_yields_every_scan_once_newest_first(
    make_server: Make, client_for: ClientFor, per_page: int
) -> None:
    server = make_server(backlog=433)
    ids = walk(client_for(server), perPage=per_page)
    assert ids == newest_first(server.store.all_scans())
    assert len(set(ids)) == 433


def test_page_size_cap_overrides_per_page(make_server: Make, client_for: ClientFor) -> None:
    server = make_server(backlog=95, faults=Faults(max_page_size=10))
    client = client_for(server)
    body = client.get("/api/v1/scans", params={"perPage": 50}).json()
    assert len(body["data"]) == 10
    assert body["meta"]["resultsPerPage"] == 10
    assert body["meta"]["totalPages"] == 10
    assert walk(client, perPage=50) == newest_first(server.store.all_scans())


def test_links_carry_the_query_with_the_page_changed(
    make_server: Make, client_for: ClientFor
) -> None:
    server = make_server(backlog=30)
    client = client_for(server)
    links = client.get(
        "/api/v1/scans", params={"perPage": 10, "status": "successful", "page": 2}
    ).json()["links"]
    for name in ("first", "prev", "next", "last"):
        url = httpx.URL(links[name])
        assert url.host == "127.0.0.1"
        assert url.path == "/api/v1/scans"
        assert url.params["perPage"] == "10"
        assert url.params["status"] == "successful"
    total = client.get(links["last"]).json()["meta"]
    assert total["currentPage"] == total["totalPages"]
    last = client.get(links["last"]).json()["links"]
    assert last["next"] is None
    assert last["last"] is None
    assert last["prev"] is not None
    single = client.get("/api/v1/scans").json()["links"]
    assert single == {"first": None, "prev": None, "next": None, "last": None}
    beyond = client.get("/api/v1/scans", params={"page": 99}).json()
    assert beyond["data"] == []
    assert beyond["meta"]["currentPage"] == 99


FILTERS: list[tuple[str, Callable[[Scan], str | None]]] = [
    ("entity", lambda s: s.spec.reader.entity_id),
    ("readerId", lambda s: s.spec.reader.id),
    ("validationType", lambda s: s.spec.validation_type),
    ("scanType", lambda s: s.spec.scan_type),
    ("status", lambda s: s.spec.status),
    ("passId", lambda s: s.spec.pass_.id if s.spec.pass_ else None),
    ("eventId", lambda s: s.spec.pass_.event_id if s.spec.pass_ else None),
    ("passTemplateName", lambda s: s.spec.pass_.template_name if s.spec.pass_ else None),
    ("groupTag", lambda s: s.spec.pass_.group_tag if s.spec.pass_ else None),
]


@pytest.mark.parametrize(("param", "field"), FILTERS, ids=[f[0] for f in FILTERS])
def test_each_filter(
    make_server: Make, client_for: ClientFor, param: str, field: Callable[[Scan], str | None]
) -> None:
    server = make_server(backlog=400)
    client = client_for(server)
    scans = server.store.all_scans()
    values = {field(s) for s in scans} - {None}
    assert len(values) >= 2, "the generated data should exercise the filter"
    for value in values:
        assert value is not None
        expected = newest_first([s for s in scans if field(s) == value])
        assert walk(client, **{param: value}, perPage=100) == expected
        meta = client.get("/api/v1/scans", params={param: value}).json()["meta"]
        assert meta["totalCount"] == meta["totalScans"] == len(expected)
        assert meta["successfulScans"] == sum(
            1 for s in scans if field(s) == value and s.spec.status == "successful"
        )


def test_pass_filter_accepts_ext_id(make_server: Make, client_for: ClientFor) -> None:
    server = make_server(backlog=300)
    scan = next(s for s in server.store.all_scans() if s.spec.pass_ is not None)
    assert scan.spec.pass_ is not None
    client = client_for(server)
    assert walk(client, passId=scan.spec.pass_.ext_id) == walk(client, passId=scan.spec.pass_.id)


def _iso(ms: int, fmt: str) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if fmt == "Z":
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return moment.astimezone(timezone(timedelta(hours=2))).isoformat()


@pytest.mark.parametrize("fmt", ["Z", "+02:00"])
def test_created_after_and_before_are_exclusive(
    make_server: Make, client_for: ClientFor, fmt: str
) -> None:
    server = make_server(backlog=300, backlog_span_s=10)
    client = client_for(server)
    scans = sorted(server.store.all_scans(), key=lambda s: s.key)
    lo, hi = scans[50].created_ms, scans[250].created_ms
    assert lo is not None
    assert hi is not None
    ids = walk(client, createdAfter=_iso(lo, fmt), createdBefore=_iso(hi, fmt))
    expected = [s for s in scans if s.created_ms is not None and lo < s.created_ms < hi]
    assert ids == [s.id for s in reversed(expected)]
    assert all(lo < int(parse_uuid7(i).int >> 80) < hi for i in ids)


def test_created_after_fractional_seconds(make_server: Make, client_for: ClientFor) -> None:
    server = make_server(backlog=200, backlog_span_s=5)
    client = client_for(server)
    scans = sorted(server.store.all_scans(), key=lambda s: s.key)
    ms = scans[100].created_ms
    assert ms is not None
    # Half a millisecond before the scan's millisecond ends: the scan (at ms) is before it.
    text = datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    just_after = text[:-3] + "500+00:00"
    ids = walk(client, createdAfter=just_after)
    assert scans[100].id not in ids
    assert set(ids) == {s.id for s in scans if s.created_ms is not None and s.created_ms > ms}


@pytest.mark.parametrize(
    "params",
    [
        {"createdAfter": "yesterday"},
        {"createdBefore": "2025-13-40T00:00:00Z"},
        {"status": "ok"},
        {"scanType": "qr"},
        {"validationType": "internal"},
        {"perPage": "0"},
        {"perPage": "ten"},
        {"page": "-1"},
    ],
)
def test_bad_parameters_get_422(
    make_server: Make, client_for: ClientFor, params: dict[str, str]
) -> None:
    resp = client_for(make_server()).get("/api/v1/scans", params=params)
    assert resp.status_code == 422
    errors = resp.json()["errors"]
    assert isinstance(errors, list)
    assert errors
    assert all(isinstance(e, str) for e in errors)


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic c2ltLXRva2Vu", "sim-token"])
def test_auth_is_required(make_server: Make, authorization: str | None) -> None:
    server = make_server(backlog=5)
    headers = {} if authorization is None else {"Authorization": authorization}
    for path in (
        "/api/v1/scans",
        f"/api/v1/scans/{server.store.all_scans()[0].id}",
        "/api/v1/passes/x",
    ):
        resp = httpx.get(server.url + path, headers=headers)
        assert resp.status_code == 401
        assert resp.json() == {"errors": ["Unauthorized"]}


def test_same_seed_and_anchor_give_the_same_data(make_server: Make) -> None:
    anchor = 1_736_773_200_000
    a = make_server(backlog=50, seed=9, anchor_ms=anchor)
    b = make_server(backlog=50, seed=9, anchor_ms=anchor)
    c = make_server(backlog=50, seed=10, anchor_ms=anchor)
    assert [s.json for s in a.store.all_scans()] == [s.json for s in b.store.all_scans()]
    assert [r.json for r in a.store.world.readers] == [r.json for r in b.store.world.readers]
    assert [s.id for s in a.store.all_scans()] != [s.id for s in c.store.all_scans()]
    created = [s.created_ms for s in a.store.all_scans()]
    assert all(ms is not None and anchor - 3_600_000 <= ms <= anchor for ms in created)
