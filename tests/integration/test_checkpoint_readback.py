"""Restore reads what this source committed even while another writer of the same partition
has a transaction open: the state topic has one partition for every source, and the output
partitions are shared too. A read_committed consumer stops at the open transaction's first
record; taking that for the end restored an older checkpoint (and a window without the
last transaction's ids), and the scans were published again."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.dedup import DedupWindow, RejectMemory
from bridge.errors import KafkaRetriableError
from bridge.kafka.checkpoint import CheckpointStore, make_checkpoint
from bridge.kafka.producer import Publisher, producer_config, transactional_id
from bridge.kafka.records import Headers, OutRecord
from bridge.ops.metrics import Metrics
from bridge.uuid7 import UUIDv7Minter


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:10]
    state, scans = f"readback-{tag}-state", f"readback-{tag}-scans"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(state, 1, 1), NewTopic(scans, 1, 1)]).values():
        future.result(30)
    yield state, scans
    admin.delete_topics([state, scans])


def _publisher(bootstrap: str, source_id: str) -> Publisher:
    conf = producer_config(
        {"bootstrap.servers": bootstrap},
        transactional_id=transactional_id(source_id),
        compression="none",
        linger_ms=0,
        message_timeout_ms=30_000,
        transaction_timeout_ms=60_000,
    )
    publisher = Publisher(conf, Metrics(), call_timeout_s=30)
    publisher.init()
    return publisher


def _scan(topic: str, source: str, scan: uuid.UUID) -> OutRecord:
    headers: Headers = [("source-id", source.encode()), ("scan-id", str(scan).encode())]
    return OutRecord(topic, b"reader", b"value", headers, scan.int >> 80)


def _commit_scans(
    publisher: Publisher, store: CheckpointStore, scans: str, minter: UUIDv7Minter
) -> list[uuid.UUID]:
    """Three new scans of the store's source, committed with their checkpoint."""
    source = store.source_id
    new = [minter.mint() for _ in range(3)]
    records = [_scan(scans, source, s) for s in new]
    publisher.send(records, store.record(make_checkpoint(source, new[-1].int, [scans])), 30)
    return new


def _open_transaction(bootstrap: str, state: str, scans: str) -> Producer:
    """Another source's writer, its transaction begun before ours and left open."""
    other = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"other-{state}"})
    other.init_transactions(30)
    other.begin_transaction()
    other.produce(state, b"{}", key=b"other-source")
    other.produce(scans, b"x", headers=[("source-id", b"other-source")])
    assert other.flush(30) == 0
    return other


def test_restore_waits_for_another_writers_open_transaction(
    kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    state, scans = topics
    source = "readback-a"
    store = CheckpointStore({"bootstrap.servers": kafka_bootstrap}, state, source)
    publisher = _publisher(kafka_bootstrap, source)
    minter = UUIDv7Minter()
    first = _commit_scans(publisher, store, scans, minter)

    other = _open_transaction(kafka_bootstrap, state, scans)
    # Committed after the other transaction began: behind its open records on both topics.
    second = _commit_scans(publisher, store, scans, minter)

    timer = threading.Timer(2.0, other.commit_transaction, args=(30,))
    timer.start()
    try:
        started = time.monotonic()
        checkpoint = store.read()
        waited = time.monotonic() - started
        assert checkpoint is not None
        assert checkpoint.watermark == str(second[-1])
        # It waited for the other transaction rather than settling for what was stable.
        assert waited >= 1.0

        window = DedupWindow(lookback_ms=300_000)
        window.reset(checkpoint.watermark_int())
        stats = store.rebuild(window, RejectMemory(60), [scans], f"{scans}-dlq")
        assert all(s.int in window for s in first + second)
        assert stats.ids == 6
    finally:
        timer.join()
        publisher.close(5)


def test_a_transaction_that_stays_open_ends_the_restore_with_a_retriable_error(
    kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    state, scans = topics
    source = "readback-b"
    store = CheckpointStore({"bootstrap.servers": kafka_bootstrap}, state, source)
    publisher = _publisher(kafka_bootstrap, source)
    other = _open_transaction(kafka_bootstrap, state, scans)
    watermark = UUIDv7Minter().mint().int
    publisher.send([], store.record(make_checkpoint(source, watermark, [scans])), 30)
    try:
        with pytest.raises(KafkaRetriableError, match="transaction still open"):
            store.read(timeout_s=2)
    finally:
        other.abort_transaction(30)
        publisher.close(5)
    assert store.read() is not None


def test_the_window_is_found_behind_another_writers_open_transaction(
    kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    """The offsets where the window starts are looked up by time. Asked read_committed, the
    broker answers nothing for a partition whose first record from then on is at or past its
    last stable offset: here the other writer's open record comes first, so the rebuild
    skipped the partition and the window lacked every id this source had committed there."""
    state, scans = topics
    source = "readback-c"
    store = CheckpointStore({"bootstrap.servers": kafka_bootstrap}, state, source)
    publisher = _publisher(kafka_bootstrap, source)
    other = _open_transaction(kafka_bootstrap, state, scans)
    ours = _commit_scans(publisher, store, scans, UUIDv7Minter())

    timer = threading.Timer(2.0, other.abort_transaction, args=(30,))
    timer.start()
    try:
        window = DedupWindow(lookback_ms=300_000)
        window.reset(ours[-1].int)
        with store.sharing_lookups():
            stats = store.rebuild(window, RejectMemory(60), [scans], f"{scans}-dlq")
        assert all(s.int in window for s in ours)
        assert stats.ids == 3
    finally:
        timer.join()
        publisher.close(5)
