"""The bridge a capable user would write by hand: the comparator for ``cpu`` and ``backfill``.

Sequential httpx; the standard ``json`` module; enrichment from ``included`` with plain
dicts; one fastavro ``schemaless_writer`` call per record with the schema parsed once and
default union resolution (plain dicts and datetimes, fastavro picks the branch); produce
keyed by reader id, then flush once per page; an unbounded in-memory seen-set for dedup.
Same schema (and single-object framing), simulator and broker as the bridge. It stops at
the end of the backlog and prints ``{"published": N, "pages": P}``.

    python -m bench.naive --api-url URL --bootstrap HOST:PORT --topic T --since ISO
"""

from __future__ import annotations

import argparse
import io
import json
from datetime import datetime
from typing import Any

from confluent_kafka import Producer
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from bench._pages import add_source_args, client, get_page
from bench._procs import REPO

SCHEMA_PATH = REPO / "schemas" / "passentry_scan" / "v1.avsc"


def _ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def _pass_record(p: dict[str, Any] | None) -> dict[str, Any] | None:
    if p is None:
        return None
    a = p["attributes"]
    barcode = a.get("barcode") or None
    if barcode is not None:
        barcode = {
            "enabled": barcode.get("enabled"),
            "type": barcode.get("type"),
            "source": barcode.get("source"),
            "value": barcode.get("value"),
            "displayText": barcode.get("displayText"),
        }
    content = {
        k: v if isinstance(v, str) else json.dumps(v)
        for k, v in (a.get("passContent") or {}).items()
    }
    return {
        "id": p["id"],
        "extId": a.get("extId"),
        "passType": a.get("passType"),
        "status": a.get("status"),
        "deviceType": a.get("deviceType"),
        "passTemplateUuid": a.get("passTemplateUuid"),
        "passTemplateName": a.get("passTemplateName"),
        "downloadUrl": a.get("downloadUrl"),
        "nfc": a.get("nfc"),
        "barcode": barcode,
        "passContent": content,
        "createdAt": _ts(a.get("createdAt")),
        "addedAt": _ts(a.get("addedAt")),
        "removedAt": _ts(a.get("removedAt")),
        "deactivatedAt": _ts(a.get("deactivatedAt")),
    }


def _reader_record(r: dict[str, Any] | None) -> dict[str, Any] | None:
    if r is None:
        return None
    a = r["attributes"]
    return {
        "id": r["id"],
        "name": a.get("name"),
        "readerType": a.get("readerType"),
        "loggedIn": a.get("loggedIn"),
        "qrEnabled": a.get("qrEnabled"),
        "mifareClassicNfcEnabled": a.get("mifareClassicNfcEnabled"),
        "scanEnabled": a.get("scanEnabled"),
        "redeemEnabled": a.get("redeemEnabled"),
        "addPointsEnabled": a.get("addPointsEnabled"),
        "ndefTagScanningEnabled": a.get("ndefTagScanningEnabled"),
        "lastSeenAt": _ts(a.get("lastSeenAt")),
    }


def to_record(
    scan: dict[str, Any], included: dict[tuple[str, str], dict[str, Any]], source_id: str
) -> dict[str, Any]:
    a = scan["attributes"]
    rel = scan["relationships"]
    reader_id = rel["reader"]["data"]["id"]
    pass_ref = (rel.get("pass") or {}).get("data")
    pass_id = pass_ref["id"] if pass_ref else None
    return {
        "scanId": scan["id"],
        # UUIDv7: the first 48 bits are the creation time in Unix milliseconds.
        "createdAt": int(scan["id"].replace("-", "")[:12], 16),
        "scannedAt": _ts(a.get("scannedAt")),
        "scanType": a["scanType"],
        "scanValue": a.get("scanValue"),
        "validationType": a["validationType"],
        "status": a["status"],
        "statusDetail": a.get("statusDetail"),
        "readerId": reader_id,
        "passId": pass_id,
        "sourceId": source_id,
        "pass": _pass_record(included.get(("pass", pass_id))) if pass_id else None,
        "reader": _reader_record(included.get(("reader", reader_id))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_args(parser)
    parser.add_argument("--source-id", default="naive")
    args = parser.parse_args()

    with open(SCHEMA_PATH) as f:
        schema = parse_schema(json.load(f))
    # Single-object encoding: C3 01, then the CRC-64-AVRO fingerprint, little-endian.
    crc = fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    prefix = b"\xc3\x01" + bytes.fromhex(crc)
    producer = Producer(
        {"bootstrap.servers": args.bootstrap, "compression.type": "lz4", "acks": "all"}
    )
    seen: set[str] = set()
    published = pages = 0
    with client(args) as http:
        page, total_pages = 1, 1
        while page <= total_pages:
            body = json.loads(get_page(http, args, page).content)
            pages += 1
            total_pages = body["meta"]["totalPages"]
            included = {(i["type"], i["id"]): i for i in body.get("included") or ()}
            for scan in body["data"]:
                if scan["id"] in seen:
                    continue
                seen.add(scan["id"])
                record = to_record(scan, included, args.source_id)
                buf = io.BytesIO()
                schemaless_writer(buf, schema, record)
                producer.produce(
                    args.topic,
                    prefix + buf.getvalue(),
                    record["readerId"].encode(),
                    timestamp=record["createdAt"],
                )
                producer.poll(0)
                published += 1
            producer.flush()
            page += 1
    print(json.dumps({"published": published, "pages": pages}), flush=True)


if __name__ == "__main__":
    main()
