"""Records the bridge writes: a scan that fails to encode becomes a dead letter (reason
``encode_error``) carrying its raw JSON, and its neighbours are published as usual."""

from __future__ import annotations

import json

from bridge import __version__
from bridge.avro.encoder import Encoder
from bridge.avro.framing import SingleObjectFramer
from bridge.avro.schemas import latest
from bridge.kafka.records import RecordBuilder
from bridge.kafka.routing import Router
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
