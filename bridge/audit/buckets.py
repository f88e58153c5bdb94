"""Time buckets: the unit an audit compares PassEntry with Kafka in.

A bucket is the half-open range ``[start_ms, end_ms)`` of scan creation times (the UUIDv7
time, never ``scannedAt``). Buckets start at ``--since`` and step by ``--bucket``; the last
one ends at ``--until``. Bisection below a bucket uses whole seconds, like the live sweep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Bucket", "parse_duration_ms", "split_range"]

_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"(\d+)([smhd])")


@dataclass(frozen=True, slots=True)
class Bucket:
    start_ms: int
    end_ms: int

    def holds(self, created_ms: int) -> bool:
        return self.start_ms <= created_ms < self.end_ms


def parse_duration_ms(text: str) -> int:
    """``90s``, ``15m``, ``1h``, ``1d`` (or combinations such as ``1h30m``) as milliseconds."""
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"expected a duration such as 90s, 15m, 1h or 1d, got {text!r}")
    total = sum(int(n) * _UNITS[u] for n, u in parts)
    if total < 1_000:
        raise ValueError(f"a duration must be at least one second, got {text!r}")
    return total


def split_range(since_ms: int, until_ms: int, bucket_ms: int) -> list[Bucket]:
    """``[since, until)`` cut into buckets of ``bucket_ms``; the last may be shorter."""
    if until_ms <= since_ms:
        raise ValueError("the range is empty: --until must be later than --since")
    return [
        Bucket(start, min(start + bucket_ms, until_ms))
        for start in range(since_ms, until_ms, bucket_ms)
    ]
