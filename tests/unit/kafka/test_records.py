"""Records the bridge writes: a scan that fails to encode becomes a dead letter (reason
``encode_error``) carrying its raw JSON, and its neighbours are published as usual."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime, timedelta

from bridge import __version__
from bridge.avro.encoder import Encoder
from bridge.avro.framing import SingleObjectFramer
from bridge.avro.schemas import latest
from bridge.cloudevents import RFC3339_END_MS, TimeFormatter, scan_type
from bridge.kafka.records import RecordBuilder
from bridge.kafka.routing import Router
from bridge.passentry.pages import Rejected
from tests.unit.scan_docs import Generator, decoded, with_scan_attrs


def test_an_item_that_failed_to_encode_is_dead_lettered_with_its_raw_json() -> None:
    gen = Generator(11)
    passes, readers = gen.world()
    page = gen.page(3, passes, readers)
    cases = decoded(page, "src", url="https://api.test/api/v1/scans?page=4")
    items = [c.item for c in cases]
    # A value no UTF-8 encoder takes: the middle scan cannot be encoded.
    items[1] = with_scan_attrs(items[1], scan_value="\ud83c")
    schema = latest()
    bodies = Encoder(schema, "src").encode(items)
    assert isinstance(bodies[1], UnicodeEncodeError)

    records = RecordBuilder("src", "dlq", Router("scans", None), SingleObjectFramer(schema)).scans(
        items, bodies
    )

    assert [r.topic for r in records] == ["scans", "dlq", "scans"]
    dead = records[1]
    scan_id = page["data"][1]["id"]
    assert dead.dlq_reason == "encode_error"
    assert dead.key == items[1].reader_id.encode()
    assert dead.created_ms is None
    # The value is the scan exactly as PassEntry sent it (not the poisoned copy).
    assert dead.value == bytes(items[1].scan.raw)
    assert json.loads(dead.value) == page["data"][1]
    headers = dict(dead.headers)
    assert headers["dlq-reason"] == "encode_error"
    detail = headers["dlq-detail"]
    assert isinstance(detail, str)
    assert detail.startswith("UnicodeEncodeError: ")
    assert "surrogate" in detail
    assert len(detail) <= 300
    assert headers["scan-id"] == scan_id
    assert headers["source-url"] == "https://api.test/api/v1/scans?page=4"
    assert headers["source-id"] == "src"
    assert headers["bridge-version"] == __version__
    assert headers["content-type"] == "application/json"
    # The neighbours are ordinary scan records, framed, with their own scan ids.
    for n in (0, 2):
        record = records[n]
        assert record.dlq_reason is None
        assert record.value == SingleObjectFramer(schema).framing("scans").prefix + bodies[n]
        assert dict(record.headers)["scan-id"] == page["data"][n]["id"]
        assert record.key == items[n].reader_id.encode()


def rfc3339(ms: int) -> str:
    # Exact integer arithmetic: ms / 1000 as a float rounds some far-future times wrongly.
    at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_scan_records_carry_the_cloudevents_attributes_as_binary_mode_headers() -> None:
    gen = Generator(3)
    passes, readers = gen.world()
    page = gen.page(60, passes, readers)
    items = [c.item for c in decoded(page, "src-1", url="https://api.test/api/v1/scans")]
    schema = latest()
    bodies = Encoder(schema, "src-1").encode(items)
    records = RecordBuilder(
        "src-1", "dlq", Router("scans", None), SingleObjectFramer(schema)
    ).scans(items, bodies)

    for item, record in zip(items, records, strict=True):
        headers = dict(record.headers)
        assert len(headers) == len(record.headers), "a header name written twice"
        scan_id = item.scan.resource.id
        assert headers["ce_specversion"] == "1.0"
        assert headers["ce_id"] == scan_id == headers["scan-id"]
        assert headers["ce_source"] == "urn:passentry-bridge:source:src-1"
        assert headers["ce_type"] == "com.passentry.scan.v1"  # the namespace's v1
        assert headers["ce_dataschema"] == f"urn:avro:crc-64-avro:{schema.fingerprint.hex()}"
        if item.scan.created_ms >= RFC3339_END_MS:
            # A UUIDv7 reaches the year 10889; RFC 3339 stops at 9999.
            assert "ce_time" not in headers
            continue
        assert headers["ce_time"] == rfc3339(item.scan.created_ms)
        assert headers["content-type"] == "application/avro; encoding=single-object"
        # The headers that were there before stay.
        assert headers["schema-version"] == str(schema.version)
        assert headers["source-id"] == "src-1"


def test_dead_letters_carry_cloudevents_headers_with_an_id_of_their_own() -> None:
    builder = RecordBuilder("src-1", "dlq", Router("scans", None), SingleObjectFramer(latest()))
    scan_id = "0194d6a9-95b5-7556-896c-693a6ef61c4d"
    late = builder.dead_letter(Rejected("late_scan", "late", b"{}", scan_id, "r1"), "u")
    headers = dict(late.headers)
    assert headers["ce_specversion"] == "1.0"
    # Not the bare scan id: a late scan may have been published too, and source + id must
    # name one event.
    assert headers["ce_id"] == f"late_scan:{scan_id}"
    assert headers["ce_source"] == "urn:passentry-bridge:source:src-1"
    assert headers["ce_type"] == "com.passentry.scan.deadletter.v1"
    assert headers["ce_time"] == "2025-02-05T15:10:25.717Z"  # the id's 0x0194d6a995b5 ms
    assert "ce_dataschema" not in headers  # the value is PassEntry's JSON, no schema

    bad = builder.dead_letter(Rejected("invalid_id", "x", b'{"id": 7}', "not-a-uuid"), "u")
    headers = dict(bad.headers)
    assert headers["ce_id"] == "invalid_id:not-a-uuid"
    assert "ce_time" not in headers  # no creation time to give

    no_id = builder.dead_letter(Rejected("invalid_scan", "x", b"garbage"), "u")
    headers = dict(no_id.headers)
    digest = hashlib.sha256(b"garbage").hexdigest()[:32]
    assert headers["ce_id"] == f"invalid_scan:sha256:{digest}"
    assert "scan-id" not in headers


def test_ce_time_matches_the_standard_library_across_minutes_days_and_years() -> None:
    fmt = TimeFormatter()
    rng = random.Random(1)
    # Ordered runs (the hot path's case) and jumps back and forth (a cache must not stick).
    values = sorted(rng.randrange(0, RFC3339_END_MS) for _ in range(2000))
    values += [59_999, 60_000, 0, 1_735_689_599_999, 1_735_689_600_000, 86_399_999]
    values += [rng.randrange(0, RFC3339_END_MS) for _ in range(2000)]
    values.append(RFC3339_END_MS - 1)
    for ms in values:
        assert fmt(ms) == rfc3339(ms), ms


def test_the_event_type_follows_the_namespace_major_not_the_file_version() -> None:
    assert scan_type("com.passentry.bridge.v1.ScanEvent") == "com.passentry.scan.v1"
    assert scan_type("com.passentry.bridge.v12.ScanEvent") == "com.passentry.scan.v12"
    assert scan_type("ScanEvent") == "com.passentry.scan.v1"
