"""What /healthz and /readyz report: each source's loop writes its own ``Health``, the
group member its ``MemberHealth``; ``ProcessHealth`` combines them for the HTTP server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Health", "MemberHealth", "Probe", "ProcessHealth", "SourceReport"]


@dataclass(frozen=True, slots=True)
class Probe:
    ok: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SourceReport:
    """What this process knows of a source it runs (``GET /status``, read by
    ``passentry-bridge status``): running, failing (its cycles fail, with the last error) or
    stopped (on a fatal error, retried later under a group)."""

    state: str
    error: str | None
    last_poll_age_s: float | None
    failing_for_s: float | None


class Health:
    def __init__(self, *, max_poll_age_s: float, max_loop_stall_s: float = 120.0) -> None:
        self._lock = threading.Lock()
        self._max_poll_age = max_poll_age_s
        self._max_stall = max_loop_stall_s
        self._started = time.monotonic()
        self._heartbeat = self._started
        self._last_poll_ok: float | None = None
        self._kafka_ok = False
        self._kafka_tried = False
        self._registry_ok = True
        self._fatal: str | None = None
        # The last failed cycle's error, and since when cycles fail; cleared by a success.
        self._failing: tuple[str, float] | None = None

    def beat(self) -> None:
        """The loop is alive (called every iteration, also while sleeping between polls)."""
        with self._lock:
            self._heartbeat = time.monotonic()

    def last_beat(self) -> float:
        """When the loop last said it was alive (``time.monotonic``)."""
        with self._lock:
            return self._heartbeat

    def poll_succeeded(self) -> None:
        with self._lock:
            self._last_poll_ok = time.monotonic()
            self._failing = None

    def cycle_failed(self, reason: str) -> None:
        """A cycle failed and will be retried: the error stays until one succeeds."""
        with self._lock:
            since = self._failing[1] if self._failing is not None else time.monotonic()
            self._failing = (reason, since)

    def report(self) -> SourceReport:
        now = time.monotonic()
        with self._lock:
            age = None if self._last_poll_ok is None else round(now - self._last_poll_ok, 1)
            if self._fatal is not None:
                return SourceReport("stopped", self._fatal, age, None)
            if self._failing is not None:
                reason, since = self._failing
                return SourceReport("failing", reason, age, round(now - since, 1))
            return SourceReport("running", None, age, None)

    def kafka(self, reachable: bool) -> None:
        with self._lock:
            self._kafka_ok = reachable
            self._kafka_tried = True

    def registry(self, reachable: bool) -> None:
        with self._lock:
            self._registry_ok = reachable

    def fatal(self, reason: str) -> None:
        """The bridge is about to exit: readiness turns false first."""
        with self._lock:
            self._fatal = reason

    def fatal_probe(self) -> Probe:
        """Only whether the source stopped on a fatal error."""
        with self._lock:
            fatal = self._fatal
        return Probe(fatal is None, () if fatal is None else (fatal,))

    def member_probe(self) -> Probe:
        """What makes a group member that runs this source unready: a fatal error, or Kafka
        or the schema registry out of reach. Not PassEntry's state: no other member would
        poll it better."""
        reasons = list(self.fatal_probe().reasons)
        with self._lock:
            # Before its first restore a source has not tried Kafka yet: not a failure.
            if not self._kafka_ok and self._kafka_tried:
                reasons.append("Kafka not reachable")
            if not self._registry_ok:
                reasons.append("schema registry not reachable")
        return Probe(not reasons, tuple(reasons))

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


class MemberHealth:
    """The consumer-group member's side of /readyz: joined, polling, no fatal group error."""

    def __init__(self, *, max_silence_s: float = 60.0) -> None:
        self._lock = threading.Lock()
        self._max_silence = max_silence_s
        self._heartbeat = time.monotonic()
        self._joined = False
        self._error: str | None = None

    def beat(self) -> None:
        with self._lock:
            self._heartbeat = time.monotonic()

    def joined(self, member: bool) -> None:
        with self._lock:
            self._joined = member
            if member:
                self._error = None

    def error(self, reason: str | None) -> None:
        with self._lock:
            self._error = reason

    def liveness(self) -> Probe:
        with self._lock:
            silent = time.monotonic() - self._heartbeat
        if silent > self._max_silence:
            return Probe(False, (f"group loop silent for {silent:.0f}s",))
        return Probe(True, ())

    def readiness(self) -> Probe:
        reasons = list(self.liveness().reasons)
        with self._lock:
            if not self._joined:
                reasons.append("not (yet) a member of the consumer group")
            if self._error is not None:
                reasons.append(self._error)
        return Probe(not reasons, tuple(reasons))


class ProcessHealth:
    """/healthz and /readyz for the whole process.

    With a consumer group, ready means a healthy member: a standby that owns no source is
    ready too, and a source failing to reach PassEntry does not make its member unready (no
    other member would poll it better); Kafka or the registry out of reach, or a source
    stopped on a fatal error, does. Without a group, ready means every source is ready, as
    with one source per process.
    """

    def __init__(self, member: MemberHealth | None = None) -> None:
        self._lock = threading.Lock()
        self._member = member
        self._sources: dict[str, Health] = {}
        self._parts: list[tuple[str, Callable[[], Probe]]] = []

    def needs(self, name: str, readiness: Callable[[], Probe]) -> None:
        """Ready only while ``readiness`` says so too: a part of the process that is not
        a source (the webhook receiver's inbox)."""
        with self._lock:
            self._parts.append((name, readiness))

    def add(self, source_id: str, health: Health) -> None:
        with self._lock:
            self._sources[source_id] = health

    def remove(self, source_id: str) -> None:
        with self._lock:
            self._sources.pop(source_id, None)

    def source(self, source_id: str) -> Health | None:
        with self._lock:
            return self._sources.get(source_id)

    def reports(self) -> dict[str, SourceReport]:
        """Each source this process runs (or that stopped here and says why)."""
        with self._lock:
            sources = dict(self._sources)
        return {sid: health.report() for sid, health in sources.items()}

    def liveness(self) -> Probe:
        with self._lock:
            sources = dict(self._sources)
        probes = [(sid, h.liveness()) for sid, h in sources.items()]
        if self._member is not None:
            probes.append(("group", self._member.liveness()))
        return _combine(probes)

    def readiness(self) -> Probe:
        with self._lock:
            sources = dict(self._sources)
            parts = [(name, readiness()) for name, readiness in self._parts]
        if self._member is None:
            if not sources:
                return Probe(False, ("no source running",))
            return _combine([(sid, h.readiness()) for sid, h in sources.items()] + parts)
        probes = [("group", self._member.readiness())]
        probes += [(sid, h.member_probe()) for sid, h in sources.items()]
        return _combine(probes + parts)


def _combine(probes: list[tuple[str, Probe]]) -> Probe:
    reasons = tuple(f"{name}: {reason}" for name, p in probes for reason in p.reasons)
    return Probe(all(p.ok for _, p in probes), reasons)
