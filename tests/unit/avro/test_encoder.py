"""The hand-written Avro encoder against fastavro: for every record, the same bytes as
``fastavro.schemaless_writer`` with the full parsed schema, and an exception for the item
(never a record) wherever fastavro refuses the record; and a schema whose top-level fields
differ from what the encoder writes, in name, type or order, is refused at start-up."""

from __future__ import annotations

import gc
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import fastavro
import msgspec
import pytest

from bridge.avro.encoder import Encoder
from bridge.avro.schemas import VersionedSchema
from tests.unit.scan_docs import (
    Case,
    Generator,
    decoded,
    with_pass_attrs,
    with_reader_attrs,
    with_scan_attrs,
)

SOURCE = "src-Ø-1"
LONE_SURROGATE = "gate \ud800 one"
# Changes a schema's top-level field list in place (fixture ``changed_schema``).
SchemaChange = Callable[[list[dict[str, Any]]], None]


def fastavro_bytes(schema: VersionedSchema, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema.parsed, record)
    return buf.getvalue()


def assert_same_as_fastavro(
    schema: VersionedSchema, cases: list[Case], out: list[bytes | Exception]
) -> None:
    assert len(out) == len(cases)
    for n, (case, body) in enumerate(zip(cases, out, strict=True)):
        assert not isinstance(body, Exception), (n, body, case.record)
        assert body == fastavro_bytes(schema, case.record), (n, case.record)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bytes_equal_fastavros_for_generated_scans(seed: int, scan_schema: VersionedSchema) -> None:
    gen = Generator(seed)
    passes, readers = gen.world()
    encoder = Encoder(scan_schema, SOURCE)  # one encoder across pages, as in production
    total = 0
    for _ in range(8):
        cases = decoded(gen.page(gen.rng.randrange(1, 120), passes, readers), SOURCE)
        assert_same_as_fastavro(scan_schema, cases, encoder.encode([c.item for c in cases]))
        total += len(cases)
        # Passes and readers change state between pages under the same id: nothing
        # remembered from an earlier page may stand in for the new one.
        for pass_id in gen.rng.sample(sorted(passes), 10):
            passes[pass_id] = gen.pass_doc(pass_id)
        for reader_id in gen.rng.sample(sorted(readers), 4):
            readers[reader_id] = gen.reader_doc(reader_id)
    assert total > 300


def test_the_generated_records_cover_the_awkward_cases() -> None:
    """A guard on the generator itself: the comparison above covers what it claims to."""
    gen = Generator(1)
    passes, readers = gen.world()
    records = [c.record for _ in range(8) for c in decoded(gen.page(100, passes, readers), "s")]
    scanned = [r["scannedAt"] for r in records if r["scannedAt"] is not None]
    assert any(r["pass"] is None for r in records)
    assert any(r["pass"] is not None and r["pass"]["barcode"] is None for r in records)
    assert any(r["pass"] is not None and r["pass"]["barcode"] is not None for r in records)
    assert any(r["reader"] is None for r in records)
    assert any(r["passId"] is not None and r["pass"] is None for r in records)
    assert any(r["scanValue"] is None for r in records)
    assert any(r["scanType"] == "" for r in records)
    assert any(any(ord(ch) > 0xFFFF for ch in r["readerId"]) for r in records)
    assert any(len(r["scanType"].encode()) >= 64 for r in records)
    assert any(t.tzinfo is None for t in scanned)
    assert any(t.tzinfo is not None and t.utcoffset() != timedelta(0) for t in scanned)
    assert any(t < datetime(1970, 1, 1, tzinfo=t.tzinfo) for t in scanned)
    assert any(t.year == 1 for t in scanned)
    assert any(t.year == 9999 for t in scanned)
    assert any(r["createdAt"] == 0 for r in records)
    assert any(r["createdAt"] == 2**48 - 1 for r in records)
    content = [v for r in records if r["pass"] for v in r["pass"]["passContent"].values()]
    assert any(v.startswith(("{", "[")) for v in content)
    assert any(v in ("true", "false", "null") for v in content)


# Where a hostile value goes: the encoder's input changed, and the record changed the same way.
Change = Callable[[Case, Any], Case]


def _scan_field(attr: str, field: str) -> Change:
    def change(case: Case, value: Any) -> Case:
        return Case(with_scan_attrs(case.item, **{attr: value}), {**case.record, field: value})

    return change


def _pass_field(attr: str, field: str) -> Change:
    def change(case: Case, value: Any) -> Case:
        record = {**case.record, "pass": {**case.record["pass"], field: value}}
        return Case(with_pass_attrs(case.item, **{attr: value}), record)

    return change


