"""Encode enriched scans as Avro bodies against the versioned schema.

Avro binary is concatenative: a record is its fields' encodings back to back. So the pass
and reader sub-records, shared by many scans of a page, are encoded once and their bytes
reused (the pass record natively, the reader's by fastavro), and the flat top-level fields
are written directly: by ``bridge.avro.wire``'s primitives on the per-scan path, by
``bridge/avro/_scanbody.c`` on the fast path, and the tests hold the two to the same bytes.
What goes before the body on the wire is the framing's business (``bridge.avro.framing``).
"""

from __future__ import annotations

import io
import threading
import weakref
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from fastavro import parse_schema, schemaless_writer

from bridge.avro._scanbody import write_pass
from bridge.avro.schemas import VersionedSchema
from bridge.avro.wire import (
    BRANCH_1,
    NULL,
    long_bytes,
    opt_bool,
    opt_long,
    opt_str,
    str_bytes,
)
from bridge.enrich import Enriched
from bridge.passentry.models import Barcode, PassResource, ReaderResource

__all__ = ["HEAD_FIELDS", "Encoder", "to_millis", "type_shape"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# As many as the client's memo of included items holds.
_OBJECTS_MAX = 4096

# The top-level fields this module writes by hand, in schema order, with the shape of the
# Avro type each writer in ``_body`` produces (logical types aside). A schema version that
# renames a field or changes its type must change the writer with it.
HEAD_FIELDS: tuple[tuple[str, str], ...] = (
    ("scanId", "string"),
    ("createdAt", "long"),
    ("scannedAt", "null|long"),
    ("scanType", "string"),
    ("scanValue", "null|string"),
    ("validationType", "string"),
    ("status", "string"),
    ("statusDetail", "null|string"),
    ("readerId", "string"),
    ("passId", "null|string"),
    ("sourceId", "string"),
    ("pass", "null|record"),
    ("reader", "null|record"),
)


# The pass record's fields, which ``bridge/avro/_scanbody.c`` writes in this order. Where
# each holder scans once (an event's gates) nearly every scan brings a pass the encoder has
# not seen: fastavro took 17-28 µs to write one (it resolves each union by validating the
# value), Python by hand 7, the native writer under 1. The reader record, a few per site,
# stays with fastavro.
PASS_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "string"),
    ("extId", "null|string"),
    ("passType", "null|string"),
    ("status", "null|string"),
    ("deviceType", "null|string"),
    ("passTemplateUuid", "null|string"),
    ("passTemplateName", "null|string"),
    ("downloadUrl", "null|string"),
    ("nfc", "null|string"),
    ("barcode", "null|record"),
    ("passContent", "map"),
    ("createdAt", "null|long"),
    ("addedAt", "null|long"),
    ("removedAt", "null|long"),
    ("deactivatedAt", "null|long"),
)
BARCODE_FIELDS: tuple[tuple[str, str], ...] = (
    ("enabled", "null|boolean"),
    ("type", "null|string"),
    ("source", "null|string"),
    ("value", "null|string"),
    ("displayText", "null|boolean"),
)


def type_shape(avro_type: Any) -> str:
    """``"null|long"`` for ``["null", {"type": "long", "logicalType": ...}]``: the branches'
    base types, which decide the bytes the hand-written fields produce."""
    if isinstance(avro_type, list):
        return "|".join(type_shape(branch) for branch in avro_type)
    if isinstance(avro_type, dict):
        return type_shape(avro_type["type"])
    return str(avro_type)


