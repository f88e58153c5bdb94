"""One header of a record read back, by bridge/kafka/_headers.c, is the header
Message.headers() gives: on the real broker, for records with every kind of header (a
repeated name, a value of None, an empty one, bytes that are not UTF-8, a name outside
ASCII) and for records with none."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer, TopicPartition

from bridge.kafka import _headers
from bridge.kafka.readback import HeaderPeek, plan_reads, read_committed, reader

NAMES = ["source-id", "scan-id", "twice", "none", "empty", "raw", "ünïcode", "absent"]


def _headers_of(n: int) -> list[tuple[str, bytes | None]] | None:
    if n % 10 == 0:
        return None  # a record without headers
    return [
        ("source-id", f"source-{n % 3}".encode()),
        ("scan-id", str(uuid.UUID(int=(0x0190 << 112) | n)).encode()),
        ("twice", b"first"),
        ("none", None),
        ("empty", b""),
        ("raw", bytes([0xFF, n % 256, 0x00])),
        ("ünïcode", "gâte ✓".encode()),
        ("twice", f"last-{n}".encode()),
    ]


def _read_all(bootstrap: str, topic: str) -> list[Any]:
    conf = {"bootstrap.servers": bootstrap}
    ends = reader(conf, "peek-", "read_uncommitted")
    try:
        plan = plan_reads(ends, [TopicPartition(topic, 0, -1)], 30.0)
    finally:
        ends.close()
    consumer = reader(conf, "peek-", "read_committed")

    def failed(err: Any, where: str) -> Any:
        raise AssertionError(f"{where}: {err}")

    try:
        return list(read_committed(consumer, plan, stall_s=30.0, on_error=failed))
    finally:
        consumer.close()


def test_a_header_peeked_is_the_header_python_gives(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for n in range(500):
        producer.produce(topic, value=b"v%d" % n, headers=_headers_of(n))
    assert producer.flush(30) == 0

    native = _read_all(kafka_bootstrap, topic)
    peek = HeaderPeek()
    peeked = [[peek.get(msg, name) for name in NAMES] for msg in native]
    # The same records again, each header as Python reads it.
    expected = []
    for msg in _read_all(kafka_bootstrap, topic):
        headers = msg.headers() or []
        row = []
        for name in NAMES:
            values = [value for key, value in headers if key == name]
            row.append(values[-1] if values else None)
        expected.append(row)
    assert len(peeked) == len(expected) == 500
    assert peeked == expected
    # This confluent-kafka's layout is the one the native path reads: the first record has
    # no headers to check it on, the second had, and from there on it was used.
    assert peek._native is True
    assert _headers.checked(native[0]) is True
    assert peeked[1][NAMES.index("twice")] == b"last-1"
    assert peeked[10] == [None] * len(NAMES)
    # After headers() has been called, the peek reads Python's list instead: the same.
    for msg, row in zip(native, peeked, strict=True):
        msg.headers()
        assert [peek.get(msg, name) for name in NAMES] == row


def test_the_python_path_gives_the_same_when_the_layout_is_not_checked(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for n in range(1, 50):
        producer.produce(topic, value=b"v", headers=_headers_of(n))
    assert producer.flush(30) == 0
    peek = HeaderPeek()
    peek._native = False
    read = _read_all(kafka_bootstrap, topic)
    assert len(read) == 49
    for msg in read:
        headers = msg.headers()
        if headers is None:
            assert peek.get(msg, "source-id") is None
            continue
        assert peek.get(msg, "twice") == headers[-1][1]
        assert peek.get(msg, "none") is None
        assert peek.get(msg, "absent") is None
        assert peek.get(msg, "source-id") == headers[0][1]