def _reader_field(attr: str, field: str) -> Change:
    def change(case: Case, value: Any) -> Case:
        record = {**case.record, "reader": {**case.record["reader"], field: value}}
        return Case(with_reader_attrs(case.item, **{attr: value}), record)

    return change


def _reader_id(case: Case, value: Any) -> Case:
    return Case(
        msgspec.structs.replace(case.item, reader_id=value), {**case.record, "readerId": value}
    )


def _pass_content_key(case: Case, value: Any) -> Case:
    record = {**case.record, "pass": {**case.record["pass"], "passContent": {value: "v"}}}
    return Case(with_pass_attrs(case.item, pass_content={value: "v"}), record)


def _pass_content_value(case: Case, value: Any) -> Case:
    record = {**case.record, "pass": {**case.record["pass"], "passContent": {"k": value}}}
    return Case(with_pass_attrs(case.item, pass_content={"k": value}), record)


STRING_PLACES: dict[str, Change] = {
    "scanType": _scan_field("scan_type", "scanType"),
    "scanValue": _scan_field("scan_value", "scanValue"),
    "statusDetail": _scan_field("status_detail", "statusDetail"),
    "readerId": _reader_id,
    "pass.extId": _pass_field("ext_id", "extId"),
    "pass.passContent key": _pass_content_key,
    "pass.passContent value": _pass_content_value,
    "reader.name": _reader_field("name", "name"),
}
TIME_PLACES: dict[str, Change] = {
    "scannedAt": _scan_field("scanned_at", "scannedAt"),
    "pass.createdAt": _pass_field("created_at", "createdAt"),
    "reader.lastSeenAt": _reader_field("last_seen_at", "lastSeenAt"),
}


def full_cases(seed: int = 7, n: int = 12) -> list[Case]:
    """Scans that all have a pass and a reader, sharing them (so a change to one item's
    pass must not leak into its neighbours' bytes)."""
    gen = Generator(seed)
    passes, readers = gen.world(n_passes=3, n_readers=2)
    cases: list[Case] = []
    while len(cases) < n:
        page = gen.page(40, passes, readers)
        page["included"] = [*passes.values(), *readers.values()]
        cases += [c for c in decoded(page, SOURCE) if c.record["pass"] is not None]
    return cases[:n]


def encode_with(
    scan_schema: VersionedSchema, place: Change, value: Any, at: int = 5
) -> tuple[list[Case], list[bytes | Exception]]:
    cases = full_cases()
    cases[at] = place(cases[at], value)
    return cases, Encoder(scan_schema, SOURCE).encode([c.item for c in cases])


@pytest.mark.parametrize("place", list(STRING_PLACES), ids=list(STRING_PLACES))
def test_a_lone_surrogate_fails_its_own_item_and_no_other(
    place: str, scan_schema: VersionedSchema
) -> None:
    cases, out = encode_with(scan_schema, STRING_PLACES[place], LONE_SURROGATE)
    with pytest.raises(ValueError, match="surrogate"):  # fastavro cannot write it either
        fastavro_bytes(scan_schema, cases[5].record)
    failed = out[5]
    assert isinstance(failed, UnicodeEncodeError), failed
    others = [n for n in range(len(cases)) if n != 5]
    assert_same_as_fastavro(scan_schema, [cases[n] for n in others], [out[n] for n in others])


EDGE_TIMES = {
    "year 1, naive": datetime.min,
    "year 9999, naive": datetime.max,
    "year 1, UTC": datetime.min.replace(tzinfo=UTC),
    "end of year 9999, UTC": datetime.max.replace(tzinfo=UTC),
    "half a millisecond before the epoch": datetime(1969, 12, 31, 23, 59, 59, 999_500, UTC),
    "before the epoch, -05:30": datetime(
        1969, 12, 31, 18, 29, 59, 999_999, timezone(timedelta(hours=-5, minutes=-30))
    ),
    "year 2, +14:00": datetime(2, 1, 1, tzinfo=timezone(timedelta(hours=14))),
}


@pytest.mark.parametrize("place", list(TIME_PLACES))
@pytest.mark.parametrize("moment", list(EDGE_TIMES.values()), ids=list(EDGE_TIMES))
def test_times_at_the_edges_of_the_datetime_range_match_fastavro(
    place: str, moment: datetime, scan_schema: VersionedSchema
) -> None:
    cases, out = encode_with(scan_schema, TIME_PLACES[place], moment)
    assert_same_as_fastavro(scan_schema, cases, out)