def to_millis(value: datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:  # PassEntry documents UTC; a bare time is read as UTC
        value = value.replace(tzinfo=UTC)
    elif value.tzinfo is not UTC:
        # Raises OverflowError when the UTC date leaves year 1..9999 (year 1 at +14:00):
        # Avro readers cannot decode such a time, so the item is dead-lettered instead.
        value = value.astimezone(UTC)
    return (value - _EPOCH) // _MS


class _Encoded:
    """Avro bytes by resource id, for the encoders of one schema: at most as many as their
    shares add up to, the oldest first out (in O(1): with more distinct passes than it
    holds, an event's attendees, every new pass evicts one)."""

    def __init__(self) -> None:
        self.objects: OrderedDict[int, tuple[PassResource | ReaderResource, bytes]] = OrderedDict()
        self._bound = 0
        self._lock = threading.Lock()

    def keep(
        self, resource: PassResource | ReaderResource, value: bytes
    ) -> tuple[PassResource | ReaderResource, bytes]:
        with self._lock:
            objects = self.objects
            while objects and len(objects) >= self._bound:
                objects.popitem(last=False)
            known = objects[id(resource)] = (resource, value)
        return known

    def resize(self, by: int) -> None:
        with self._lock:
            self._bound = max(0, self._bound + by)
            while len(self.objects) > self._bound:
                self.objects.popitem(last=False)


_encoded: dict[str, _Encoded] = {}
_encoded_lock = threading.Lock()


def _encoded_for(schema: VersionedSchema) -> _Encoded:
    # By the Parsing Canonical Form: it decides the bytes, whatever the schema's version.
    with _encoded_lock:
        return _encoded.setdefault(schema.canonical, _Encoded())


class Encoder:
    def __init__(self, schema: VersionedSchema, source_id: str) -> None:
        fields = _shapes(schema.definition)
        if fields != HEAD_FIELDS:
            raise ValueError(
                f"schema {schema.name} v{schema.version} fields {list(fields)} do not match the"
                f" encoder's {list(HEAD_FIELDS)}; update bridge/avro/encoder.py with the schema"
            )
        _check_pass_record(schema)
        self.schema = schema
        # The ``sourceId`` field's bytes.
        self.source = str_bytes(source_id)
        self._reader_schema = parse_schema(_branch(schema.definition, "reader"))
        # Readers repeat across pages, but each page decodes them anew: remember their Avro
        # bytes by their JSON, which is cheap to make (beside fastavro) and exact as a key.
        # A pass is written anew instead: its JSON key cost more than the native writer.
        self._seen: OrderedDict[bytes, bytes] = OrderedDict()
        self._seen_max = 20_000
        # The fast path's: Avro bytes by the resource object itself (the client's memo
        # hands out one object per distinct JSON), kept with it so its id stays its own.
        # bridge/kafka/_scanrecord.c reads it; pass_bytes and reader_bytes fill it. Shared
        # by the process's encoders of this schema: the memo is the process's too, so a pass
        # one source encoded is known to the others. This encoder's share of its bound is
        # given back when it is collected.
        self._encoded = _encoded_for(schema)
        self.objects = self._encoded.objects
        self._encoded.resize(_OBJECTS_MAX)
        weakref.finalize(self, self._encoded.resize, -_OBJECTS_MAX)

    def encode(self, items: list[Enriched]) -> list[bytes | Exception]:
        """Avro bodies for ``items``, in order, without a framing prefix; an item that cannot
        be encoded (a lone surrogate in a string, a timestamp out of range) gets its
        exception instead."""
        source = self.source
        passes: dict[int, bytes] = {}
        readers: dict[int, bytes] = {}
        out: list[bytes | Exception] = []
        for item in items:
            p = item.pass_
            r = item.reader
            try:
                if p is None:
                    pass_bytes = NULL
                else:
                    pass_bytes = passes.get(id(p)) or passes.setdefault(id(p), _pass(p))
                if r is None:
                    reader_bytes = NULL
                else:
                    reader_bytes = readers.get(id(r)) or readers.setdefault(
                        id(r), self._remembered_reader(r)
                    )
                out.append(self._body(source, item, pass_bytes, reader_bytes))
            except (ValueError, TypeError, OverflowError) as exc:
                out.append(exc)
        return out

    def _body(self, source: bytes, item: Enriched, pass_bytes: bytes, reader_bytes: bytes) -> bytes:
        scan = item.scan
        attrs = scan.resource.attributes
        return b"".join(
            (
                str_bytes(scan.resource.id),
                long_bytes(scan.created_ms),
                opt_long(to_millis(attrs.scanned_at)),
                str_bytes(attrs.scan_type),
                opt_str(attrs.scan_value),
                str_bytes(attrs.validation_type),
                str_bytes(attrs.status),
                opt_str(attrs.status_detail),
                str_bytes(item.reader_id),
                opt_str(scan.resource.pass_id),
                source,
                pass_bytes,
                reader_bytes,
            )
        )

    def pass_bytes(self, p: PassResource) -> bytes:
        """The ``pass`` union's bytes for ``p`` (raises, caching nothing, if it cannot be
        encoded)."""
        known = self.objects.get(id(p))
        if known is None:
            known = self._keep(p, _pass(p))
        return known[1]

    def reader_bytes(self, r: ReaderResource) -> bytes:
        known = self.objects.get(id(r))
        if known is None:
            known = self._keep(r, self._remembered_reader(r))
        return known[1]

    def _keep(
        self, resource: PassResource | ReaderResource, value: bytes
    ) -> tuple[PassResource | ReaderResource, bytes]:
        return self._encoded.keep(resource, value)

    def _remembered_reader(self, r: ReaderResource) -> bytes:
        key = _json(r)
        value = self._seen.get(key)
        if value is None:
            value = self._seen[key] = self._reader(r)
            if len(self._seen) > self._seen_max:
                self._seen.popitem(last=False)
        return value

    def _reader(self, r: ReaderResource) -> bytes:
        a = r.attributes
        record = {
            "id": r.id,
            "name": a.name,
            "readerType": a.reader_type,
            "loggedIn": a.logged_in,
            "qrEnabled": a.qr_enabled,
            "mifareClassicNfcEnabled": a.mifare_classic_nfc_enabled,
            "scanEnabled": a.scan_enabled,
            "redeemEnabled": a.redeem_enabled,
            "addPointsEnabled": a.add_points_enabled,
            "ndefTagScanningEnabled": a.ndef_tag_scanning_enabled,
            "lastSeenAt": to_millis(a.last_seen_at),
        }
        return BRANCH_1 + _write(self._reader_schema, record)


_json = msgspec.json.Encoder().encode


def _shapes(record: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Each field of ``record``, in order: its name and :func:`type_shape`."""
    return tuple((f["name"], type_shape(f["type"])) for f in record["fields"])


def _check_pass_record(schema: VersionedSchema) -> None:
    record = _branch(schema.definition, "pass")
    fields = _shapes(record)
    # Only a pass record of the expected shape has the barcode record to look into.
    barcode_fields = _shapes(_branch(record, "barcode")) if fields == PASS_FIELDS else ()
    if fields != PASS_FIELDS or barcode_fields != BARCODE_FIELDS:
        raise ValueError(
            f"schema {schema.name} v{schema.version}: the pass record's fields"
            f" {list(fields)} (barcode {list(barcode_fields)}) do not match the encoder's"
            f" {list(PASS_FIELDS)} (barcode {list(BARCODE_FIELDS)}); update"
            " bridge/avro/encoder.py with the schema"
        )


def _pass(p: PassResource) -> bytes:
    a = p.attributes
    return write_pass(
        p.id,
        a.ext_id,
        a.pass_type,
        a.status,
        a.device_type,
        a.pass_template_uuid,
        a.pass_template_name,
        a.download_url,
        a.nfc,
        _barcode(a.barcode),
        a.pass_content,
        a.created_at,
        a.added_at,
        a.removed_at,
        a.deactivated_at,
        _stringify,
        to_millis,
    )


def _barcode(b: Barcode | None) -> bytes:
    # PassEntry's {} (every field absent) is published as null, as the schema says.
    if b is None or b == _NO_BARCODE:
        return NULL
    return b"".join(
        (
            BRANCH_1,
            opt_bool(b.enabled),
            opt_str(b.type),
            opt_str(b.source),
            opt_str(b.value),
            opt_bool(b.display_text),
        )
    )


_NO_BARCODE = Barcode()


def _stringify(value: Any) -> str:
    # A passContent value that is not a string (PassEntry's content is free-form JSON) is
    # published as its JSON text: the schema's map holds strings.
    return msgspec.json.encode(value).decode()


def _write(schema: Any, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, schema, record)
    return buf.getvalue()


def _branch(definition: dict[str, Any], field: str) -> dict[str, Any]:
    for f in definition["fields"]:
        if f["name"] == field:
            branches = [b for b in f["type"] if b != "null"]
            record: dict[str, Any] = dict(branches[0])
            record.setdefault("namespace", definition.get("namespace"))
            return record
    raise ValueError(f"schema has no field {field!r}")
