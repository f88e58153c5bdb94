"""W3C trace context as it enters the bridge: only a well-formed traceparent is carried."""

from __future__ import annotations

import pytest

from bridge.tracecontext import TraceHeaders

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_traceparent_and_its_tracestate_are_kept() -> None:
    found = TraceHeaders.parse(GOOD, " vendor=a,other=b ")
    assert found == TraceHeaders(GOOD, "vendor=a,other=b")
    assert found.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert found.span_id == "00f067aa0ba902b7"
    assert found.sampled
    assert found.kafka_headers() == [("traceparent", GOOD), ("tracestate", "vendor=a,other=b")]


def test_hex_in_capitals_is_read_and_written_in_lower_case() -> None:
    found = TraceHeaders.parse(GOOD.upper())
    assert found is not None
    assert found.traceparent == GOOD
    assert found.kafka_headers() == [("traceparent", GOOD)]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # no trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # no parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # 00 has 4 fields
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  # not hex
    ],
)
def test_a_malformed_traceparent_is_dropped_with_its_tracestate(value: str) -> None:
    assert TraceHeaders.parse(value, "vendor=a") is None


def test_a_later_version_is_read_as_version_00_without_its_extra_fields() -> None:
    found = TraceHeaders.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what")
    assert found == TraceHeaders("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
    assert not found.sampled


def test_an_oversized_or_non_ascii_tracestate_is_dropped_and_the_traceparent_kept() -> None:
    assert TraceHeaders.parse(GOOD, "v=" + "x" * 600) == TraceHeaders(GOOD)
    assert TraceHeaders.parse(GOOD, "v=é") == TraceHeaders(GOOD)


def test_from_kafka_headers_reads_bytes_and_ignores_the_rest() -> None:
    headers = [("scan-id", b"x"), ("traceparent", GOOD.encode()), ("tracestate", b"v=1")]
    assert TraceHeaders.from_kafka(headers) == TraceHeaders(GOOD, "v=1")
    assert TraceHeaders.from_kafka([("traceparent", b"\xff\xfe")]) is None
    assert TraceHeaders.from_kafka([]) is None


def test_from_http_reads_the_lower_cased_names_the_server_gives() -> None:
    assert TraceHeaders.from_http({"traceparent": GOOD, "tracestate": "v=1"}) == TraceHeaders(
        GOOD, "v=1"
    )
    assert TraceHeaders.from_http({"content-type": "application/json"}) is None