OUT_OF_RANGE = {
    # Valid datetimes whose UTC time is not: before year 1, after year 9999.
    "year 1 at +14:00": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
    "end of year 9999 at -14:00": datetime.max.replace(tzinfo=timezone(timedelta(hours=-14))),
}


@pytest.mark.parametrize("place", list(TIME_PLACES))
@pytest.mark.parametrize("moment", list(OUT_OF_RANGE.values()), ids=list(OUT_OF_RANGE))
def test_a_time_whose_utc_date_is_out_of_range_fails_its_item(
    place: str, moment: datetime, scan_schema: VersionedSchema
) -> None:
    cases, out = encode_with(scan_schema, TIME_PLACES[place], moment)
    # fastavro writes the millisecond count, but no Python reader can decode it again
    # (`passentry-bridge tail` among them): the item is refused, to be dead-lettered.
    written = io.BytesIO(fastavro_bytes(scan_schema, cases[5].record))
    with pytest.raises(OverflowError):
        fastavro.schemaless_reader(written, scan_schema.parsed, scan_schema.parsed)
    assert isinstance(out[5], OverflowError), out[5]
    assert_same_as_fastavro(scan_schema, cases[:5] + cases[6:], out[:5] + out[6:])


def test_a_failed_item_does_not_poison_the_remembered_pass(scan_schema: VersionedSchema) -> None:
    """The same pass, good and bad, in one batch and in the next: each encodes on its own."""
    encoder = Encoder(scan_schema, SOURCE)
    cases = full_cases()
    bad = _pass_content_value(cases[0], LONE_SURROGATE)
    batch = [bad, *cases, bad]
    for _ in range(2):
        out = encoder.encode([c.item for c in batch])
        assert isinstance(out[0], ValueError)
        assert isinstance(out[-1], ValueError)
        assert_same_as_fastavro(scan_schema, cases, out[1:-1])


def _set_type(name: str, avro_type: Any) -> SchemaChange:
    def change(fields: list[dict[str, Any]]) -> None:
        (field,) = [f for f in fields if f["name"] == name]
        field["type"] = avro_type
        field.pop("default", None)

    return change


TIMESTAMP = {"type": "long", "logicalType": "timestamp-millis"}
# A top-level field keeps its name but gets a type the encoder would write wrong bytes for;
# the error must name the field with the type it found (the base types of its branches).
WRONG_TYPES: dict[str, tuple[Any, str]] = {
    "createdAt": ("string", "string"),
    "scanId": ("bytes", "bytes"),
    "scannedAt": (TIMESTAMP, "long"),  # no longer nullable
    "scanValue": ("string", "string"),  # no longer nullable
    "readerId": (["null", "string"], "null|string"),  # nullable
    "passId": (["null", "long"], "null|long"),
    "sourceId": ({"type": "enum", "name": "Source", "symbols": ["a"]}, "enum"),
    "pass": (["null", "string"], "null|string"),
    "reader": (["null", {"type": "map", "values": "string"}], "null|map"),
    "status": (["string", "null"], "string|null"),  # the branches swapped
}


@pytest.mark.parametrize("field", list(WRONG_TYPES))
def test_a_schema_field_with_the_right_name_and_another_type_is_refused(
    field: str, changed_schema: Callable[[SchemaChange], VersionedSchema]
) -> None:
    avro_type, shape = WRONG_TYPES[field]
    schema = changed_schema(_set_type(field, avro_type))
    # Letters may not come between the name and the type, so the encoder's own expectation
    # for the field ("scanValue ... null|string") does not match "scanValue ... string".
    with pytest.raises(ValueError, match=rf"\b{field}\W+{re.escape(shape)}\b"):
        Encoder(schema, SOURCE)


def _rename(fields: list[dict[str, Any]]) -> None:
    fields[3]["name"] = "scanKind"


def _swap(fields: list[dict[str, Any]]) -> None:
    fields[4], fields[5] = fields[5], fields[4]


def _drop(fields: list[dict[str, Any]]) -> None:
    del fields[7]


def _add(fields: list[dict[str, Any]]) -> None:
    fields.append({"name": "extra", "type": ["null", "string"], "default": None})


@pytest.mark.parametrize(
    ("change", "named"),
    [(_rename, "scanKind"), (_swap, None), (_drop, None), (_add, "extra")],
    ids=["renamed", "reordered", "dropped", "added"],
)
def test_a_schema_whose_fields_differ_by_name_or_order_is_refused(
    change: SchemaChange,
    named: str | None,
    changed_schema: Callable[[SchemaChange], VersionedSchema],
) -> None:
    with pytest.raises(ValueError, match=None if named is None else re.escape(named)):
        Encoder(changed_schema(change), SOURCE)


