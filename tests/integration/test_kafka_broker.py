"""The test broker is fit for exactly-once work: transactions commit/abort, idempotence."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

PARTITIONS = 3
TIMEOUT = 60.0


def _end_offsets(admin: AdminClient, topic: str, isolation: IsolationLevel) -> dict[int, int]:
    request = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(PARTITIONS)}
    futures = admin.list_offsets(request, isolation_level=isolation, request_timeout=10)
    return {tp.partition: f.result().offset for tp, f in futures.items()}


def _wait_no_open_transactions(admin: AdminClient, topic: str) -> None:
    """Wait until the last stable offset equals the high watermark on every partition.

    EndTxn returns before the coordinator has written the commit/abort markers, so right after
    commit_transaction()/abort_transaction() a read_committed reader may still be held back.
    """
    deadline = time.monotonic() + TIMEOUT
    while True:
        stable = _end_offsets(admin, topic, IsolationLevel.READ_COMMITTED)
        high = _end_offsets(admin, topic, IsolationLevel.READ_UNCOMMITTED)
        if stable == high:
            return
        assert time.monotonic() < deadline, f"transactions still open: LSO {stable} HWM {high}"
        time.sleep(0.05)


def _read_all(bootstrap: str, topic: str, isolation: str) -> dict[int, list[str]]:
    """Read every partition from the beginning to its end; values per partition, in order."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"verify-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        values: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
        at_end: set[int] = set()
        deadline = time.monotonic() + TIMEOUT
        while len(at_end) < PARTITIONS:
            assert time.monotonic() < deadline, f"no end of partition on {set(values) - at_end}"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, err
                at_end.add(msg.partition())
                continue
            values[msg.partition()].append(msg.value().decode())
        return values
    finally:
        consumer.close()


class _Deliveries:
    def __init__(self) -> None:
        self.ok: list[tuple[int, int, str]] = []
        self.failed: list[Any] = []

    def __call__(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.failed.append(err)
        else:
            self.ok.append((msg.partition(), msg.offset(), msg.value().decode()))


def _batch(name: str, n: int = 9) -> list[tuple[int, str]]:
    return [(i % PARTITIONS, f"{name}-{i}") for i in range(n)]


def _by_partition(*batches: list[tuple[int, str]]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    for batch in batches:
        for partition, value in batch:
            out[partition].append(value)
    return out


def test_committed_transaction_visible_aborted_one_not(
    kafka_bootstrap: str, kafka_admin: AdminClient, new_topic: Any
) -> None:
    topic = new_topic(partitions=PARTITIONS)
    batch_a, batch_b = _batch("A"), _batch("B")
    deliveries = _Deliveries()
    producer = Producer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "transactional.id": f"test-txn-{uuid.uuid4()}",
            "linger.ms": 5,
        }
    )
    producer.init_transactions(30)

    producer.begin_transaction()
    for partition, value in batch_a:
        producer.produce(topic, value=value, partition=partition, on_delivery=deliveries)
    producer.commit_transaction(30)

    producer.begin_transaction()
    for partition, value in batch_b:
        producer.produce(topic, value=value, partition=partition, on_delivery=deliveries)
    # make sure B really reaches the log before the abort (abort purges unsent messages)
    assert producer.flush(30) == 0
    producer.abort_transaction(30)

    assert deliveries.failed == []
    assert sorted(v for _, _, v in deliveries.ok) == sorted(v for _, v in batch_a + batch_b)

    _wait_no_open_transactions(kafka_admin, topic)
    assert _read_all(kafka_bootstrap, topic, "read_committed") == _by_partition(batch_a)
    # the aborted records are in the log: the abort, not a lost write, hid them above
    assert _read_all(kafka_bootstrap, topic, "read_uncommitted") == _by_partition(batch_a, batch_b)


def test_idempotent_producer(kafka_bootstrap: str, new_topic: Any) -> None:
    topic = new_topic(partitions=PARTITIONS)
    batch = _batch("I", 300)
    deliveries = _Deliveries()
    producer = Producer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "max.in.flight.requests.per.connection": 5,
        }
    )
    for partition, value in batch:
        producer.produce(topic, value=value, partition=partition, on_delivery=deliveries)
    assert producer.flush(30) == 0

    assert deliveries.failed == []
    # every record written exactly once, offsets dense from 0 in produce order
    for partition in range(PARTITIONS):
        mine = sorted((off, v) for p, off, v in deliveries.ok if p == partition)
        assert [off for off, _ in mine] == list(range(len(mine)))
        assert [v for _, v in mine] == _by_partition(batch)[partition]
    assert _read_all(kafka_bootstrap, topic, "read_committed") == _by_partition(batch)
