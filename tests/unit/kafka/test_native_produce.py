"""bridge/kafka/_produce.c takes only a producer whose layout it has checked, and hands back
every record it cannot take. No broker: with none configured, records wait in the producer's
local queue, whose length says how many librdkafka took. tests/integration/
test_native_produce.py reads what it writes to a real broker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from bridge.errors import KafkaRetriableError
from bridge.kafka import _produce
from bridge.kafka import producer as producer_module
from bridge.kafka.producer import Publisher
from bridge.kafka.records import OutRecord
from bridge.ops.metrics import Metrics
from tests.support import FakeClock
from tests.unit.kafka.fake_producer import FakeProducer

# No bootstrap servers: produced records stay queued, and nothing else is.
_LOCAL = {"log_level": 0}


def _error_cb(err: Any) -> None:
    del err


def _conf(**extra: Any) -> dict[str, Any]:
    return {**_LOCAL, "error_cb": _error_cb, **extra}


@pytest.fixture
def producer() -> Iterator[Producer]:
    made = Producer(_conf())
    yield made
    made.purge()


def _record(n: int) -> OutRecord:
    headers: list[tuple[str, str | bytes | None]] = [
        ("scan-id", f"id-{n}"),
        ("blob", b"\x00\xff"),
        ("empty", None),
    ]
    return OutRecord(
        "scans", f"gate-{n % 3}".encode(), b"\xc3\x01" + bytes([n % 256]) * 40, headers
    )


def test_bind_takes_a_producer_made_with_that_error_cb(producer: Producer) -> None:
    assert _produce.bind(producer, _error_cb) is True


@pytest.mark.parametrize("error_cb", [None, print, lambda err: None])
def test_bind_refuses_a_producer_made_with_another_error_cb(
    producer: Producer, error_cb: Any
) -> None:
    assert _produce.bind(producer, error_cb) is False


def test_bind_refuses_what_is_not_a_producer() -> None:
    consumer = Consumer(_conf(**{"group.id": "g"}))
    try:
        assert _produce.bind(consumer, _error_cb) is False
    finally:
        consumer.close()
    assert _produce.bind(object(), _error_cb) is False
    assert _produce.bind(FakeProducer(_conf(on_delivery=print), FakeClock()), _error_cb) is False


def test_produce_takes_every_record_from_start(producer: Producer) -> None:
    records = [_record(n) for n in range(250)]
    assert _produce.produce(producer, records, 50) == 250
    assert len(producer) == 200


@pytest.mark.parametrize(
    "odd",
    [
        OutRecord("scans", b"k", b"v", [("n", 1)]),  # type: ignore[list-item]
        OutRecord("scans", b"k", b"v", [("n", "v", "x")]),  # type: ignore[list-item]
        OutRecord("scans", b"k", b"v", [(b"n", "v")]),  # type: ignore[list-item]
        OutRecord("scans", b"k", b"v", [("\ud800", "v")]),
        OutRecord("scans", "k", b"v", []),  # type: ignore[arg-type]
        OutRecord("scans", b"k", "v", []),  # type: ignore[arg-type]
        OutRecord("scans", b"k", b"v", (("n", "v"),)),  # type: ignore[arg-type]
    ],
)
def test_produce_stops_at_a_record_it_cannot_take(producer: Producer, odd: OutRecord) -> None:
    records = [_record(0), _record(1), odd, _record(3)]
    assert _produce.produce(producer, records, 0) == 2
    assert len(producer) == 2


def test_produce_takes_nothing_for_what_is_not_a_producer() -> None:
    fake = FakeProducer(_conf(on_delivery=print), FakeClock())
    assert _produce.produce(fake, [_record(0)], 0) == 0


def test_produce_takes_nothing_from_a_closed_producer() -> None:
    closed = Producer(_conf())
    closed.close()
    assert _produce.produce(closed, [_record(0)], 0) == 0


def test_a_full_queue_stops_it_where_produce_would_raise() -> None:
    small = Producer(_conf(**{"queue.buffering.max.messages": 5}))
    try:
        assert _produce.produce(small, [_record(n) for n in range(8)], 0) == 5
        with pytest.raises(BufferError):
            small.produce("scans", b"v")
    finally:
        small.purge()


def test_the_publisher_goes_native_only_with_a_real_producer() -> None:
    conf = _conf(**{"transactional.id": "native-test"})
    real = Publisher(conf, Metrics(), call_timeout_s=1.0)
    try:
        assert real._native is True
    finally:
        real._producer.purge()
    faked = Publisher(
        conf, Metrics(), call_timeout_s=1.0, producer_factory=lambda c: FakeProducer(c, FakeClock())
    )
    assert faked._native is False


def _native_publisher(**extra: Any) -> Publisher:
    conf = _conf(**extra)  # not transactional: records queue without a transaction
    publisher = Publisher(conf, Metrics(), call_timeout_s=1.0)
    assert publisher._native is True
    return publisher


def test_a_record_the_native_call_refuses_goes_through_produce_and_raises_there() -> None:
    publisher = _native_publisher()
    odd = OutRecord("scans", b"k", b"v", [("n", 1)])  # type: ignore[list-item]
    try:
        with pytest.raises(TypeError, match="header value"):
            publisher._produce_all([_record(0), _record(1), odd, _record(3)])
        assert len(publisher._producer) == 2
    finally:
        publisher._producer.purge()


def test_a_full_queue_is_waited_for_then_reported_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(producer_module, "_BUFFER_FULL_RETRIES", 3)
    publisher = _native_publisher(**{"queue.buffering.max.messages": 5})
    try:
        with pytest.raises(KafkaRetriableError, match="queue stayed full"):
            publisher._produce_all([_record(n) for n in range(8)])
        assert len(publisher._producer) == 5
    finally:
        publisher._producer.purge()


def test_records_after_one_produce_took_go_back_to_the_native_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publisher = _native_publisher()
    calls: list[tuple[int, int]] = []

    def produce(producer: Producer, records: list[OutRecord], start: int) -> int:
        done = native(producer, records, start)
        calls.append((start, done))
        return done

    native = _produce.produce
    monkeypatch.setattr(_produce, "produce", produce)
    # A str key: produce() takes it, the native call does not.
    str_key = OutRecord("scans", "k", b"v", [("n", "v")])  # type: ignore[arg-type]
    try:
        publisher._produce_all([_record(0), str_key, *(_record(n) for n in range(2, 300))])
        assert calls == [(0, 1), (2, 300)]
        assert len(publisher._producer) == 300
    finally:
        publisher._producer.purge()
