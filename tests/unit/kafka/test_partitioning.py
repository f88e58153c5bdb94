from __future__ import annotations

import pytest

from bridge.kafka.producer import producer_config
from tests.support import java_partition, murmur2


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # Kafka's own UtilsTest.testMurmur2 vectors.
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_reference_murmur2_matches_java(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_java_partition_of_a_known_key() -> None:
    # toPositive(-790332482) = 1357151166, and 1357151166 % 50 = 16.
    assert java_partition(b"foobar", 50) == 16


def test_producer_uses_the_java_compatible_partitioner_and_is_idempotent() -> None:
    conf = producer_config(
        {"bootstrap.servers": "x:1"},
        transactional_id="passentry-bridge.src",
        compression="lz4",
        linger_ms=5,
        message_timeout_ms=1000,
        transaction_timeout_ms=2000,
    )
    assert conf["partitioner"] == "murmur2_random"
    assert conf["enable.idempotence"] is True
    assert conf["acks"] == "all"
    assert conf["compression.type"] == "lz4"
    assert conf["transactional.id"] == "passentry-bridge.src"
