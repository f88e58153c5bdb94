"""Small helpers shared by tests of every kind."""

from __future__ import annotations

from pathlib import Path

from bridge.ops.metrics import Metrics
from scripts.lib.jvm_service import free_ports

# Test data: the documented example page, schema pairs for the compatibility gate.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SCHEMA_FIXTURES = FIXTURES / "schemas"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 (the test beds' own draw)."""
    return free_ports(1)[0]


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    """A metric's current value, summed over the series that have these labels (whatever
    else they have: a source's series carry its source_id); 0 when there is none yet."""
    total = 0.0
    for family in metrics.registry.collect():
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                total += found.value
    return total


def murmur2(data: bytes) -> int:
    """Kafka's Java ``Utils.murmur2``, as a signed 32-bit int: the reference for placement."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length % 4
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h >= 1 << 31 else h


def java_partition(key: bytes, partitions: int) -> int:
    """The partition Java's default partitioner picks for a non-null key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class FakeClock:
    """Monotonic seconds that move only when a test, or the code's injected ``sleep``, moves
    them: waits become instant and deadlines exact."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
