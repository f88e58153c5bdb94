"""The header peek's refusals without a broker: only a consumed confluent_kafka.Message is
checked, and header() reads nothing before a check has passed (tests/integration has the
real records)."""

from __future__ import annotations

import pytest

from bridge.kafka import _headers
from bridge.kafka.readback import HeaderPeek


class FakeMessage:
    def headers(self) -> list[tuple[str, bytes | None]]:
        return [("source-id", b"a"), ("none", None), ("source-id", b"b")]


def test_only_a_real_message_is_checked() -> None:
    assert _headers.checked(FakeMessage()) is False  # type: ignore[arg-type]
    assert _headers.checked(object()) is False  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _headers.header(FakeMessage(), "source-id")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _headers.header(FakeMessage(), b"source-id")  # type: ignore[arg-type]


def test_a_message_the_peek_cannot_check_is_read_through_headers() -> None:
    peek = HeaderPeek()
    msg = FakeMessage()
    assert peek.get(msg, "source-id") == b"b"  # type: ignore[arg-type]
    assert peek.get(msg, "none") is None  # type: ignore[arg-type]
    assert peek.get(msg, "absent") is None  # type: ignore[arg-type]
    assert peek._native is False
