"""The sources this process runs, each on a thread of its own with its own stop signal.

Starting a source builds it (its producer, checkpoint, window and inbox are its own) and
runs its loop (``bridge.runner``). Stopping one lets it finish or abort the transaction in
hand and close its producer. A source that does not let go within the stop's timeout (a
call stuck on a broker that went away) is not waited for: its producer is fenced, which
aborts the transaction it holds open at once, so that no other source's restore and no
consumer waits on it, and the source may run again at once. Its thread ends when its call
returns, as a fenced writer that can no longer commit.

A source whose ownership was lost (the group dropped this member: most often because the
group's coordinator died with a broker, not because this member did) keeps running, held,
until the group assigns the sources again. Taken back, it goes on as if nothing happened,
unless its loop did not move while held: stuck in a call to a broker that went away, it is
started afresh. Given to another member, it is released, stopped without fencing (the new
owner's start fences it, and fencing it again would abort the new owner's transaction).
Meanwhile its transactional id keeps it from ever being a second writer: once another
member starts it, its next commit fails as fenced, and a held source that fails is not
started again.

Under a consumer group a source that stopped on a fatal error is started again after a
pause while this member still owns it: a short one when its producer was fenced (a broker
that aborted a transaction past its timeout, or an operator's ``--force``), a long one
otherwise (a revoked token is not fixed in seconds). Without a group, its exit code is the
process's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx

from bridge.avro.framing import Framer
from bridge.backoff import Backoff
from bridge.config import Config, SourceConfig
from bridge.errors import BridgeError, KafkaFatalError, ShutdownRequested
from bridge.kafka.access import KafkaAccess
from bridge.kafka.producer import fence, transactional_id
from bridge.ops.health import Health, ProcessHealth
from bridge.ops.logs import working_for
from bridge.ops.metrics import Metrics
from bridge.runner import EXIT_FATAL, EXIT_OK, Pace, RunOptions, SourceRunner
from bridge.source import Source
from bridge.tracing.hooks import NO_TRACING, Tracing
from bridge.wiring import Wiring

__all__ = ["Fleet"]

log = logging.getLogger(__name__)

# A source stopped on a fatal error (a revoked token, say) tries again after 30 s and up to
# 5 min, as an orchestrator restarting a crashed pod would; after 3 s and up to 30 s when its
# producer was fenced: the source itself is fine.
_RESTART_AFTER_S = (30.0, 300.0)
_RESTART_FENCED_AFTER_S = (3.0, 30.0)
# How long fencing a stuck source's producer may take.
_FENCE_TIMEOUT_S = 10.0


@dataclass(slots=True)
class _Run:
    """One run of a source: a thread, until the source is stopped or ends."""

    thread: threading.Thread
    stop: threading.Event
    assigned_at: float
    exit_code: int | None = None
    # Ownership lost, still running until the group says who owns it now; since when.
    held: bool = False
    held_at: float = 0.0
    # The run's loop health, once its source is built: whether it still moves.
    health: Health | None = None


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
        fencer: Callable[[str], bool] | None = None,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self._config = config
        self._tracing = tracing
        self._kafka = kafka
        self._options = options
        self._metrics = metrics
        self._health = health
        self._restart_fatal = restart_fatal
        self._transport = transport
        self._framer = framer
        self._fence = fencer if fencer is not None else self._fence_producer
        self._lock = threading.Lock()
        # The current run of each source; a run stopped is forgotten here at once.
        self._runs: dict[str, _Run] = {}
        self._changed = threading.Condition(self._lock)
        for spec in config.sources:
            metrics.source_active.labels(spec.id).set(0)

    def start(self, source_ids: Iterable[str]) -> None:
        """Run these sources. One held since a lost ownership goes on, owned again, if its
        loop moved since it was held; one that did not is most likely stuck in a call to the
        broker that went away, and is started afresh: the new run's ``init_transactions``
        fences the old one, whose call then fails."""
        with self._lock:
            for source_id in source_ids:
                run = self._runs.get(source_id)
                if run is not None and run.thread.is_alive():
                    if not run.held:
                        continue
                    run.held = False
                    if run.health is not None and run.health.last_beat() > run.held_at:
                        log.info("source kept: assigned again", extra={"source_id": source_id})
                        continue
                    del self._runs[source_id]
                    run.stop.set()
                    self._changed.notify_all()
                    log.warning(
                        "held source did not move while held: started afresh, which fences"
                        " the stuck run", extra={"source_id": source_id},
                    )  # fmt: skip
                self._launch(self._config.source(source_id))

    def _launch(self, spec: SourceConfig) -> None:
        """Start the source's thread; the caller holds the lock."""
        run: _Run
        thread = threading.Thread(
            target=lambda: self._run(spec, run), name=f"source-{spec.id}", daemon=True
        )
        run = _Run(thread, threading.Event(), time.monotonic())
        self._runs[spec.id] = run
        log.info("running source", extra={"source_id": spec.id})
        run.thread.start()

    def stop(self, source_ids: Iterable[str], timeout_s: float) -> None:
        """Stop these sources: each settles its transaction and closes its producer, within
        ``timeout_s`` in all; one that does not is fenced, not waited for."""
        stopping = self._detach(source_ids)
        deadline = time.monotonic() + timeout_s
        for source_id, run in stopping:
            run.thread.join(max(0.0, deadline - time.monotonic()))
            if run.thread.is_alive():
                txn_id = transactional_id(source_id)
                fenced = self._fence(txn_id)
                log.warning(
                    "source did not stop in time: its producer is fenced and its open"
                    " transaction aborted" if fenced else
                    "source did not stop in time, and its producer could not be fenced: the"
                    " next owner's start fences it",
                    extra={"source_id": source_id, "transactional_id": txn_id},
                )  # fmt: skip
            else:
                log.info("stopped source", extra={"source_id": source_id})

    def hold(self, source_ids: Iterable[str]) -> None:
        """Ownership of these sources was lost: keep them running until :meth:`start` takes
        them back or :meth:`release` lets them go. Returns at once."""
        with self._lock:
            for source_id in source_ids:
                run = self._runs.get(source_id)
                if run is not None and not run.held:
                    run.held, run.held_at = True, time.monotonic()

    def release(self, source_ids: Iterable[str]) -> None:
        """Let go of sources another member owns now: each is told to stop, not fenced (that
        would abort the new owner's transaction) and not waited for (its new owner's start
        fences whatever it still has in hand). Returns at once."""
        for source_id, run in self._detach(source_ids):
            log.info(
                "released source: another member owns it" if run.thread.is_alive()
                else "stopped source", extra={"source_id": source_id},
            )  # fmt: skip

    def _detach(self, source_ids: Iterable[str]) -> list[tuple[str, _Run]]:
        with self._lock:
            stopping = [(sid, self._runs.pop(sid)) for sid in source_ids if sid in self._runs]
            for _, run in stopping:
                run.stop.set()
            self._changed.notify_all()
        return stopping

    def stop_all(self, timeout_s: float) -> None:
        with self._lock:
            ids = list(self._runs)
        self.stop(ids, timeout_s)

    def running(self) -> set[str]:
        with self._lock:
            return {sid for sid, run in self._runs.items() if run.thread.is_alive()}

    def wait(self, stop: threading.Event) -> int:
        """Until every source has finished, or ``stop`` is set: the worst exit code (0 when
        stopped). A fatal source stops the others: without a group, it is the process's
        fate, as it was with one source per process."""
        finished: list[int] = []
        while not stop.is_set():
            with self._lock:
                codes = [run.exit_code for run in self._runs.values()]
                finished = [code for code in codes if code is not None]
                if EXIT_FATAL in finished or len(finished) == len(codes):
                    break
                self._changed.wait(0.5)
        self.stop_all(self._config.bridge.shutdown_grace_s / 2)
        return max(finished, default=EXIT_OK)

    def _run(self, spec: SourceConfig, run: _Run) -> None:
        with working_for(spec.id):
            self._run_source(spec, run)

    def _run_source(self, spec: SourceConfig, run: _Run) -> None:
        code = EXIT_OK
        after_fatal, after_fenced = Backoff(*_RESTART_AFTER_S), Backoff(*_RESTART_FENCED_AFTER_S)
        try:
            while not run.stop.is_set():
                started = time.monotonic()
                code, fatal = self._run_once(spec, run)
                if code != EXIT_FATAL or not self._restart_fatal:
                    break
                with self._lock:
                    held = run.held
                    if held and self._runs.get(spec.id) is run:
                        # Forgotten here, under the lock, so that an assignment from now on
                        # starts the source afresh rather than taking back a run that ends.
                        del self._runs[spec.id]
                if held:
                    # Fenced, most likely, by the member that owns it now.
                    log.warning(
                        "held source stopped on a fatal error; it runs again only if assigned"
                        " to this member again", extra={"source_id": spec.id},
                    )  # fmt: skip
                    break
                fenced = isinstance(fatal, KafkaFatalError) and fatal.fenced
                backoff = after_fenced if fenced else after_fatal
                if time.monotonic() - started > backoff.cap_s:
                    backoff.reset()  # it ran a while: this failure is a new one
                pause = backoff.next()
                log.warning(
                    "source stopped on a fatal error; trying again while this member owns it",
                    extra={"source_id": spec.id, "after_s": round(pause, 1)},
                )
                run.stop.wait(pause)
        finally:
            with self._lock:
                run.exit_code = code
                self._changed.notify_all()

    def _run_once(self, spec: SourceConfig, run: _Run) -> tuple[int, BridgeError | None]:
        stop = run.stop
        health = Health(
            max_poll_age_s=max(
                self._config.bridge.ready_max_poll_age_s, spec.passentry.poll_interval_max_s * 3
            )
        )
        with self._lock:
            run.health = health
            # A run stopped meanwhile must not take its successor's place in readiness.
            if self._runs.get(spec.id) is run:
                self._health.add(spec.id, health)
        metrics = self._metrics.for_source(spec.id)

        def sleep(seconds: float) -> None:
            if stop.wait(seconds):
                raise ShutdownRequested

        try:
            source = Source(
                Wiring(self._config, spec, metrics, self._access(), self._tracing),
                start_ms=self._start_ms(spec),
                sleep=sleep,
                transport=self._transport,
                framer=self._framer,
            )
        except BridgeError as exc:
            # A setting only this source has (its token file, say) is wrong.
            health.fatal(str(exc))
            log.error("cannot start source", extra={"source_id": spec.id, "error": str(exc)})
            return EXIT_FATAL, exc
        except Exception as exc:
            return self._crashed(spec, health, exc), None
        measured = False

        def restored() -> None:
            nonlocal measured
            if not measured:
                measured = True
                metrics.takeover_duration.observe(time.monotonic() - run.assigned_at)

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
            return runner.run(), runner.fatal
        except Exception as exc:
            return self._crashed(spec, health, exc), None
        finally:
            left = source.close(self._config.bridge.shutdown_grace_s / 2)
            if left:
                log.warning(
                    "records left unacknowledged", extra={"source_id": spec.id, "records": left}
                )
            with self._lock:
                # Stopped and replaced (it was stuck, and fenced): the successor's readiness
                # and per-source series are not this run's to clear.
                if self._runs.get(spec.id) in (None, run):
                    metrics.forget_source(spec.id)
                    keep = not stop.is_set() and not health.fatal_probe().ok  # say why
                    if not keep and self._health.source(spec.id) is health:
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

    def _access(self) -> KafkaAccess:
        """The process's, or (tests) one of the fleet's own."""
        return self._kafka if self._kafka is not None else KafkaAccess(self._config.kafka)

    def _fence_producer(self, txn_id: str) -> bool:
        conf = self._access().conf()
        try:
            return fence(conf, txn_id, _FENCE_TIMEOUT_S)
        except BridgeError as exc:
            log.warning("cannot fence a stuck producer", extra={"error": str(exc)})
            return False
