"""``tail`` at kcat's level, on the real broker: where each partition starts (earliest,
latest, an offset, a count from the end, a time), some partitions, exit at the end (-e),
records of one source only, and the envelope with where each record sits and its headers.
Values are the bridge's own Avro records (as the pipeline frames them), plus a dead letter
whose JSON the envelope shows as it is."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer

from bridge.cli.tail import tail
from tests.unit.cli.test_tail import published_records


@pytest.fixture
def topic(kafka_bootstrap: str, new_topic: Callable[..., str]) -> tuple[str, int]:
    """Partition 0: three scans of source ``a``; partition 1: a scan of ``b`` and a dead
    letter of ``b``. Returns the topic and a time (ms) between the first two of partition 0."""
    name = new_topic(partitions=2)
    scan_a, scan_b = published_records()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    base = int(time.time() * 1000) - 60_000

    def send(partition: int, value: bytes, source: str, at: int, **headers: str) -> None:
        producer.produce(
            name, value, f"gate-{partition}".encode(), partition=partition, timestamp=at,
            headers=[("source-id", source), *headers.items()],
        )  # fmt: skip

    send(0, scan_a, "a", base)
    send(0, scan_a, "a", base + 20_000)
    send(0, scan_b, "a", base + 30_000)
    send(1, scan_b, "b", base + 5_000)
    send(1, b'{"id": "not-a-uuid"}', "b", base + 40_000, **{"dlq-reason": "invalid_id"})
    assert producer.flush(30) == 0
    return name, base + 10_000


def _tail(kafka_bootstrap: str, *args: str, source: str = "a") -> list[str]:
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "BRIDGE_SOURCE_ID": source}
    result = CliRunner().invoke(tail, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_exit_at_end_with_an_envelope(kafka_bootstrap: str, topic: tuple[str, int]) -> None:
    name, _ = topic
    lines = _tail(kafka_bootstrap, "--topic", name, "--from", "earliest", "-e",
                  "--format", "envelope")  # fmt: skip
    envelopes = [json.loads(line) for line in lines]
    assert sorted((e["partition"], e["offset"]) for e in envelopes) == [
        (0, 0), (0, 1), (0, 2), (1, 0), (1, 1),
    ]  # fmt: skip
    first = next(e for e in envelopes if (e["partition"], e["offset"]) == (0, 0))
    assert first["topic"] == name
    assert first["key"] == "gate-0"
    assert first["headers"]["source-id"] == "a"
    assert first["value"]["readerId"] == "gate-3"  # decoded Avro
    dead = next(e for e in envelopes if (e["partition"], e["offset"]) == (1, 1))
    assert dead["value"] == {"id": "not-a-uuid"}  # a dead letter's JSON, as it is
    assert dead["headers"]["dlq-reason"] == "invalid_id"
    assert "undecodable" in dead


def test_where_each_partition_starts(kafka_bootstrap: str, topic: tuple[str, int]) -> None:
    name, between = topic

    def positions(*args: str) -> list[tuple[int, int]]:
        lines = _tail(kafka_bootstrap, "--topic", name, "-e", "--format", "envelope", *args)
        return sorted((e["partition"], e["offset"]) for e in map(json.loads, lines))

    assert positions("--from", "-1") == [(0, 2), (1, 1)]
    assert positions("--from", "1", "--partition", "0") == [(0, 1), (0, 2)]
    assert positions("--from", "latest") == []
    when = datetime.fromtimestamp(between / 1000, tz=UTC).isoformat()
    assert positions("--from", when) == [(0, 1), (0, 2), (1, 1)]
    assert positions("--from", "earliest", "--partition", "1") == [(1, 0), (1, 1)]


def test_one_source_and_the_short_format(kafka_bootstrap: str, topic: tuple[str, int]) -> None:
    name, _ = topic
    lines = _tail(kafka_bootstrap, "--topic", name, "--from", "earliest", "-e",
                  "--source", "a", "--format", "pretty")  # fmt: skip
    assert len(lines) == 3
    assert all("scan=" in line for line in lines)
    lines = _tail(kafka_bootstrap, "--topic", name, "--from", "earliest", "-e",
                  "--source", "b", "--format", "pretty", source="b")  # fmt: skip
    assert len(lines) == 2
    assert lines[1].endswith("dead letter (invalid_id)")
