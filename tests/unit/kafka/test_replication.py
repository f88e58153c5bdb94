"""How ``check`` judges a topic's replication: can it lose a broker and keep exactly once?"""

from __future__ import annotations

import pytest

from bridge.kafka.replication import Durability


def test_three_replicas_two_in_sync_and_no_unclean_election_keep_everything() -> None:
    found = Durability("scans", replication_factor=3, min_insync=2, unclean=False)
    assert found.risks() == []
    assert found.describe() == (
        "scans: replication factor 3, min.insync.replicas 2, unclean leader election off:"
        " a broker can be lost without losing a commit or stopping writes"
    )


@pytest.mark.parametrize(
    ("rf", "least", "unclean", "said"),
    [
        (1, 1, False, ["one replica: losing its broker stops the topic"]),
        (3, 1, False, ["min.insync.replicas 1: while its followers lag, Kafka takes commits"]),
        (2, 1, False, ["min.insync.replicas 1: while its followers lag, Kafka takes commits"]),
        (2, 2, False, ["min.insync.replicas 2 of 2 replicas: losing any broker stops"]),
        (3, 3, False, ["min.insync.replicas 3 of 3 replicas: losing any broker stops"]),
        (3, 2, True, ["unclean.leader.election.enable=true: a replica that missed"]),
        (
            3,
            1,
            True,
            [
                "min.insync.replicas 1: while its followers lag",
                "unclean.leader.election.enable=true",
            ],
        ),
    ],
)
def test_what_a_broker_loss_would_cost(rf: int, least: int, unclean: bool, said: list[str]) -> None:
    found = Durability("scans", replication_factor=rf, min_insync=least, unclean=unclean)
    risks = found.risks()
    assert len(risks) == len(said)
    for risk, start in zip(risks, said, strict=True):
        assert risk.startswith(start)
    assert found.describe().endswith(
        "(recommended: replication factor 3, min.insync.replicas 2, unclean leader election off)"
    )


def test_unknown_and_missing_topics_are_said_as_such() -> None:
    assert Durability("s", error="DescribeConfigs is not granted").describe() == (
        "s: replication unknown (DescribeConfigs is not granted)"
    )
    missing = Durability("s", error="missing", missing=True)
    assert missing.describe() == "s: not created yet"
    assert missing.risks() == []


@pytest.mark.parametrize(("rf", "least"), [(1, 2), (2, 3)])
def test_more_replicas_in_sync_than_there_are_refuses_every_write(rf: int, least: int) -> None:
    found = Durability("scans", replication_factor=rf, min_insync=least, unclean=False)
    refused = found.refused()
    assert refused is not None
    assert refused.startswith(f"min.insync.replicas {least} with {rf} replica")
    assert refused.endswith("Kafka refuses every write the bridge makes (acks=all)")
    assert refused in found.describe()


def test_a_setting_that_could_not_be_read_is_unknown_not_fine() -> None:
    """No metadata for the topic (no Describe on it): its replica count is unknown, and
    nothing is said to be safe."""
    found = Durability("scans", replication_factor=None, min_insync=2, unclean=False)
    assert found.refused() is None
    assert found.risks() == []
    assert found.describe() == (
        "scans: replication factor unknown, min.insync.replicas 2, unclean leader election off"
    )
