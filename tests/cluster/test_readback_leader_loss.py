"""A read-back planned just as its partition's leader dies: a restore asks each partition's
high watermark of its leader, and a SIGKILLed leader stays in the metadata until the
controller fences it (seconds later). The plan must wait for the new leader and answer, not
fail or sit out its whole timeout on the dead one."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.kafka.readback import plan_reads, reader
from tests.kafka_cluster import KafkaCluster

RECORDS = 10
TIMEOUT_S = 60.0


@pytest.mark.parametrize("metadata", ["known", "fresh"])
def test_a_plan_made_as_the_leader_dies_waits_for_the_next_leader(
    cluster: KafkaCluster, metadata: str
) -> None:
    topic = f"readback-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, 1)])[topic].result(60)
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for _ in range(RECORDS):
        producer.produce(topic, b"scan")
    assert producer.flush(30) == 0
    leader = cluster.roles(topics=[topic]).leaders[topic][0]

    consumer = reader({"bootstrap.servers": cluster.bootstrap}, "readback-", "read_uncommitted")
    try:
        if metadata == "known":
            # The client already knows the leader that is about to die: its first ask goes there.
            consumer.list_topics(topic, timeout=10)
        cluster.kill(leader)
        began = time.monotonic()
        plan = plan_reads(consumer, [TopicPartition(topic, 0, -1)], TIMEOUT_S)
        took = time.monotonic() - began
    finally:
        consumer.close()
    assert plan.ends == {(topic, 0): RECORDS}
    assert [(tp.topic, tp.offset) for tp in plan.starts] == [(topic, 0)]
    print(f"planned {took:.1f}s after the leader's SIGKILL ({metadata} metadata)")
    assert took < TIMEOUT_S - 5, "the plan sat out its timeout instead of finding the new leader"
