"""Client-side request budget: stay under PassEntry's 10 req/s sliding window.

Three rules work together. A pacer spaces request starts ``1/budget`` seconds apart. The
server's own headers win: when ``x-rate-limit-remaining`` reaches 0, or a 429 names a
retry-after, every caller waits until the server says a slot is free. And a 429 slows the
pacer by 10% (recovering by 1% per good answer): PassEntry counts arrivals, and latency
jitter can bunch requests sent evenly, so a budget at the very limit must give a little.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

__all__ = ["RequestBudget"]

# The server's window is one second; never trust a reset further away than that plus slack,
# since its clock and ours may disagree.
_MAX_SERVER_PAUSE_S = 5.0


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
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_start = 0.0
        self._blocked_until = 0.0

    def acquire(self) -> float:
        """Block until the next request may start; return the seconds waited."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next_start, self._blocked_until)
            self._next_start = start + self._interval
        wait = start - now
        if wait > 0:
            self._sleep(wait)
        return max(wait, 0.0)

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
