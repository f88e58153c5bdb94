"""Client-side request budget: stay under PassEntry's 10 req/s sliding window.

Three rules work together. A pacer lets at most ``burst`` requests start in any window of
``burst/budget`` seconds: a sliding window like PassEntry's own, at the budget's rate. The
server's own headers win: when ``x-rate-limit-remaining`` reaches 0, or a 429 names a
retry-after, every caller waits until the server says a slot is free. And a 429 slows the
pacer by 10% (recovering by 1% per good answer): PassEntry counts arrivals, and latency
jitter can bunch requests sent evenly, so a budget at the very limit must give a little.

``burst`` is a tenth of a second's budget, and at least one. At the default of 9 a second it
is 1: starts are spaced evenly, ``1/budget`` apart, which is what arrivals at a limit of 10
need. At a budget of 100, ten requests may start back to back every 0.1 s. The average rate is
the same, but on a machine that idles between requests, one that starts straight after
another costs about half the CPU of one that starts after an idle spell (bench/README.md,
"Requests in bursts").
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["RequestBudget"]

# The server's window is one second; never trust a reset further away than that plus slack,
# since its clock and ours may disagree.
_MAX_SERVER_PAUSE_S = 5.0

# The share of a second's budget that may start back to back. Bigger bursts might save a
# little more CPU, but the server counts arrivals and latency jitter moves a whole burst.
_BURST_SHARE = 0.1


class RequestBudget:
    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._interval = 1.0 / per_second
        self._base_interval = self._interval
        self._burst = max(1, math.floor(per_second * _BURST_SHARE))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # The last ``burst`` starts granted: the oldest decides when the next may start.
        self._starts: deque[float] = deque(maxlen=self._burst)
        self._blocked_until = 0.0

    def acquire(self) -> float:
        """Block until the next request may start; return the seconds waited."""
        return self._wait(self._reserve(math.inf) or 0.0)

    def acquire_within(self, limit_s: float) -> float | None:
        """:meth:`acquire` if the next start comes within ``limit_s``; else None at once, no
        start taken: for a request worth making only soon (a webhook batch waits for it)."""
        wait = self._reserve(limit_s)
        return None if wait is None else self._wait(wait)

    def _reserve(self, limit_s: float) -> float | None:
        """Take the next start if it is at most ``limit_s`` away: how far away it is."""
        with self._lock:
            now = self._clock()
            start = max(now, self._blocked_until)
            if len(self._starts) == self._burst:
                start = max(start, self._starts[0] + self._burst * self._interval)
            if start - now > limit_s:
                return None
            self._starts.append(start)
        return start - now

    def _wait(self, wait: float) -> float:
        if wait > 0:
            self._sleep(wait)
        return wait

    def throttled(self) -> None:
        """A 429 came back: slow down."""
        with self._lock:
            self._interval = min(self._interval * 1.1, 1.0)

    def answered(self) -> None:
        """A request went through: drift back toward the configured budget."""
        if self._interval > self._base_interval:
            with self._lock:
                self._interval = max(self._base_interval, self._interval * 0.99)

    @property
    def burst(self) -> int:
        """How many requests may start back to back."""
        return self._burst

    @property
    def per_second(self) -> float:
        return 1.0 / self._interval

    def pause(self, seconds: float) -> None:
        """The server asked us to hold off: no caller starts a request for ``seconds``."""
        seconds = min(max(seconds, 0.0), _MAX_SERVER_PAUSE_S)
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def observe(self, remaining: str | None, reset: str | None, now_unix: float) -> None:
        """Read ``x-rate-limit-remaining`` and ``-reset`` from a response."""
        if remaining is None:
            return
        try:
            left = int(float(remaining))
        except ValueError:
            return
        if left > 0:
            return
        pause = 1.0
        if reset is not None:
            with contextlib.suppress(ValueError):
                pause = float(reset) - now_unix
        # Reset values are whole seconds on some servers: never pause less than a pacing step.
        self.pause(max(pause, self._interval))
