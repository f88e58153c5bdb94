"""The test bed itself: ``scripts/kafka-cluster`` finds each coordinator where Kafka says it
is, and its fault commands do what they say."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.integration.harness import wait_for
from tests.kafka_cluster import NODES, KafkaCluster


def test_roles_agree_with_kafka(cluster: KafkaCluster) -> None:
    tag = uuid.uuid4().hex[:8]
    topic = f"bed-{tag}"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, 6)])[topic].result(60)
    # Ids whose Java hash is negative as well as positive: Kafka takes Math.abs of it.
    txn_ids = [f"passentry-bridge.{tag}-{n}" for n in range(6)]
    groups = [f"bed-{tag}-group-{n}" for n in range(4)]
    for txn_id in txn_ids:
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": txn_id})
        producer.init_transactions(60)
    for group in groups:
        consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group})
        consumer.subscribe([topic])
        wait_for(lambda c=consumer: bool(c.poll(0.2) or c.assignment()), 60, "an assignment")
        consumer.close()
    roles = cluster.roles(txn_ids=txn_ids, groups=groups, topics=[topic])
    assert sorted(roles.brokers) == list(NODES)
    assert roles.controller in NODES
    described = admin.describe_consumer_groups(groups)
    for group in groups:
        assert roles.group_coordinators[group] == described[group].result().coordinator.id
    # Which node leads the id's partition of __transaction_state, and whom Kafka names.
    for txn_id, node in roles.transaction_coordinators.items():
        assert node in NODES
        assert roles.asked[txn_id] == node
    assert set(roles.leaders[topic]) == set(range(6))
    assert roles.busiest_leader(topic) in NODES


def test_a_killed_node_comes_back_on_its_data(cluster: KafkaCluster) -> None:
    node = NODES[-1]
    cluster.kill(node)
    assert cluster.states()[node] == "stopped"
    cluster.start(node)
    cluster.wait_healthy()
    cluster.freeze(node)
    assert cluster.states()[node] == "frozen"
    cluster.thaw(node)
    assert cluster.states()[node] == "running"
