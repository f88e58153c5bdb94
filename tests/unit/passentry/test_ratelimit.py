"""The request budget's pacing: bursts of a tenth of a second's budget, never more per
window than the budget allows."""

from __future__ import annotations

import random

import pytest

from bridge.passentry.ratelimit import RequestBudget


class _Callers:
    """Callers that ask the budget at chosen moments; each request starts when its wait
    ends. The sleeps are not taken, so many callers can be waiting at once, as the fetch
    threads are."""

    def __init__(self, per_second: float) -> None:
        self.now = 0.0
        self.budget = RequestBudget(per_second, clock=lambda: self.now, sleep=lambda s: None)
        self.starts: list[float] = []

    def ask(self, at: float) -> float:
        self.now = at
        start = at + self.budget.acquire()
        self.starts.append(start)
        return start


def _most_in_any_window(starts: list[float], width: float) -> int:
    """The most starts in any half-open window ``[t, t + width)``."""
    ordered = sorted(starts)
    most, first = 0, 0
    for last, start in enumerate(ordered):
        while start - ordered[first] >= width - 1e-9:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.mark.parametrize(("per_second", "burst"), [(9, 1), (10, 1), (19.5, 1), (20, 2), (100, 10)])
def test_burst_is_a_tenth_of_a_seconds_budget_and_at_least_one(
    per_second: float, burst: int
) -> None:
    assert RequestBudget(per_second).burst == burst


def test_at_the_default_budget_requests_start_evenly_spaced() -> None:
    callers = _Callers(9)
    starts = [callers.ask(0.0) for _ in range(10)]
    assert starts == pytest.approx([n / 9 for n in range(10)])


def test_a_burst_starts_back_to_back_and_the_next_waits_for_its_window() -> None:
    callers = _Callers(100)
    first = [callers.ask(0.0) for _ in range(10)]
    assert first == [0.0] * 10
    # The eleventh waits until the first start is a window (0.1 s) old, the twelfth until
    # the second is: bursts keep their shape.
    assert callers.ask(0.0) == pytest.approx(0.1)
    assert callers.ask(0.05) == pytest.approx(0.1)
    # An idle spell does not bank more than a burst.
    later = [callers.ask(5.0) for _ in range(11)]
    assert later == pytest.approx([5.0] * 10 + [5.1])


@pytest.mark.parametrize("per_second", [9, 20, 100, 37])
def test_no_second_holds_more_starts_than_the_budget(per_second: float) -> None:
    rng = random.Random(per_second)
    callers = _Callers(per_second)
    burst = callers.budget.burst
    window = burst / per_second
    at = 0.0
    for n in range(3_000):
        # Callers in clumps and trickles, some far faster than the budget allows.
        at += rng.choice([0.0, 0.0, 0.001, rng.uniform(0, 0.3)])
        start = callers.ask(at)
        # No caller waits longer than it must: until the start ``burst`` before its own
        # is a window old.
        earliest = at if n < burst else max(at, callers.starts[n - burst] + window)
        assert start == pytest.approx(earliest)
    assert _most_in_any_window(callers.starts, window) <= burst
    # A second is a whole number of windows when the burst divides the budget; otherwise
    # it may hold one more burst's worth.
    allowed = burst * -(-1 // window) if per_second % burst else per_second
    assert _most_in_any_window(callers.starts, 1.0) <= allowed


def test_a_429_widens_the_window() -> None:
    callers = _Callers(100)
    callers.budget.throttled()
    for _ in range(10):
        callers.ask(0.0)
    assert callers.ask(0.0) == pytest.approx(0.11)


def test_a_start_taken_only_if_it_comes_soon() -> None:
    callers = _Callers(9)
    budget = callers.budget
    assert budget.acquire_within(0.0) == 0.0  # nothing started yet
    assert budget.acquire_within(0.05) is None  # the next start is 1/9 s away: not taken
    assert budget.acquire_within(0.2) == pytest.approx(1 / 9)  # taken, and waited for
    # A caller that waits keeps its place: what is asked for after it comes after it.
    assert callers.ask(0.15) == pytest.approx(2 / 9)
    callers.now = 0.15
    assert budget.acquire_within(0.15) is None
    assert budget.acquire_within(0.2) == pytest.approx(3 / 9 - 0.15)
    # The server asked for a pause: nothing starts before it ends.
    callers.now = 1.0
    budget.pause(0.5)
    assert budget.acquire_within(0.25) is None
    assert budget.acquire_within(0.6) == pytest.approx(0.5)


def test_starts_taken_if_soon_and_waited_for_never_crowd_a_window() -> None:
    """Starts taken only if soon, beside callers that wait, at random moments: at most
    ``burst`` in any ``burst/budget`` seconds, as with waiting callers alone."""
    rng = random.Random(7)
    callers = _Callers(100)
    budget = callers.budget
    at = 0.0
    for _ in range(2_000):
        at += rng.expovariate(300)
        if rng.random() < 0.5:
            callers.ask(at)
        else:
            callers.now = at
            wait = budget.acquire_within(rng.choice([0.0, 0.01, 0.05]))
            if wait is not None:
                callers.starts.append(at + wait)
    assert _most_in_any_window(callers.starts, budget.burst / 100) <= budget.burst
