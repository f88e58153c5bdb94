"""``tail``'s decoding and its two formats: both framings, registry ids fetched once, and one
short line per scan for people."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema

from bridge.avro.decoder import RecordDecoder
from bridge.avro.framing import SingleObjectFramer
from bridge.avro.registry import RegistryFramer, make_client
from bridge.avro.schemas import latest
from bridge.cli.tail import pretty, to_json
from bridge.config import RegistrySettings
from bridge.ops.metrics import Metrics
from tests.unit.fake_api import FakeApi
from tests.unit.pipeline_support import ListSink, build, now_ms


def published_records(**kw: Any) -> list[bytes]:
    """Avro bodies (framed) as the pipeline publishes them, for two scans."""
    api = FakeApi()
    api.include_readers = True
    now = now_ms()
    api.add(now - 2_000, reader="gate-3")
    api.add(now - 1_000, reader="gate-4", pass_id=None)
    sink = ListSink()
    build(api, sink, Metrics(), **kw).cycle(threading.Event())
    return [r.value for r in sink.records]


def test_single_object_records_decode_to_their_fields() -> None:
    values = published_records()
    decoded = [RecordDecoder().decode(v) for v in values]
    assert [d["readerId"] for d in decoded] == ["gate-3", "gate-4"]
    assert decoded[1]["pass"] is None
    assert json.loads(to_json(decoded[0]))["readerId"] == "gate-3"


def test_registry_framed_records_decode_with_the_schema_the_registry_holds() -> None:
    schema = latest()
    client = make_client(RegistrySettings(url="mock://tail-unit"))
    framer = RegistryFramer(RegistrySettings(url="mock://tail-unit"), schema, client)
    prefix = framer.framing("scans").prefix
    assert prefix[:1] == b"\x00"
    single = SingleObjectFramer(schema).framing("scans").prefix
    body = published_records()[0][len(single) :]

    class Counting:
        """The registry client, counting lookups: each id is fetched once."""

        calls = 0

        def get_schema(self, schema_id: int) -> Schema:
            Counting.calls += 1
            return client.get_schema(schema_id)

    decoder = RecordDecoder(Counting())  # type: ignore[arg-type]
    first = decoder.decode(prefix + body)
    again = decoder.decode(prefix + body)
    assert first == again
    assert first["readerId"] == "gate-3"
    assert Counting.calls == 1


def test_registry_framed_without_a_registry_says_what_to_set() -> None:
    with pytest.raises(ValueError, match="SCHEMA_REGISTRY_URL"):
        RecordDecoder().decode(b"\x00\x00\x00\x00\x07" + b"\x02")


@pytest.mark.parametrize("value", [b"", b"{}", b"\xc3\x01" + b"\x00" * 8 + b"x"])
def test_other_bytes_are_refused_with_a_reason(value: bytes) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        RecordDecoder().decode(value)


def test_pretty_is_one_short_line_per_scan() -> None:
    decoded = [RecordDecoder().decode(v) for v in published_records()]
    lines = [pretty(d) for d in decoded]
    for line, record in zip(lines, decoded, strict=True):
        assert "\n" not in line
        assert record["readerId"] in line
        assert f"scan={record['scanId']}" in line
        assert line.startswith(record["createdAt"].isoformat().replace("+00:00", "Z"))
    assert "pass=-" in lines[1]  # a scan without a pass