def test_the_bundled_schema_is_accepted_and_a_control_change_is_too(
    scan_schema: VersionedSchema, changed_schema: Callable[[SchemaChange], VersionedSchema]
) -> None:
    """The refusals above are about the types: a change that keeps every top-level name,
    type and position (a doc string) still builds an encoder that matches fastavro."""

    def doc_only(fields: list[dict[str, Any]]) -> None:
        fields[1]["doc"] = "changed"

    schema = changed_schema(doc_only)
    cases = full_cases()
    assert_same_as_fastavro(schema, cases, Encoder(schema, SOURCE).encode([c.item for c in cases]))
    Encoder(scan_schema, SOURCE)


def _pass_record(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (field,) = [f for f in fields if f["name"] == "pass"]
    record: list[dict[str, Any]] = field["type"][1]["fields"]
    return record


def _pass_content_as_array(fields: list[dict[str, Any]]) -> None:
    (content,) = [f for f in _pass_record(fields) if f["name"] == "passContent"]
    content["type"] = {"type": "array", "items": "string"}
    content["default"] = []


def _pass_fields_swapped(fields: list[dict[str, Any]]) -> None:
    record = _pass_record(fields)
    record[1], record[2] = record[2], record[1]


def _barcode_enabled_as_string(fields: list[dict[str, Any]]) -> None:
    (barcode,) = [f for f in _pass_record(fields) if f["name"] == "barcode"]
    barcode["type"][1]["fields"][0]["type"] = ["null", "string"]


def _barcode_dropped(fields: list[dict[str, Any]]) -> None:
    record = _pass_record(fields)
    record[:] = [f for f in record if f["name"] != "barcode"]


@pytest.mark.parametrize(
    "change",
    [_pass_content_as_array, _pass_fields_swapped, _barcode_enabled_as_string, _barcode_dropped],
    ids=["passContent-array", "reordered", "barcode-enabled-string", "barcode-dropped"],
)
def test_a_schema_whose_pass_record_differs_is_refused(
    change: SchemaChange, changed_schema: Callable[[SchemaChange], VersionedSchema]
) -> None:
    """The pass record is written by hand too: a schema that changes it needs the writer
    changed with it, and says so instead of writing bytes its readers would misread."""
    with pytest.raises(ValueError, match="the pass record's fields"):
        Encoder(changed_schema(change), SOURCE)


def test_encoders_of_one_schema_share_the_bytes_of_a_pass_or_reader(
    scan_schema: VersionedSchema,
) -> None:
    """The client's memo gives every source the same object for the same JSON: what one
    source's encoder wrote for it, another's reuses, as itself."""
    item = full_cases()[0].item
    assert item.pass_ is not None
    assert item.reader is not None
    first, second = Encoder(scan_schema, SOURCE), Encoder(scan_schema, "another source")
    written = first.pass_bytes(item.pass_), first.reader_bytes(item.reader)
    assert second.pass_bytes(item.pass_) is written[0]
    assert second.reader_bytes(item.reader) is written[1]
    # An equal pass that is another object (decoded apart) is written anew, to the same bytes.
    twin = msgspec.json.decode(msgspec.json.encode(item.pass_), type=type(item.pass_))
    again = second.pass_bytes(twin)
    assert again == written[0]
    assert again is not written[0]


def test_another_schema_version_keeps_its_own_bytes(
    scan_schema: VersionedSchema, changed_schema: Callable[[SchemaChange], VersionedSchema]
) -> None:
    """A reader record with one more field: the same reader object, other bytes."""

    def reader_with_a_field_more(fields: list[dict[str, Any]]) -> None:
        (reader,) = [f for f in fields if f["name"] == "reader"]
        reader["type"][1]["fields"].append(
            {"name": "extra", "type": ["null", "string"], "default": None}
        )

    item = full_cases()[0].item
    assert item.reader is not None
    written = Encoder(scan_schema, SOURCE).reader_bytes(item.reader)
    other = Encoder(changed_schema(reader_with_a_field_more), SOURCE).reader_bytes(item.reader)
    assert other == written + b"\0"  # the null branch of the field added last


def test_each_live_encoder_adds_its_share_to_the_bound_and_gives_it_back(
    scan_schema: VersionedSchema,
) -> None:
    from bridge.avro import encoder as encoder_module

    gc.collect()  # other tests' encoders
    shared = encoder_module._encoded_for(scan_schema)
    share = encoder_module._OBJECTS_MAX
    before = shared._bound
    encoders = [Encoder(scan_schema, SOURCE) for _ in range(3)]
    assert shared._bound == before + 3 * share
    del encoders
    gc.collect()
    assert shared._bound == before
