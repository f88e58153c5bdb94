"""How a topic's retention is said to the operator (``check``, ``backfill``)."""

from __future__ import annotations

import pytest

from bridge.kafka.retention import Retention, describe_ms


@pytest.mark.parametrize(
    ("ms", "text"),
    [(604_800_000, "7d"), (5_400_000, "90m"), (3_600_000, "1h"), (1_500, "1.5s"), (0, "0s")],
)
def test_durations_in_the_largest_unit_that_divides_them(ms: int, text: str) -> None:
    assert describe_ms(ms) == text


def test_what_each_retention_means_for_what_the_bridge_publishes() -> None:
    assert Retention("s", 604_800_000).describe() == (
        "s: records are kept 7d after they are published (retention.ms; the Kafka timestamp"
        " is the publication)"
    )
    assert "without a time limit" in Retention("s", None).describe()
    assert "keeps only the last record per key" in Retention("s", 1, compacted=True).describe()
    assert Retention("s", error="DescribeConfigs is not granted").describe() == (
        "s: retention unknown (DescribeConfigs is not granted)"
    )
