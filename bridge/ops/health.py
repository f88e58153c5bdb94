"""What /healthz and /readyz report, written by the pipeline and read by the HTTP server."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

__all__ = ["Health", "Probe"]


@dataclass(frozen=True, slots=True)
class Probe:
    ok: bool
    reasons: tuple[str, ...]


class Health:
    def __init__(self, *, max_poll_age_s: float, max_loop_stall_s: float = 120.0) -> None:
        self._lock = threading.Lock()
        self._max_poll_age = max_poll_age_s
        self._max_stall = max_loop_stall_s
        self._started = time.monotonic()
        self._heartbeat = self._started
        self._last_poll_ok: float | None = None
        self._kafka_ok = False
        self._registry_ok = True
        self._fatal: str | None = None

    def beat(self) -> None:
        """The loop is alive (called every iteration, also while sleeping between polls)."""
        with self._lock:
            self._heartbeat = time.monotonic()

    def poll_succeeded(self) -> None:
        with self._lock:
            self._last_poll_ok = time.monotonic()

    def kafka(self, reachable: bool) -> None:
        with self._lock:
            self._kafka_ok = reachable

    def registry(self, reachable: bool) -> None:
        with self._lock:
            self._registry_ok = reachable

    def fatal(self, reason: str) -> None:
        """The bridge is about to exit: readiness turns false first."""
        with self._lock:
            self._fatal = reason

    def liveness(self) -> Probe:
        with self._lock:
            stalled = time.monotonic() - self._heartbeat
        if stalled > self._max_stall:
            return Probe(False, (f"poll loop silent for {stalled:.0f}s",))
        return Probe(True, ())

    def readiness(self) -> Probe:
        now = time.monotonic()
        reasons = []
        with self._lock:
            if self._fatal is not None:
                reasons.append(self._fatal)
            if not self._kafka_ok:
                reasons.append("Kafka not reachable")
            if not self._registry_ok:
                reasons.append("schema registry not reachable")
            if self._last_poll_ok is None:
                reasons.append("no successful poll yet")
            elif now - self._last_poll_ok > self._max_poll_age:
                reasons.append(f"last successful poll {now - self._last_poll_ok:.0f}s ago")
        return Probe(not reasons, tuple(reasons))
