from __future__ import annotations

import random
from collections import Counter

import pytest

from bridge.backoff import Backoff


def test_waits_stay_between_the_base_and_the_cap_and_reach_the_cap() -> None:
    backoff = Backoff(0.5, 5.0, rng=random.Random(1))
    waits = [backoff.next() for _ in range(30)]
    assert min(waits) >= 0.5
    assert max(waits) == 5.0
    assert backoff.attempts == 30


def test_a_success_starts_the_next_failure_from_the_base() -> None:
    backoff = Backoff(1.0, 60.0, rng=random.Random(2))
    for _ in range(10):
        backoff.next()
    backoff.reset()
    assert backoff.attempts == 0
    assert 1.0 <= backoff.next() <= 1.5


def test_replicas_that_fail_together_retry_apart() -> None:
    """Twenty replicas lose the broker at the same instant. Retrying on a fixed schedule,
    all twenty would knock in the same instant, every time; jittered, at most two share any
    hundredth of a second, and the spread grows with each retry."""
    replicas = [Backoff(1.0, 30.0, rng=random.Random(seed)) for seed in range(20)]
    at = [0.0] * len(replicas)
    spreads = []
    for _ in range(6):
        at = [t + replica.next() for t, replica in zip(at, replicas, strict=True)]
        crowd = Counter(round(t, 2) for t in at).most_common(1)[0][1]
        assert crowd <= 2
        spreads.append(max(at) - min(at))
    assert spreads[0] > 0.25
    assert spreads == sorted(spreads)


def test_a_base_above_the_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="base_s <= cap_s"):
        Backoff(10.0, 5.0)
