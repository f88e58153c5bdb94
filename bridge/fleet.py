"""The sources this process runs, each on a thread of its own with its own stop signal.

Starting a source builds it (its producer, checkpoint, window and inbox are its own) and
runs its loop (``bridge.runner``); stopping one lets it finish or abort the transaction in
hand and close its producer before :meth:`Fleet.stop` returns, so a source is never written
by two processes at once through any fault of ours (and Kafka's fencing covers the rest).
Under a consumer group a source that stopped on a fatal error is started again after a
pause while this member still owns it; without one, its exit code is the process's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from bridge.avro.framing import Framer
from bridge.config import Config, SourceConfig
from bridge.errors import BridgeError, ShutdownRequested
from bridge.kafka.access import KafkaAccess
from bridge.ops.health import Health, ProcessHealth
from bridge.ops.metrics import Metrics
from bridge.runner import EXIT_FATAL, EXIT_OK, Pace, RunOptions, SourceRunner
from bridge.source import Source

__all__ = ["Fleet"]

log = logging.getLogger(__name__)

# A source stopped on a fatal error (a revoked token, say) tries again after this long,
# as an orchestrator restarting a crashed pod would.
_RESTART_AFTER_S = 30.0


@dataclass(slots=True)
class _Running:
    thread: threading.Thread
    stop: threading.Event
    assigned_at: float
    exit_code: int | None = None
    # Assigned again (at this time) while still letting go of the previous ownership.
    again_at: float | None = None


class Fleet:
    def __init__(
        self,
        config: Config,
        options: RunOptions,
        metrics: Metrics,
        health: ProcessHealth,
        *,
        restart_fatal: bool,
        transport: httpx.BaseTransport | None = None,
        framer: Framer | None = None,
        kafka: KafkaAccess | None = None,
    ) -> None:
        self._config = config
        self._kafka = kafka
        self._options = options
        self._metrics = metrics
        self._health = health
        self._restart_fatal = restart_fatal
        self._transport = transport
        self._framer = framer
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._changed = threading.Condition(self._lock)
        for spec in config.sources:
            metrics.source_active.labels(spec.id).set(0)

    def start(self, source_ids: Iterable[str]) -> None:
        for source_id in source_ids:
            spec = self._config.source(source_id)
            with self._lock:
                running = self._running.get(source_id)
                if running is None:
                    self._launch(spec, time.monotonic())
                elif running.stop.is_set():
                    # Still letting go of an earlier ownership (a call stuck on a broker
                    # that went away outlasts the stop's timeout): run it again once that
                    # thread is done, or the source would stay unowned.
                    running.again_at = time.monotonic()
                    log.info("source still stopping; it runs again once stopped",
                             extra={"source_id": source_id})  # fmt: skip

    def _launch(self, spec: SourceConfig, assigned_at: float) -> None:
        """Start the source's thread; the caller holds the lock."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self._run, args=(spec, stop), name=f"source-{spec.id}", daemon=True
        )
        self._running[spec.id] = _Running(thread, stop, assigned_at)
        log.info("running source", extra={"source_id": spec.id})
        thread.start()

    def stop(self, source_ids: Iterable[str], timeout_s: float) -> None:
        """Stop these sources and wait until each has let go (transaction settled, producer
        closed), at most ``timeout_s`` in all."""
        with self._lock:
            stopping = [(sid, self._running[sid]) for sid in source_ids if sid in self._running]
            for _, running in stopping:
                running.stop.set()
                running.again_at = None
        deadline = time.monotonic() + timeout_s
        for source_id, running in stopping:
            running.thread.join(max(0.0, deadline - time.monotonic()))
            if running.thread.is_alive():
                log.warning("source did not stop in time", extra={"source_id": source_id})
            log.info("stopped source", extra={"source_id": source_id})

    def stop_all(self, timeout_s: float) -> None:
        with self._lock:
            ids = list(self._running)
        self.stop(ids, timeout_s)

    def running(self) -> set[str]:
        with self._lock:
            return {sid for sid, r in self._running.items() if r.thread.is_alive()}

    def wait(self, stop: threading.Event) -> int:
        """Until every source has finished, or ``stop`` is set: the worst exit code (0 when
        stopped). A fatal source stops the others: without a group, it is the process's
        fate, as it was with one source per process."""
        finished: list[int] = []
        while not stop.is_set():
            with self._lock:
                codes = [r.exit_code for r in self._running.values()]
                finished = [code for code in codes if code is not None]
                if EXIT_FATAL in finished or len(finished) == len(codes):
                    break
                self._changed.wait(0.5)
        self.stop_all(self._config.bridge.shutdown_grace_s / 2)
        return max(finished, default=EXIT_OK)

    def _run(self, spec: SourceConfig, stop: threading.Event) -> None:
        code = EXIT_OK
        try:
            while not stop.is_set():
                code = self._run_once(spec, stop)
                if code != EXIT_FATAL or not self._restart_fatal:
                    break
                log.warning(
                    "source stopped on a fatal error; trying again while this member owns it",
                    extra={"source_id": spec.id, "after_s": _RESTART_AFTER_S},
                )
                stop.wait(_RESTART_AFTER_S)
        finally:
            with self._lock:
                running = self._running[spec.id]
                running.exit_code = code
                self._changed.notify_all()
                if stop.is_set():
                    del self._running[spec.id]
                    if running.again_at is not None:
                        self._launch(spec, running.again_at)

    def _run_once(self, spec: SourceConfig, stop: threading.Event) -> int:
        health = Health(
            max_poll_age_s=max(
                self._config.bridge.ready_max_poll_age_s, spec.passentry.poll_interval_max_s * 3
            )
        )
        self._health.add(spec.id, health)
        metrics = self._metrics

        def sleep(seconds: float) -> None:
            if stop.wait(seconds):
                raise ShutdownRequested

        try:
            source = Source(
                self._config,
                spec,
                start_ms=self._start_ms(spec),
                suffix=self._options.source_suffix or "",
                metrics=metrics,
                sleep=sleep,
                transport=self._transport,
                framer=self._framer,
                kafka_access=self._kafka,
            )
        except BridgeError as exc:
            # A setting only this source has (its token file, say) is wrong.
            health.fatal(str(exc))
            log.error("cannot start source", extra={"source_id": spec.id, "error": str(exc)})
            return EXIT_FATAL
        except Exception as exc:
            return self._crashed(spec, health, exc)
        with self._lock:
            assigned_at = self._running[spec.id].assigned_at
        measured = False

        def restored() -> None:
            nonlocal measured
            if not measured:
                measured = True
                metrics.takeover_duration.observe(time.monotonic() - assigned_at)

        metrics.source_active.labels(spec.id).set(1)
        pe = spec.passentry
        runner = SourceRunner(
            source,
            source_id=source.source_id,
            options=self._options,
            pace=Pace(
                pe.poll_interval_min_s,
                pe.poll_interval_max_s,
                pe.retry_deadline_s,
                pe.poll_interval_backstop_s,
            ),
            health=health,
            metrics=metrics,
            stop=stop,
            on_restored=restored,
            kafka=self._kafka,
        )
        try:
            return runner.run()
        except Exception as exc:
            return self._crashed(spec, health, exc)
        finally:
            left = source.close(self._config.bridge.shutdown_grace_s / 2)
            if left:
                log.warning(
                    "records left unacknowledged", extra={"source_id": spec.id, "records": left}
                )
            metrics.forget_source(spec.id)
            if stop.is_set() or health.fatal_probe().ok:
                self._health.remove(spec.id)

    @staticmethod
    def _crashed(spec: SourceConfig, health: Health, exc: Exception) -> int:
        """An exception no layer below knew how to handle is a bug. Left to itself it would
        end the thread silently and the process would exit 0, so it counts as fatal: the
        traceback goes to the log and readiness says so."""
        log.exception("source crashed", extra={"source_id": spec.id})
        health.fatal(f"internal error: {exc!r}")
        return EXIT_FATAL

    def _start_ms(self, spec: SourceConfig) -> int:
        """Where a source with no checkpoint starts: ``--since``, or one lookback ago."""
        if self._options.since_ms is not None:
            return self._options.since_ms
        return int(time.time() * 1000) - int(spec.passentry.lookback_s * 1000)
