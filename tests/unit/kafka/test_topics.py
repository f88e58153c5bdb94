"""TopicManager.ensure asks about each topic by name, with auto-creation off, and never lists
the cluster's topics: that listing's CPU grows with the cluster, at every source's start.
(Against a real broker that creates what clients ask about:
tests/integration/test_auto_create_broker.py; hidden topics: tests/integration/secure/.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import KafkaError

from bridge.errors import TopicMissingError
from bridge.kafka import topics as topics_module
from bridge.kafka.topics import TopicManager
from tests.unit.kafka.fake_metadata import ClusterMeta, TopicMeta


@dataclass
class FakeAdmin:
    """Topics that exist, and what the broker answers about the others."""

    conf: dict[str, Any]
    existing: dict[str, TopicMeta]
    asked: list[str] = field(default_factory=list)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMeta:
        assert topic is not None, "listed every topic of the cluster"
        self.asked.append(topic)
        unknown = TopicMeta({}, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
        found = self.existing.get(topic, unknown)
        return ClusterMeta({topic: found})


def _manager(monkeypatch: pytest.MonkeyPatch, existing: dict[str, TopicMeta]) -> TopicManager:
    monkeypatch.setattr(topics_module, "AdminClient", lambda conf: FakeAdmin(conf, existing))
    return TopicManager({"bootstrap.servers": "x:1"}, create=False, partitions=3,
                        replication_factor=1)  # fmt: skip


def test_each_topic_is_asked_about_by_name_with_auto_creation_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manager = _manager(monkeypatch, {"scans": TopicMeta({0: None}), "dlq": TopicMeta({0: None})})
    manager.ensure(["scans", "dlq"])
    admin = manager._admin
    assert isinstance(admin, FakeAdmin)
    assert admin.asked == ["scans", "dlq"]
    assert admin.conf["allow.auto.create.topics"] is False
    manager.ensure(["scans"])  # known now: not asked again
    assert admin.asked == ["scans", "dlq"]


def test_missing_and_hidden_topics_are_the_ones_named(monkeypatch: pytest.MonkeyPatch) -> None:
    hidden = TopicMeta({}, KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    leaderless = TopicMeta({0: None}, KafkaError(KafkaError.LEADER_NOT_AVAILABLE))
    manager = _manager(
        monkeypatch, {"scans": TopicMeta({0: None}), "state": leaderless, "dlq": hidden}
    )
    monkeypatch.setattr(manager, "_raise_if_hidden", lambda topics: None)
    with pytest.raises(TopicMissingError) as raised:
        manager.ensure(["scans", "state", "dlq", "gone"])
    # A topic without a leader for now exists; one the principal may not see does not,
    # as far as the cluster's listing goes (the secure suite covers what is said then).
    assert "topic(s) dlq, gone do not exist" in str(raised.value)
