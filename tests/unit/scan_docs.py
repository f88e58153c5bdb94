"""Seeded random PassEntry scans, passes and readers as JSON:API documents, and the Avro
record each should become, written from the schema's field docs rather than from the
encoder.

``Generator`` makes pages the way PassEntry serves them (passes and readers shared by many
scans, sometimes missing from ``included``, optional attributes absent or null) with
awkward values: unicode, empty and long strings, times from year 1 to 9999 with and
without offsets, scans minted at the epoch or at the end of UUIDv7 time, passContent with
nested JSON. ``decoded`` runs a page through the bridge's own decoder, as the pipeline
does, and pairs each scan (as the encoder's input) with its expected record.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec

from bridge.enrich import Enriched
from bridge.passentry.pages import decode_page

__all__ = [
    "Case",
    "Generator",
    "avro_record",
    "created_ms",
    "decoded",
    "json_text",
    "with_pass_attrs",
    "with_reader_attrs",
    "with_scan_attrs",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_YEAR_1_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
_YEAR_10000_MS = 253_402_300_800_000  # the first millisecond a datetime cannot hold
_UUID7_MAX_MS = 2**48 - 1
_BARCODE_FIELDS = ("enabled", "type", "source", "value", "displayText")
_PASS_TEXT_FIELDS = (
    "extId",
    "passType",
    "status",
    "deviceType",
    "passTemplateUuid",
    "passTemplateName",
    "downloadUrl",
    "nfc",
)
_PASS_TIME_FIELDS = ("createdAt", "addedAt", "removedAt", "deactivatedAt")
_READER_FLAGS = (
    "loggedIn",
    "qrEnabled",
    "mifareClassicNfcEnabled",
    "scanEnabled",
    "redeemEnabled",
    "addPointsEnabled",
    "ndefTagScanningEnabled",
)
_TEXTS = (
    "",
    "a",
    "south-gate-1",
    "Zoë Ångström",
    "中文字符",
    "🎫 ticket 🎟️",
    "שלום",
    "tab\there, new\nline",
    'a "quote" and a \\ backslash',
    "\x00 and \x1f",
    "\u2028\u2029",
    "x" * 64,  # a length that needs two varint bytes
    "é" * 1000,
)
_ALPHABET = "abcXYZ019 -_./:ßøé中🎫\u0301"
# Floats whose shortest repr has no exponent: there both JSON writers agree on the text.
_FLOATS = (0.5, -2.25, 3.14, 100.0, 0.1, 1234.5678, -0.0)


def created_ms(scan_id: str) -> int:
    """The creation time in a UUIDv7: its first 48 bits (RFC 9562)."""
    return uuid.UUID(scan_id).int >> 80


def json_text(value: Any) -> str:
    """passContent's rule: strings as given, other JSON values as their (compact) JSON."""
    return (
        value
        if isinstance(value, str)
        else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    )


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def text(self) -> str:
        rng = self.rng
        if rng.random() < 0.5:
            return rng.choice(_TEXTS)
        return "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 40)))

    def uuid7(self, ms: int) -> str:
        rng = self.rng
        value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64)
        value |= (0b10 << 62) | rng.getrandbits(62)
        return str(uuid.UUID(int=value))

    def scan_ms(self) -> int:
        rng = self.rng
        return rng.choice(
            (0, 1, _UUID7_MAX_MS, rng.randrange(_YEAR_10000_MS), 1_736_773_200_000)
            if rng.random() < 0.2
            else (rng.randrange(1_600_000_000_000, 1_900_000_000_000),)
        )

    def iso_time(self) -> str | None:
        """An ISO-8601 time PassEntry could send: UTC with Z or +00:00, another offset, or
        no offset at all; seconds, milliseconds or microseconds; year 1 to year 9999."""
        rng = self.rng
        if rng.random() < 0.25:
            return None
        edge = rng.random() < 0.2
        if edge:
            us = rng.choice((_YEAR_1_MS * 1000, _YEAR_10000_MS * 1000 - 1, -1, -500, 0, 999))
        else:
            us = rng.randrange(
                (_YEAR_1_MS + 86_400_000) * 1000, (_YEAR_10000_MS - 86_400_000) * 1000
            )
        moment = _EPOCH + timedelta(microseconds=us)
        spec = rng.choice(("seconds", "milliseconds", "microseconds"))
        kind = rng.choice(("Z", "+00:00", "naive") if edge else ("Z", "+00:00", "naive", "offset"))
        if kind == "naive":
            return moment.replace(tzinfo=None).isoformat(timespec=spec)
        if kind == "offset":
            minutes = rng.choice((-14 * 60, -5 * 60 - 30, 60, 5 * 60 + 45, 14 * 60))
            moment = moment.astimezone(timezone(timedelta(minutes=minutes)))
        text = moment.isoformat(timespec=spec)
        return text.replace("+00:00", "Z") if kind == "Z" else text

    def json_value(self, depth: int = 0) -> Any:
        rng = self.rng
        kinds = ["str", "int", "bool", "null", "float"] + (["list", "dict"] if depth < 2 else [])
        kind = rng.choice(kinds)
        if kind == "str":
            return self.text()
        if kind == "int":
            return rng.choice(
                (0, -1, 42, -(2**63), 2**63 - 1, 2**70, rng.randrange(-(10**9), 10**9))
            )
        if kind == "bool":
            return rng.random() < 0.5
        if kind == "null":
            return None
        if kind == "float":
            return rng.choice(_FLOATS)
        if kind == "list":
            return [self.json_value(depth + 1) for _ in range(rng.randrange(0, 4))]
        return {self.text(): self.json_value(depth + 1) for _ in range(rng.randrange(0, 4))}

    def _maybe(self, attrs: dict[str, Any], name: str, value: Any) -> None:
        """Sets ``name`` to ``value``, to null, or leaves it out, at random."""
        roll = self.rng.random()
        if roll < 0.6:
            attrs[name] = value
        elif roll < 0.8:
            attrs[name] = None

    def pass_doc(self, pass_id: str) -> dict[str, Any]:
        rng = self.rng
        attrs: dict[str, Any] = {}
        for name in _PASS_TEXT_FIELDS:
            self._maybe(attrs, name, self.text())
        for name in _PASS_TIME_FIELDS:
            self._maybe(attrs, name, self.iso_time())
        barcode = {f: rng.choice((None, True, False)) for f in ("enabled", "displayText")}
        barcode |= {f: rng.choice((None, self.text())) for f in ("type", "source", "value")}
        self._maybe(attrs, "barcode", rng.choice(({}, barcode, {"enabled": None}, barcode)))
        content = {self.text(): self.json_value() for _ in range(rng.randrange(0, 6))}
        self._maybe(attrs, "passContent", content)
        return {"id": pass_id, "type": "pass", "attributes": attrs}

    def reader_doc(self, reader_id: str) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        self._maybe(attrs, "name", self.text())
        self._maybe(attrs, "readerType", self.text())
        for name in _READER_FLAGS:
            self._maybe(attrs, name, self.rng.random() < 0.5)
        self._maybe(attrs, "lastSeenAt", self.iso_time())
        return {"id": reader_id, "type": "reader", "attributes": attrs}

    def scan_doc(self, reader_id: str, pass_id: str | None) -> dict[str, Any]:
        rng = self.rng
        attrs: dict[str, Any] = {
            "scanType": self.text(),
            "validationType": self.text(),
            "status": self.text(),
        }
        self._maybe(attrs, "scanValue", self.text())
        self._maybe(attrs, "statusDetail", self.text())
        self._maybe(attrs, "scannedAt", self.iso_time())
        relationships: dict[str, Any] = {"reader": {"data": {"id": reader_id, "type": "reader"}}}
        if pass_id is not None:
            relationships["pass"] = {"data": {"id": pass_id, "type": "pass"}}
        elif rng.random() < 0.5:
            relationships["pass"] = {"data": None}
        return {
            "id": self.uuid7(self.scan_ms()),
            "type": "scan",
            "attributes": attrs,
            "relationships": relationships,
        }

    def page(
        self, size: int, passes: dict[str, dict[str, Any]], readers: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        """A page of ``size`` scans on the given passes and readers; about one in ten of
        those is left out of ``included``, as PassEntry sometimes does."""
        rng = self.rng
        scans = [
            self.scan_doc(
                rng.choice(list(readers)),
                rng.choice(list(passes)) if rng.random() < 0.8 else None,
            )
            for _ in range(size)
        ]
        used = {s["relationships"]["reader"]["data"]["id"] for s in scans}
        used |= {
            s["relationships"]["pass"]["data"]["id"]
            for s in scans
            if (s["relationships"].get("pass") or {}).get("data")
        }
        included = [
            doc
            for doc in (*passes.values(), *readers.values())
            if doc["id"] in used and rng.random() < 0.9
        ]
        return {"data": scans, "included": included}

    def world(
        self, n_passes: int = 30, n_readers: int = 12
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        passes = {}
        for n in range(n_passes):
            pass_id = f"pass-{n}-{self.text()}"
            passes[pass_id] = self.pass_doc(pass_id)
        readers = {}
        for n in range(n_readers):
            reader_id = f"reader-{n}-{self.text()}"
            readers[reader_id] = self.reader_doc(reader_id)
        return passes, readers


def _pass_record(doc: dict[str, Any]) -> dict[str, Any]:
    attrs = doc.get("attributes") or {}
    barcode = attrs.get("barcode") or {}
    content = attrs.get("passContent") or {}
    return {
        "id": doc["id"],
        **{name: attrs.get(name) for name in _PASS_TEXT_FIELDS},
        # "null when the pass has none (PassEntry's {} is published as null)"
        "barcode": (
            {f: barcode.get(f) for f in _BARCODE_FIELDS}
            if any(barcode.get(f) is not None for f in _BARCODE_FIELDS)
            else None
        ),
        "passContent": {key: json_text(value) for key, value in content.items()},
        **{name: _time(attrs.get(name)) for name in _PASS_TIME_FIELDS},
    }


def _reader_record(doc: dict[str, Any]) -> dict[str, Any]:
    attrs = doc.get("attributes") or {}
    return {
        "id": doc["id"],
        "name": attrs.get("name"),
        "readerType": attrs.get("readerType"),
        **{name: attrs.get(name) for name in _READER_FLAGS},
        "lastSeenAt": _time(attrs.get("lastSeenAt")),
    }


def avro_record(
    scan: dict[str, Any],
    pass_doc: dict[str, Any] | None,
    reader_doc: dict[str, Any] | None,
    source_id: str,
) -> dict[str, Any]:
    """The ``ScanEvent`` record for a scan document and its pass and reader documents (None
    where ``included`` lacks them), as the schema's field docs describe it."""
    attrs = scan["attributes"]
    rel = scan["relationships"]
    pass_rel = (rel.get("pass") or {}).get("data")
    return {
        "scanId": scan["id"],
        "createdAt": created_ms(scan["id"]),
        "scannedAt": _time(attrs.get("scannedAt")),
        "scanType": attrs["scanType"],
        "scanValue": attrs.get("scanValue"),
        "validationType": attrs["validationType"],
        "status": attrs["status"],
        "statusDetail": attrs.get("statusDetail"),
        "readerId": rel["reader"]["data"]["id"],
        "passId": None if pass_rel is None else pass_rel["id"],
        "sourceId": source_id,
        "pass": None if pass_doc is None else _pass_record(pass_doc),
        "reader": None if reader_doc is None else _reader_record(reader_doc),
    }


@dataclass(frozen=True)
class Case:
    """One scan as the encoder gets it, and the record it should encode."""

    item: Enriched
    record: dict[str, Any]


def decoded(page: dict[str, Any], source_id: str, url: str = "https://api.test/p") -> list[Case]:
    """Decode ``page`` with the bridge's page decoder and join each scan with its pass and
    reader from ``included`` (None where missing), as the enricher does."""
    body = json.dumps(page, ensure_ascii=False).encode()
    decoded_page = decode_page(body)
    assert not decoded_page.rejected, decoded_page.rejected
    docs = {d["id"]: d for d in page["included"]}
    cases = []
    for scan, doc in zip(decoded_page.scans, page["data"], strict=True):
        resource = scan.resource
        assert resource.id == doc["id"]
        pass_id, reader_id = resource.pass_id, resource.reader_id
        assert reader_id is not None
        found_pass = None if pass_id is None else decoded_page.passes.get(pass_id)
        found_reader = decoded_page.readers.get(reader_id)
        item = Enriched(scan, reader_id, found_pass, found_reader, url)
        record = avro_record(
            doc,
            None if found_pass is None else docs[found_pass.id],
            None if found_reader is None else docs[found_reader.id],
            source_id,
        )
        cases.append(Case(item, record))
    return cases


# Decoded values the JSON decoder never makes (a lone surrogate, say) are put in with these:
# a copy of the item with some attributes of its scan, pass or reader replaced.


def with_scan_attrs(item: Enriched, **changes: Any) -> Enriched:
    resource = item.scan.resource
    attrs = msgspec.structs.replace(resource.attributes, **changes)
    scan = msgspec.structs.replace(
        item.scan, resource=msgspec.structs.replace(resource, attributes=attrs)
    )
    return msgspec.structs.replace(item, scan=scan)


def with_pass_attrs(item: Enriched, **changes: Any) -> Enriched:
    assert item.pass_ is not None
    attrs = msgspec.structs.replace(item.pass_.attributes, **changes)
    return msgspec.structs.replace(
        item, pass_=msgspec.structs.replace(item.pass_, attributes=attrs)
    )


def with_reader_attrs(item: Enriched, **changes: Any) -> Enriched:
    assert item.reader is not None
    attrs = msgspec.structs.replace(item.reader.attributes, **changes)
    return msgspec.structs.replace(
        item, reader=msgspec.structs.replace(item.reader, attributes=attrs)
    )
