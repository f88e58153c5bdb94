"""A tiny in-memory PassEntry for pipeline unit tests, served through httpx.MockTransport.

It honours createdAfter/createdBefore (exclusive, on the id's time), perPage and page, lists
newest first, and calls ``on_request`` before answering so a test can add scans between
two page requests, as live traffic does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from bridge.uuid7 import UUIDv7Minter, uuid7_millis


def scan_doc(scan_id: str, reader: str = "gate-1", pass_id: str | None = "p-1") -> dict[str, Any]:
    return {
        "id": scan_id,
        "type": "scan",
        "attributes": {
            "scanType": "nfc",
            "scanValue": "v",
            "validationType": "internalValidation",
            "status": "successful",
            "statusDetail": None,
            "scannedAt": "2025-01-13T13:00:00Z",
        },
        "relationships": {
            "pass": {"data": None if pass_id is None else {"id": pass_id, "type": "pass"}},
            "reader": {"data": {"id": reader, "type": "reader"}},
        },
    }


def reader_doc(reader: str) -> dict[str, Any]:
    """A reader as a scans page includes it: every attribute (a webhook has two of them)."""
    return {
        "id": reader,
        "type": "reader",
        "attributes": {
            "name": f"Reader {reader}",
            "readerType": "PassentryReader",
            "loggedIn": True,
            "qrEnabled": True,
            "scanEnabled": True,
            "lastSeenAt": "2025-01-13T12:00:00Z",
        },
    }


def pass_doc(pass_id: str) -> dict[str, Any]:
    return {"id": pass_id, "type": "pass", "attributes": {"status": "active"}}


class FakeApi:
    def __init__(self, max_page: int | None = None, with_meta: bool = True) -> None:
        self.scans: list[tuple[int, dict[str, Any]]] = []  # (created ms, doc)
        self.minter = UUIDv7Minter()
        self.max_page = max_page
        self.with_meta = with_meta
        self.on_request: Callable[[FakeApi], None] | None = None
        self.requests: list[httpx.Request] = []
        self.include_passes = True
        self.include_readers = False
        # Passes PassEntry answers 404 for.
        self.missing_passes: set[str] = set()
        # Scans ``GET /api/v1/scans/{id}`` answers 404 for (not visible there yet), and how
        # many times in a row it answers 503 first.
        self.hidden_scans: set[str] = set()
        self.scan_outages = 0

    def add(self, at_ms: int, reader: str = "gate-1", pass_id: str | None = "p-1") -> str:
        value = UUIDv7Minter().mint(at_ms=at_ms) if at_ms else self.minter.mint()
        self.scans.append((uuid7_millis(value), scan_doc(str(value), reader, pass_id)))
        return str(value)

    def add_raw(self, at_ms: int, doc: dict[str, Any]) -> None:
        self.scans.append((at_ms, doc))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.on_request is not None:
            self.on_request(self)
        if request.url.path.startswith("/api/v1/passes/"):
            pid = request.url.path.rsplit("/", 1)[1]
            if pid in self.missing_passes:
                return httpx.Response(404, json={"errors": ["Pass not found"]})
            return httpx.Response(
                200, json={"data": {"id": pid, "type": "pass", "attributes": {"status": "fetched"}}}
            )
        if request.url.path.startswith("/api/v1/scans/"):
            return self._one_scan(request.url.path.rsplit("/", 1)[1])
        q = request.url.params
        after = _ms(q.get("createdAfter"))
        before = _ms(q.get("createdBefore"))
        rows = [
            d
            for t, d in sorted(self.scans, key=lambda x: x[1]["id"], reverse=True)
            if (after is None or t > after) and (before is None or t < before)
        ]
        per = int(q.get("perPage", "100"))
        if self.max_page is not None:
            per = min(per, self.max_page)
        page = int(q.get("page", "1"))
        chunk = rows[(page - 1) * per : page * per]
        total_pages = max(1, -(-len(rows) // per))
        included: list[dict[str, Any]] = []
        if self.include_passes:
            seen = set()
            for d in chunk:
                rel = d["relationships"]["pass"]["data"]
                if rel and rel["id"] not in seen:
                    seen.add(rel["id"])
                    included.append(pass_doc(rel["id"]))
        if self.include_readers:
            for reader in sorted({d["relationships"]["reader"]["data"]["id"] for d in chunk}):
                included.append(reader_doc(reader))
        body: dict[str, Any] = {"data": chunk, "included": included}
        if self.with_meta:
            body["meta"] = {
                "totalCount": len(rows),
                "currentPage": page,
                "totalPages": total_pages,
                "resultsPerPage": per,
            }
            body["links"] = {"next": None if page >= total_pages else f"https://x/?page={page + 1}"}
        return httpx.Response(200, content=json.dumps(body).encode())

    def _one_scan(self, scan_id: str) -> httpx.Response:
        """``GET /api/v1/scans/{id}``: the scan, its pass, and its reader in full."""
        if self.scan_outages > 0:
            self.scan_outages -= 1
            return httpx.Response(503, json={"errors": ["Service Unavailable"]})
        doc = next((d for _, d in self.scans if d["id"] == scan_id), None)
        if doc is None or scan_id in self.hidden_scans:
            return httpx.Response(404, json={"errors": ["Not Found"]})
        rel = doc["relationships"]
        included = [pass_doc(rel["pass"]["data"]["id"])] if rel["pass"]["data"] else []
        included.append(reader_doc(rel["reader"]["data"]["id"]))
        return httpx.Response(200, json={"data": doc, "included": included})


def _ms(text: str | None) -> int | None:
    if text is None:
        return None
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
