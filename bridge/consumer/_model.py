"""The scan as typed data: what ``bridge.consumer`` yields instead of Avro dicts.

Field names are the schema's, in snake case (``scanId`` is ``scan_id``); ``pass`` is
``pass_`` (a Python keyword). Times are aware UTC datetimes. Fields the reader schema has
and these classes do not (a newer schema's) are kept in ``Scan.extra``, so a consumer that
reads with a newer schema loses nothing before its dataclasses catch up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

__all__ = ["Barcode", "Pass", "Reader", "Scan", "ScanRecord", "scan_from_avro"]


@dataclass(frozen=True, slots=True)
class Barcode:
    enabled: bool | None
    type: str | None
    source: str | None
    value: str | None
    display_text: bool | None


@dataclass(frozen=True, slots=True)
class Pass:
    id: str
    ext_id: str | None
    pass_type: str | None
    status: str | None
    device_type: str | None
    pass_template_uuid: str | None
    pass_template_name: str | None
    download_url: str | None
    nfc: str | None
    barcode: Barcode | None
    pass_content: Mapping[str, str]
    created_at: datetime | None
    added_at: datetime | None
    removed_at: datetime | None
    deactivated_at: datetime | None


@dataclass(frozen=True, slots=True)
class Reader:
    id: str
    name: str | None
    reader_type: str | None
    logged_in: bool | None
    qr_enabled: bool | None
    mifare_classic_nfc_enabled: bool | None
    scan_enabled: bool | None
    redeem_enabled: bool | None
    add_points_enabled: bool | None
    ndef_tag_scanning_enabled: bool | None
    last_seen_at: datetime | None


@dataclass(frozen=True, slots=True)
class Scan:
    """One PassEntry scan (``com.passentry.bridge.v1.ScanEvent``)."""

    scan_id: str
    created_at: datetime
    scanned_at: datetime | None
    scan_type: str
    scan_value: str | None
    validation_type: str
    status: str
    status_detail: str | None
    reader_id: str
    pass_id: str | None
    source_id: str
    pass_: Pass | None
    reader: Reader | None
    # Top-level fields of the reader schema that this class does not name, by Avro name.
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class ScanRecord:
    """A scan with where it was read from."""

    scan: Scan
    topic: str
    partition: int
    offset: int
    # The Kafka timestamp: when the bridge published the record (not when the scan was
    # created: that is ``scan.created_at``).
    published_at: datetime
    # The record's headers as text: the CloudEvents attributes (ce_id, ce_source, ce_type,
    # ce_time, ce_dataschema), content-type, scan-id, source-id, schema-version.
    headers: Mapping[str, str]


_SCAN_FIELDS = frozenset(
    {
        "scanId",
        "createdAt",
        "scannedAt",
        "scanType",
        "scanValue",
        "validationType",
        "status",
        "statusDetail",
        "readerId",
        "passId",
        "sourceId",
        "pass",
        "reader",
    }
)


def scan_from_avro(value: Mapping[str, Any]) -> Scan:
    """A decoded ``ScanEvent`` (fastavro's dict, logical types applied) as a Scan."""
    extra = {k: v for k, v in value.items() if k not in _SCAN_FIELDS}
    return Scan(
        scan_id=str(value["scanId"]),
        created_at=value["createdAt"],
        scanned_at=value["scannedAt"],
        scan_type=value["scanType"],
        scan_value=value["scanValue"],
        validation_type=value["validationType"],
        status=value["status"],
        status_detail=value["statusDetail"],
        reader_id=value["readerId"],
        pass_id=value["passId"],
        source_id=value["sourceId"],
        pass_=_pass(value["pass"]),
        reader=_reader(value["reader"]),
        extra=MappingProxyType(extra),
    )


def _pass(value: Mapping[str, Any] | None) -> Pass | None:
    if value is None:
        return None
    barcode = value["barcode"]
    return Pass(
        id=value["id"],
        ext_id=value["extId"],
        pass_type=value["passType"],
        status=value["status"],
        device_type=value["deviceType"],
        pass_template_uuid=value["passTemplateUuid"],
        pass_template_name=value["passTemplateName"],
        download_url=value["downloadUrl"],
        nfc=value["nfc"],
        barcode=None
        if barcode is None
        else Barcode(
            enabled=barcode["enabled"],
            type=barcode["type"],
            source=barcode["source"],
            value=barcode["value"],
            display_text=barcode["displayText"],
        ),
        pass_content=MappingProxyType(dict(value["passContent"])),
        created_at=value["createdAt"],
        added_at=value["addedAt"],
        removed_at=value["removedAt"],
        deactivated_at=value["deactivatedAt"],
    )


def _reader(value: Mapping[str, Any] | None) -> Reader | None:
    if value is None:
        return None
    return Reader(
        id=value["id"],
        name=value["name"],
        reader_type=value["readerType"],
        logged_in=value["loggedIn"],
        qr_enabled=value["qrEnabled"],
        mifare_classic_nfc_enabled=value["mifareClassicNfcEnabled"],
        scan_enabled=value["scanEnabled"],
        redeem_enabled=value["redeemEnabled"],
        add_points_enabled=value["addPointsEnabled"],
        ndef_tag_scanning_enabled=value["ndefTagScanningEnabled"],
        last_seen_at=value["lastSeenAt"],
    )
