"""Records handed to librdkafka by bridge/kafka/_produce.c are the records Producer.produce()
writes: on the real broker, in transactions, the same keys, values, headers and partitions,
in the same order."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from bridge.kafka.producer import Publisher
from bridge.kafka.records import OutRecord
from bridge.ops.metrics import Metrics

PARTITIONS = 6
Read = tuple[int, bytes | None, bytes, list[tuple[str, bytes | None]]]


def _records(topic: str, count: int) -> list[OutRecord]:
    out = []
    for n in range(count):
        scan_id = str(uuid.UUID(int=(0x0190 << 112) | n))
        headers: list[tuple[str, str | bytes | None]] = [
            ("content-type", "application/avro; encoding=single-object"),
            ("source-id", "native-test"),
            ("scan-id", scan_id),
            ("ce_id", scan_id),
            ("scan-created-ms", str(1796601600000 + n)),
            ("raw", bytes(range(n % 7))),
            ("ünïcode", "gâte ✓"),
            ("none", None),
        ]
        key = None if n % 50 == 0 else f"gate-{n % 97:03d}".encode()
        out.append(OutRecord(topic, key, b"\xc3\x01" + n.to_bytes(4, "big") * 30, headers))
    return out


def _read(bootstrap: str, topic: str, expected: int) -> list[Read]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    found: list[Read] = []
    deadline = time.monotonic() + 60
    try:
        while len(found) < expected and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error() is not None:
                assert msg is None or msg.error().code() == KafkaError._PARTITION_EOF
                continue
            found.append((msg.partition(), msg.key(), msg.value(), msg.headers() or []))
    finally:
        consumer.close()
    return found


def _publish(bootstrap: str, topic: str, state: str, native: bool) -> None:
    def error_cb(err: Any) -> None:
        raise AssertionError(f"client error: {err}")

    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "transactional.id": f"n-{uuid.uuid4()}",
        "partitioner": "murmur2_random",
        "compression.type": "lz4",
    }
    if native:
        conf["error_cb"] = error_cb  # what lets _produce.bind check the producer's layout
    publisher = Publisher(conf, Metrics(), call_timeout_s=30.0)
    assert publisher._native is native
    publisher.init()
    records = _records(topic, 2500)
    for start in range(0, len(records), 1000):
        checkpoint = OutRecord(state, b"checkpoint", str(start).encode(), [])
        acked = publisher.send(records[start : start + 1000], checkpoint, 30.0)
        assert acked == {topic: len(records[start : start + 1000])}
    publisher.close(5.0)


def test_native_records_are_the_records_produce_writes(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    by_produce, by_native = new_topic(PARTITIONS), new_topic(PARTITIONS)
    state = new_topic(1)
    _publish(kafka_bootstrap, by_produce, state, native=False)
    _publish(kafka_bootstrap, by_native, state, native=True)
    produced = _read(kafka_bootstrap, by_produce, 2500)
    native = _read(kafka_bootstrap, by_native, 2500)
    assert len(produced) == len(native) == 2500

    def keyed(reads: list[Read]) -> list[Read]:
        # Partition by partition, in offset order (the sort is stable).
        return sorted((r for r in reads if r[1] is not None), key=lambda r: r[0])

    def unkeyed(reads: list[Read]) -> list[Read]:
        # murmur2_random puts a record without a key on a random partition.
        return sorted(((0, *r[1:]) for r in reads if r[1] is None), key=lambda r: r[2])

    assert keyed(native) == keyed(produced)
    assert unkeyed(native) == unkeyed(produced)
    assert len(unkeyed(native)) == 50
    # The records differ from one another: the comparison above compared something.
    assert len({r[2] for r in native}) == 2500
    assert {r[0] for r in native} == set(range(PARTITIONS))
