from __future__ import annotations

import random

import pytest

from bridge.schedule import PollSchedule


def test_a_cycle_that_stopped_short_polls_again_at_once() -> None:
    schedule = PollSchedule(1, 30)
    assert schedule.after_cycle(busy=True, found=True, took_s=0.2) == 0.0


def test_scans_arriving_keep_the_minimum_interval_measured_start_to_start() -> None:
    schedule = PollSchedule(1, 30)
    for _ in range(5):
        assert schedule.after_cycle(busy=False, found=True, took_s=0.3) == pytest.approx(0.7)
    # A cycle longer than the interval is followed by the next one at once.
    assert schedule.after_cycle(busy=False, found=True, took_s=1.4) == 0.0


def test_idle_cycles_back_off_to_the_maximum_and_scans_bring_the_minimum_back() -> None:
    schedule = PollSchedule(1, 30)
    waits = [schedule.after_cycle(busy=False, found=False, took_s=0.0) for _ in range(7)]
    assert waits == [2, 4, 8, 16, 30, 30, 30]
    assert schedule.after_cycle(busy=False, found=True, took_s=0.0) == 1
    schedule.after_cycle(busy=False, found=False, took_s=0.0)
    assert schedule.after_cycle(busy=True, found=False, took_s=0.0) == 0.0
    assert schedule.after_cycle(busy=False, found=False, took_s=0.0) == 2


def test_failures_back_off_from_the_minimum_to_the_maximum_and_a_cycle_starts_over() -> None:
    schedule = PollSchedule(1, 10, rng=random.Random(3))
    waits = [schedule.after_failure() for _ in range(12)]
    assert all(1 <= wait <= 10 for wait in waits)
    assert max(waits) == 10  # failures in a row reach the cap
    assert schedule.after_cycle(busy=False, found=True, took_s=0.0) == 1
    assert schedule.after_failure() <= 1.5  # the next failure starts from the minimum again


def test_a_kafka_failure_is_tried_again_after_the_minimum_interval() -> None:
    schedule = PollSchedule(1, 10)
    for _ in range(3):
        schedule.after_failure()
    assert [schedule.after_kafka_failure() for _ in range(3)] == [1, 1, 1]
