"""Where a source's webhook events continue, on the real broker: the position its checkpoint
carries, or, for a checkpoint written before positions rode in it, the one older versions
committed to the inbox group."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.errors import ConfigError
from bridge.kafka.checkpoint import InboxPosition
from bridge.kafka.routing import stable_partition
from bridge.webhook.inbox import InboxReader

PARTITIONS = 3


@pytest.fixture
def inbox(kafka_bootstrap: str) -> tuple[str, int]:
    """A fresh inbox topic holding events 0-4 of source ``src`` in its partition."""
    topic = f"inbox-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    partition = stable_partition("src", PARTITIONS)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for n in range(5):
        producer.produce(topic, f"event-{n}".encode(), b"src", partition=partition)
    assert producer.flush(30) == 0
    return topic, partition


def _bodies(reader: InboxReader, expect: int) -> list[bytes]:
    """What the reader takes until ``expect`` events came (or 20 s went by), and then
    whatever else comes within a moment: too many shows as well as too few."""
    bodies: list[bytes] = []
    for _ in range(40):
        if len(bodies) >= expect:
            break
        batch = reader.take(0.5, 0.05)
        if batch is not None:
            bodies += [e.body for e in batch.events]
    batch = reader.take(0.3, 0.0)
    if batch is not None:
        bodies += [e.body for e in batch.events]
    return bodies


def test_the_checkpoints_position_is_where_reading_starts(
    kafka_bootstrap: str, inbox: tuple[str, int]
) -> None:
    topic, partition = inbox
    # The pipeline's position, which its committed transactions move on.
    committed = [InboxPosition(partition, 3)]
    reader = InboxReader(
        {"bootstrap.servers": kafka_bootstrap}, topic, "src", lambda: committed[-1]
    )
    reader.open(PARTITIONS)
    try:
        assert _bodies(reader, 2) == [b"event-3", b"event-4"]
        # A failed transaction: what was taken is read again from the last committed
        # position, which a committed one moves on.
        reader.reopen()
        assert _bodies(reader, 2) == [b"event-3", b"event-4"]
        committed.append(InboxPosition(partition, 4))
        reader.reopen()
        assert _bodies(reader, 1) == [b"event-4"]
    finally:
        reader.close()


def test_a_checkpoint_without_a_position_continues_where_the_inbox_group_left_off(
    kafka_bootstrap: str, inbox: tuple[str, int]
) -> None:
    """After an upgrade: the old version committed the position to the group."""
    topic, partition = inbox
    reader = InboxReader({"bootstrap.servers": kafka_bootstrap}, topic, "src", lambda: None)
    old = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": reader.group_id,
            "enable.auto.commit": False,
        }
    )
    old.commit(offsets=[TopicPartition(topic, partition, 2)], asynchronous=False)
    old.close()
    reader.open(PARTITIONS)
    try:
        assert _bodies(reader, 3) == [b"event-2", b"event-3", b"event-4"]
    finally:
        reader.close()


def test_no_position_anywhere_reads_from_the_start(
    kafka_bootstrap: str, inbox: tuple[str, int]
) -> None:
    topic, _ = inbox
    reader = InboxReader({"bootstrap.servers": kafka_bootstrap}, topic, "src", lambda: None)
    reader.open(PARTITIONS)
    try:
        assert _bodies(reader, 5) == [f"event-{n}".encode() for n in range(5)]
    finally:
        reader.close()


def test_a_changed_partition_count_stops_the_source(
    kafka_bootstrap: str, inbox: tuple[str, int]
) -> None:
    topic, partition = inbox
    moved = InboxPosition(partition + 1, 3)
    reader = InboxReader({"bootstrap.servers": kafka_bootstrap}, topic, "src", lambda: moved)
    with pytest.raises(ConfigError, match="partition count must not change"):
        reader.open(PARTITIONS)
