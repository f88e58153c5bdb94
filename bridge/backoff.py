"""How long to wait before trying again: the one backoff every retry in the bridge uses.

Replicas that fail together (a broker restarts under all of them) must not retry together,
or they meet the recovering broker in step, each time. So every wait is drawn at random:
decorrelated jitter, each wait between the base and three times the last one, capped (the
first between the base and 1.5 times it). It grows about as fast as doubling does, never
drops below the base, and two replicas that start in step are apart after the first retry.

A :class:`Backoff` only says how long; the caller waits, on its stop event or a test's
clock, so a shutdown is never held up by a sleep.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    def __init__(self, base_s: float, cap_s: float, *, rng: random.Random | None = None) -> None:
        """``rng``: a seeded one in tests; by default the process's shared one."""
        if not 0 < base_s <= cap_s:
            raise ValueError(f"backoff needs 0 < base_s <= cap_s, got {base_s} and {cap_s}")
        self.base_s = base_s
        self.cap_s = cap_s
        self._uniform = (rng or random).uniform
        self.attempts = 0
        self._last = base_s / 2  # the first wait is drawn up to 1.5 times the base

    def next(self) -> float:
        """The wait before the next try, after one more failure."""
        self.attempts += 1
        self._last = min(self.cap_s, self._uniform(self.base_s, self._last * 3))
        return self._last

    def reset(self) -> None:
        """It worked: the next failure starts from the base again."""
        self._last = self.base_s / 2
        self.attempts = 0
