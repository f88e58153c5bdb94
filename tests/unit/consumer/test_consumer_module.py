"""``bridge.consumer`` without a broker: the dedupe window, decoding both framings into the
dataclasses, reading with an older or a newer reader schema, and the errors that name why."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastavro
import pytest

from bridge.avro.framing import SingleObjectFramer
from bridge.avro.registry import RegistryFramer, make_client
from bridge.avro.schemas import from_text, latest
from bridge.config import RegistrySettings
from bridge.consumer import (
    Pass,
    Reader,
    Scan,
    ScanConsumer,
    ScanDecodeError,
    ScanDecoder,
    ScanDeduper,
    schema_file,
)
from bridge.uuid7 import UUIDv7Minter
from tests.unit.cli.test_tail import published_records

V2 = Path(__file__).resolve().parents[2] / "fixtures" / "evolution" / "passentry_scan" / "v2.avsc"


def ids_at(*ms: int) -> list[str]:
    minter = UUIDv7Minter()
    return [str(minter.mint(at_ms=m)) for m in ms]


# --- ScanDeduper -----------------------------------------------------------------------------


def test_a_repeat_within_the_window_is_dropped_and_counted() -> None:
    dedupe = ScanDeduper(timedelta(minutes=5))
    a, b = ids_at(1_000_000, 1_001_000)
    assert [dedupe.first_time(i) for i in (a, b, a, b.upper())] == [True, True, False, False]
    assert dedupe.repeats == 2


def test_ids_older_than_the_window_are_forgotten_so_memory_stays_bounded() -> None:
    dedupe = ScanDeduper(timedelta(seconds=10))
    base = 1_700_000_000_000
    ids = ids_at(*(base + n * 1000 for n in range(1000)))
    for i in ids:
        assert dedupe.first_time(i)
    assert len(dedupe) <= 12  # one window of ids, not 1000
    # An id from before the window cannot be told from a new one: let through, counted.
    assert dedupe.first_time(ids[0]) is True
    assert dedupe.forgotten == 1
    # A repeat inside the window is still caught while ids arrive out of order.
    assert dedupe.first_time(ids[-5]) is False


def test_the_deduper_refuses_what_is_not_a_uuidv7() -> None:
    dedupe = ScanDeduper()
    with pytest.raises(ValueError, match="not a UUIDv7"):
        dedupe.first_time("6ba7b810-9dad-11d1-80b4-00c04fd430c8")  # v1
    with pytest.raises(ValueError, match="not a UUID"):
        dedupe.first_time("scan-1")
    with pytest.raises(ValueError, match="positive"):
        ScanDeduper(timedelta(0))


# --- ScanDecoder -----------------------------------------------------------------------------


def test_single_object_records_become_typed_scans() -> None:
    scans = [ScanDecoder().decode(v) for v in published_records()]
    assert [s.reader_id for s in scans] == ["gate-3", "gate-4"]
    first = scans[0]
    assert isinstance(first, Scan)
    assert isinstance(first.created_at, datetime)
    assert first.created_at.tzinfo == UTC
    created_ms = int(first.scan_id.replace("-", "")[:12], 16)
    assert first.created_at == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=created_ms)
    assert isinstance(first.reader, Reader)
    assert first.reader.id == "gate-3"
    assert isinstance(first.pass_, Pass)
    assert scans[1].pass_ is None
    assert scans[1].pass_id is None
    assert first.extra == {}


def test_registry_framed_records_decode_with_the_registry_client() -> None:
    settings = RegistrySettings(url="mock://consumer-unit")
    client = make_client(settings)
    prefix = RegistryFramer(settings, latest(), client).framing("scans").prefix
    single = SingleObjectFramer(latest()).framing("scans").prefix
    value = published_records()[0]
    framed = prefix + value[len(single) :]
    assert ScanDecoder(registry=client).decode(framed) == ScanDecoder().decode(value)
    with pytest.raises(ScanDecodeError, match=r"registry wire format \(schema id"):
        ScanDecoder().decode(framed)


def test_a_v2_reader_fills_the_new_field_with_its_default_in_extra() -> None:
    v2 = schema_file(V2)
    scan = ScanDecoder(reader_schema=v2).decode(published_records()[0])
    assert dict(scan.extra) == {"eventId": None}
    assert scan.reader_id == "gate-3"


def test_a_v1_reader_needs_the_v2_file_for_v2_records_and_then_skips_the_field() -> None:
    v2 = schema_file(V2)
    assert v2.fingerprint == from_text(V2.read_text()).fingerprint != latest().fingerprint
    # A v2 record: the bridge's v1 record, given an eventId and written with v2.
    v1_value = published_records()[0]
    single = SingleObjectFramer(latest()).framing("scans").prefix
    decoded = fastavro.schemaless_reader(io.BytesIO(v1_value[len(single) :]), latest().parsed)
    decoded["eventId"] = "event-7"  # type: ignore[index]
    body = io.BytesIO()
    fastavro.schemaless_writer(body, v2.parsed, decoded)
    v2_value = b"\xc3\x01" + v2.fingerprint + body.getvalue()
    with pytest.raises(ScanDecodeError, match=f"unknown schema fingerprint {v2.fingerprint.hex()}"):
        ScanDecoder().decode(v2_value)
    scan = ScanDecoder(writer_schemas=[v2]).decode(v2_value)
    assert scan.extra == {}
    assert scan == ScanDecoder().decode(v1_value)
    assert ScanDecoder(reader_schema=v2, writer_schemas=[v2]).decode(v2_value).extra == {
        "eventId": "event-7"
    }


def test_values_that_are_not_scans_fail_with_the_reason() -> None:
    decoder = ScanDecoder()
    with pytest.raises(ScanDecodeError, match="empty value"):
        decoder.decode(b"")
    with pytest.raises(ScanDecodeError, match="neither Avro single-object"):
        decoder.decode(b'{"id": 1}')
    value = published_records()[0]
    with pytest.raises(ScanDecodeError, match=r"bytes left after the record|EOF|Error"):
        decoder.decode(value[:40] + value)


def test_a_schema_file_that_is_not_avro_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "v9.avsc"
    bad.write_text('{"type": "record"}')
    with pytest.raises(ScanDecodeError, match=r"v9\.avsc: not an Avro schema"):
        schema_file(bad)
    with pytest.raises(ScanDecodeError, match="cannot read schema file"):
        schema_file(tmp_path / "missing.avsc")


def test_the_consumer_refuses_read_uncommitted() -> None:
    with pytest.raises(ValueError, match="read_committed"):
        ScanConsumer(
            {
                "bootstrap.servers": "127.0.0.1:1",
                "group.id": "g",
                "isolation.level": "read_uncommitted",
            },
            ["t"],
        )
