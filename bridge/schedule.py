"""When the service polls again after a cycle."""

from __future__ import annotations

import random

from bridge.backoff import Backoff

__all__ = ["PollSchedule"]


class PollSchedule:
    """At once while a cycle stopped short of now (more is waiting); one minimum interval
    after a cycle that found scans; doubling up to the maximum while nothing arrives, and
    while cycles fail (jittered, so that replicas failing together do not retry together).
    While webhooks flow, polling is the backstop and runs every
    ``backstop_s``. Intervals run from one poll's start to the next, so a new scan waits at
    most one interval plus one cycle. A cycle Kafka failed is tried again after the minimum
    interval."""

    def __init__(
        self,
        min_s: float,
        max_s: float,
        backstop_s: float | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self.backstop_s = max_s if backstop_s is None else backstop_s
        self.interval_s = min_s
        self._failures = Backoff(min_s, max_s, rng=rng)

    def after_cycle(
        self, *, busy: bool, found: bool, took_s: float, pushing: bool = False
    ) -> float:
        """Seconds to wait before the next poll."""
        self._failures.reset()
        if busy:
            self.interval_s = self.min_s
            return 0.0
        if pushing:
            self.interval_s = self.backstop_s
        else:
            self.interval_s = self.min_s if found else min(self.interval_s * 2, self.max_s)
        return max(0.0, self.interval_s - took_s)

    def after_failure(self) -> float:
        """Seconds to wait before retrying a failed cycle: at least the minimum interval,
        growing with each failure in a row up to the maximum."""
        return self._failures.next()

    def after_kafka_failure(self) -> float:
        """Seconds to wait before retrying a cycle Kafka failed: the minimum interval, never
        doubled. Kafka's calls wait out an outage themselves (a delivery up to its timeout,
        a coordinator until it is found), so a growing pause would only hold back the first
        try after the brokers are back: a broker failover would cost that much more."""
        return self.min_s
