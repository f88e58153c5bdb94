"""Run one source: restore it, then poll cycle after cycle, retrying what is retriable.

The pace adapts (``bridge.schedule``): at once while a cycle had to stop short, at the
minimum interval while scans arrive, doubling up to the maximum while idle. A retriable
failure (API down, 429 storm, broker unreachable) keeps the cursor where it was and tries
again: after a doubling backoff, or after the minimum interval when Kafka failed (its calls
wait out an outage themselves); a commit whose outcome is unknown recreates the producer and
restores again. A fatal one (bad token, fenced producer, a missing ACL) turns readiness
false, logs why, and returns non-zero: the fleet then stops the process, or under a consumer
group tries the source again later. So does a Kafka failure that ``KafkaAccess`` traces to refused
credentials or an unverifiable certificate lasting past its grace: librdkafka only ever lets
those time out, like a broker that is down. ``--once`` gives up, with its own exit code and
the last error, when no cycle completes for one retry deadline (counted from the start of
the first failed attempt, whose own retries count). While webhooks flow, polling runs at the
backstop interval.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bridge.errors import (
    FatalError,
    KafkaRetriableError,
    ProducerSpentError,
    RegistryUnavailableError,
    RetriableError,
    ShutdownRequested,
)
from bridge.kafka.access import KafkaAccess
from bridge.ops.health import Health
from bridge.ops.metrics import Metrics
from bridge.pipeline import CycleStats, Restored
from bridge.schedule import PollSchedule

__all__ = ["EXIT_FATAL", "EXIT_GAVE_UP", "EXIT_OK", "RunOptions", "Runnable", "SourceRunner"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_GAVE_UP = 2

# A source that publishes says what it did at INFO once a minute; each cycle is a DEBUG line.
SUMMARY_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class RunOptions:
    once: bool = False
    since_ms: int | None = None
    serve_http: bool = True
    # Told of every cycle that completed.
    on_cycle: Callable[[CycleStats], None] | None = None


class Runnable(Protocol):
    """What the runner drives; ``bridge.source.Source`` in production."""

    def prepare(self) -> Restored: ...

    def cycle(self, stop: threading.Event) -> CycleStats: ...

    def recreate_producer(self) -> None: ...

    def wait(self, seconds: float, stop: threading.Event) -> None:
        """Until the next poll, publishing what webhooks bring meanwhile (a failure to do so
        is raised, like a failed cycle's)."""

    @property
    def pushing(self) -> bool:
        """Webhooks flowed lately (polling is then the backstop)."""


@dataclass(slots=True)
class _Summary:
    """What the cycles of one summary period did."""

    since: float
    cycles: int = 0
    pages: int = 0
    published: int = 0
    duplicates: int = 0
    dead_letters: int = 0

    def add(self, stats: CycleStats) -> None:
        self.cycles += 1
        self.pages += stats.pages
        self.published += stats.published
        self.duplicates += stats.duplicates
        self.dead_letters += stats.dead_letters

    def fields(self, now: float) -> dict[str, float | int]:
        return {
            "seconds": round(now - self.since, 1),
            "cycles": self.cycles,
            "pages": self.pages,
            "published": self.published,
            "duplicates": self.duplicates,
            "dead_letters": self.dead_letters,
        }


@dataclass(frozen=True, slots=True)
class Pace:
    interval_min_s: float
    interval_max_s: float
    # How long one API call retries; ``--once`` gives up after failing this long.
    retry_deadline_s: float
    # The poll interval while webhooks flow.
    interval_backstop_s: float = 5.0


class SourceRunner:
    def __init__(
        self,
        source: Runnable,
        *,
        source_id: str,
        options: RunOptions,
        pace: Pace,
        health: Health,
        metrics: Metrics,
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
        on_restored: Callable[[], None] | None = None,
        kafka: KafkaAccess | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``on_restored`` is called each time the source has been restored (and may
        publish): a takeover is measured to the first. ``kafka`` collects what the source's
        Kafka clients report, to tell a refusal from an outage. ``rng`` draws the retry
        backoff's jitter (a test's own, to know the waits)."""
        self._rng = rng
        self._on_restored = on_restored
        self._kafka = kafka
        self._source = source
        self._source_id = source_id
        self._options = options
        self._pace = pace
        self._health = health
        self._metrics = metrics
        self._stop = stop
        self._clock = clock
        # What stopped the source, when ``run`` returned EXIT_FATAL.
        self.fatal: FatalError | None = None
        self._summary = _Summary(clock())

    def run(self) -> int:
        pace = self._pace
        schedule = PollSchedule(
            pace.interval_min_s, pace.interval_max_s, pace.interval_backstop_s, rng=self._rng
        )
        failing_since: float | None = None
        restored = False
        next_poll = self._clock()
        while not self._stop.is_set():
            self._health.beat()
            # A failure counts from when the failed attempt began: its own retries took time.
            attempt = self._clock()
            try:
                if not restored:
                    self._log_restored(self._source.prepare())
                    self._health.kafka(True)
                    if self._kafka is not None:
                        self._kafka.succeeded()
                    restored = True
                    if self._on_restored is not None:
                        self._on_restored()
                # Between polls the source waits, publishing what webhooks bring; the
                # heartbeat above runs at least every wait slice.
                if (left := next_poll - self._clock()) > 0:
                    self._source.wait(min(left, 1.0), self._stop)
                    continue
                started = self._clock()
                stats = self._source.cycle(self._stop)
            except ShutdownRequested:
                break
            except FatalError as exc:
                return self._fatal(exc)
            except RetriableError as exc:
                refused = self._kafka.failure() if self._kafka is not None else None
                if refused is not None:
                    return self._fatal(refused)
                if isinstance(exc, ProducerSpentError):
                    # Whether the commit landed is unknown, or the producer's sequence state
                    # is: a new producer settles the transaction, and the checkpoint read
                    # back says where we are.
                    self._recreate_producer()
                    restored = False
                failing_since = failing_since or attempt
                if self._failed(exc, self._clock() - failing_since):
                    return EXIT_GAVE_UP
                if isinstance(exc, KafkaRetriableError):
                    self._stop.wait(schedule.after_kafka_failure())
                else:
                    self._stop.wait(schedule.after_failure())
                next_poll = self._clock()
                continue
            failing_since = None
            self._succeeded(stats)
            if self._options.once and not stats.busy:
                return EXIT_OK
            next_poll = self._clock() + schedule.after_cycle(
                busy=stats.busy,
                found=bool(stats.published or stats.dead_letters),
                took_s=self._clock() - started,
                pushing=self._source.pushing,
            )
        return EXIT_OK

    def _fatal(self, exc: FatalError) -> int:
        self.fatal = exc
        self._metrics.poll_cycles.labels("fatal").inc()
        self._health.fatal(str(exc))
        log.error("stopping on a fatal error", extra={"error": str(exc)})
        return EXIT_FATAL

    def _failed(self, exc: RetriableError, failed_for: float) -> bool:
        """Count and report a failed cycle; True when ``--once`` should give up."""
        outcome = exc.cycle_outcome
        self._metrics.poll_cycles.labels(outcome).inc()
        self._health.cycle_failed(str(exc))
        self._health.registry(outcome != RegistryUnavailableError.cycle_outcome)
        self._health.kafka(outcome != KafkaRetriableError.cycle_outcome)
        log.warning(
            "poll cycle failed; nothing was committed, the cycle will be retried",
            extra={"error": str(exc), "failing_for_s": round(failed_for, 1)},
        )
        if self._options.once and failed_for >= self._pace.retry_deadline_s:
            reason = f"--once could not complete a cycle for {failed_for:.0f}s: {exc}"
            self._health.fatal(reason)
            log.error("giving up", extra={"error": reason})
            return True
        return False

    def _succeeded(self, stats: CycleStats) -> None:
        if self._kafka is not None:
            self._kafka.succeeded()
        self._metrics.poll_cycles.labels("ok").inc()
        self._metrics.last_poll_timestamp.labels(self._source_id).set(time.time())
        self._health.poll_succeeded()
        self._health.kafka(True)
        self._health.registry(True)
        if self._options.on_cycle is not None:
            self._options.on_cycle(stats)
        if (stats.published or stats.dead_letters) and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "cycle",
                extra={
                    "pages": stats.pages,
                    "published": stats.published,
                    "duplicates": stats.duplicates,
                    "dead_letters": stats.dead_letters,
                },
            )
        self._summary.add(stats)
        now = self._clock()
        if now - self._summary.since >= SUMMARY_EVERY_S:
            if self._summary.published or self._summary.dead_letters:
                log.info("summary", extra={"source_id": self._source_id,
                                           **self._summary.fields(now)})  # fmt: skip
            self._summary = _Summary(now)

    def _recreate_producer(self) -> None:
        try:
            self._source.recreate_producer()
        except RetriableError as exc:
            log.warning("cannot recreate the producer yet", extra={"error": str(exc)})

    @staticmethod
    def _log_restored(restored: Restored) -> None:
        if restored.fresh:
            rebuilt = restored.rebuild
            log.info(
                "no checkpoint: starting fresh",
                extra={"since_ms": restored.start_ms,
                       "published_already": rebuilt.ids if rebuilt else 0,
                       "records_read": rebuilt.records if rebuilt else 0},
            )  # fmt: skip
        elif restored.watermark is None:
            log.info("checkpoint was reset", extra={"since_ms": restored.start_ms})
        else:
            rebuilt = restored.rebuild
            log.info(
                "resumed from checkpoint",
                extra={
                    "watermark": restored.watermark,
                    "window_ids": rebuilt.ids if rebuilt else 0,
                    "records_read": rebuilt.records if rebuilt else 0,
                    "seconds": round(rebuilt.seconds, 2) if rebuilt else 0.0,
                },
            )
