"""The simulator speaks the documented API: its answers decode with the bridge's models."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bridge.passentry.models import (
    PageEnvelope,
    PassDocument,
    PassResource,
    ReaderResource,
    ResourceHead,
    ScanResource,
)
from passentry_simulator import SimulatorServer

EXAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "passentry_get_scans_example.json"


def _decode_page(body: bytes) -> tuple[PageEnvelope, list[ScanResource], list[Any]]:
    page = msgspec.json.decode(body, type=PageEnvelope)
    scans = [msgspec.json.decode(raw, type=ScanResource) for raw in page.data]
    included: list[Any] = []
    for raw in page.included or []:
        head = msgspec.json.decode(raw, type=ResourceHead)
        model = PassResource if head.type == "pass" else ReaderResource
        included.append(msgspec.json.decode(raw, type=model))
    return page, scans, included


def test_documented_example_decodes() -> None:
    page, scans, included = _decode_page(EXAMPLE.read_bytes())
    assert next(s.id for s in scans) == "0194d6a9-95b7-72dc-87fc-ecaed8c0b520"
    assert scans[0].pass_id == "7882e98b-0eba-4625-9223-5221eb8dad7f"
    assert scans[0].reader_id == "south-gate-1"
    assert {type(i) for i in included} == {PassResource, ReaderResource}
    assert page.meta is not None
    assert page.meta.total_pages == 1


def test_simulator_page_has_the_documented_shape(
    make_server: Callable[..., SimulatorServer], client_for: Callable[..., httpx.Client]
) -> None:
    server = make_server(backlog=300)
    resp = client_for(server).get("/api/v1/scans", params={"perPage": 50})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    page, scans, included = _decode_page(resp.content)
    assert len(scans) == 50
    assert all(s.type == "scan" for s in scans)
    # Every referenced pass and reader is included, and only once.
    heads = [("pass" if isinstance(i, PassResource) else "reader", i.id) for i in included]
    assert len(heads) == len(set(heads))
    wanted = {("reader", s.reader_id) for s in scans} | {
        ("pass", s.pass_id) for s in scans if s.pass_id is not None
    }
    assert set(heads) == wanted
    # Same key set as the documented example, for data, meta and links.
    example = json.loads(EXAMPLE.read_text())
    body = resp.json()
    assert set(body) == set(example)
    assert set(body["meta"]) == set(example["meta"])
    assert set(body["links"]) == set(example["links"])
    assert set(body["data"][0]["attributes"]) == set(example["data"][0]["attributes"])
    assert page.meta is not None
    assert (page.meta.total_count, page.meta.total_pages, page.meta.current_page) == (300, 6, 1)
    assert page.meta.successful_scans + page.meta.failed_scans == 300  # type: ignore[operator]


def test_all_documented_pass_and_reader_attributes_present(
    make_server: Callable[..., SimulatorServer], client_for: Callable[..., httpx.Client]
) -> None:
    server = make_server(backlog=100)
    body = client_for(server).get("/api/v1/scans").json()
    pass_attrs = {
        "downloadUrl", "passType", "deviceType", "createdAt", "status", "extId",
        "passTemplateUuid", "passTemplateName", "nfc", "barcode", "passContent",
        "addedAt", "removedAt", "deactivatedAt",
    }  # fmt: skip
    reader_attrs = {
        "name", "readerType", "loggedIn", "qrEnabled", "mifareClassicNfcEnabled",
        "scanEnabled", "redeemEnabled", "addPointsEnabled", "ndefTagScanningEnabled",
        "lastSeenAt",
    }  # fmt: skip
    for item in body["included"]:
        assert set(item["attributes"]) == (pass_attrs if item["type"] == "pass" else reader_attrs)
    barcodes = {
        json.dumps(i["attributes"]["barcode"]) for i in body["included"] if i["type"] == "pass"
    }
    assert "null" in barcodes
    assert "{}" in barcodes
    assert len(barcodes) > 2
    # Some externally validated scans carry no pass at all: relationship data is null.
    assert any(d["relationships"]["pass"]["data"] is None for d in body["data"])


def test_single_scan_and_pass_endpoints(
    make_server: Callable[..., SimulatorServer], client_for: Callable[..., httpx.Client]
) -> None:
    server = make_server(backlog=20)
    client = client_for(server)
    scan = next(s for s in server.store.all_scans() if s.spec.pass_ is not None)
    resp = client.get(f"/api/v1/scans/{scan.id}")
    assert resp.status_code == 200
    body = msgspec.json.decode(resp.content)
    assert msgspec.convert(body["data"], ScanResource).id == scan.id
    assert {i["type"] for i in body["included"]} == {"pass", "reader"}
    assert client.get("/api/v1/scans/nope").json() == {"errors": ["Not Found"]}
    assert client.get("/api/v1/scans/nope").status_code == 404

    pass_ = scan.spec.pass_
    assert pass_ is not None
    for key in (pass_.id, pass_.ext_id):
        doc = msgspec.json.decode(client.get(f"/api/v1/passes/{key}").content, type=PassDocument)
        assert doc.data.id == pass_.id
        assert doc.data.attributes.ext_id == pass_.ext_id
    assert client.get("/api/v1/passes/unknown").status_code == 404


def test_post_scan_validates_internally(
    make_server: Callable[..., SimulatorServer], client_for: Callable[..., httpx.Client]
) -> None:
    server = make_server()
    client = client_for(server)
    world = server.store.world
    reader = world.readers[0]
    active = next(p for p in world.passes if p.status == "active")
    inactive = next(p for p in world.passes if p.status != "active")
    ok = client.post(
        "/api/v1/scans",
        json={"scan": {"readerId": reader.id, "passId": active.ext_id, "scanType": "nfc"}},
    ).json()
    assert ok["validationResponse"]["status"] == "successful"
    assert ok["validationResponse"]["statusDetail"] is None
    assert "message" in ok["validationResponse"]["readerInstructions"]
    info = ok["scanInfo"]
    assert info["validationType"] == "internalValidation"
    assert (info["passId"], info["passExtId"], info["readerId"]) == (
        active.id,
        active.ext_id,
        reader.id,
    )
    bad = client.post(
        "/api/v1/scans",
        json={"scan": {"readerId": reader.id, "passId": inactive.id, "scanType": "barcode"}},
    ).json()
    assert bad["validationResponse"]["statusDetail"] == "Pass is not active"
    assert bad["scanInfo"]["status"] == "failed"
    # Both are real scans now: listed, newest first, with UUIDv7 ids.
    listed = client.get("/api/v1/scans").json()["data"]
    assert [d["id"] for d in listed] == [bad["scanInfo"]["scanId"], info["scanId"]]

    assert client.post("/api/v1/scans", json={"scan": {"readerId": reader.id}}).status_code == 422
    unknown = {"readerId": "gate-999", "passId": active.id, "scanType": "nfc"}
    assert client.post("/api/v1/scans", json={"scan": unknown}).status_code == 404
    assert client.post("/api/v1/scans", content=b"not json").json()["errors"]


def test_post_scan_log_records_external_validation(
    make_server: Callable[..., SimulatorServer], client_for: Callable[..., httpx.Client]
) -> None:
    server = make_server()
    client = client_for(server)
    reader = server.store.world.readers[1]
    body = {"readerId": reader.id, "scanType": "barcode", "status": "failed",
            "statusDetail": "Ticket already used", "scanValue": "QR-123"}  # fmt: skip
    info = client.post("/api/v1/scans/log", json={"scan": body}).json()["scanInfo"]
    assert info["validationType"] == "externalValidation"
    assert (info["status"], info["statusDetail"], info["passId"]) == (
        "failed",
        "Ticket already used",
        None,
    )
    listed = client.get("/api/v1/scans").json()
    assert listed["data"][0]["relationships"]["pass"]["data"] is None
    assert listed["included"] == [json.loads(reader.json)]
    assert (
        client.post("/api/v1/scans/log", json={"scan": {**body, "status": "meh"}}).status_code
        == 422
    )
