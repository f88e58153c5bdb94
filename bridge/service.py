"""Assemble the bridge from its config and run it: the poll loop, signals, shutdown.

The loop adapts its pace (bridge/schedule.py): at once while a cycle had to stop short, at
the minimum interval while scans arrive, doubling up to the maximum while idle. A retriable
failure (API down, 429 storm, broker unreachable) keeps the cursor where it was and tries
again with backoff; a fatal one (bad token, fenced producer) turns readiness false, logs
why, and exits non-zero so the orchestrator restarts the pod.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

import httpx

from bridge.checkpoint import CheckpointStore
from bridge.config import Config
from bridge.dedup import DedupWindow
from bridge.encode import Encoder, Framer, SingleObjectFramer
from bridge.enrich import Enricher, PassCache
from bridge.errors import FatalError, KafkaRetriableError, RetriableError
from bridge.health import Health
from bridge.http import StatusServer
from bridge.metrics import Metrics
from bridge.passentry.client import PassEntryClient
from bridge.passentry.ratelimit import RequestBudget
from bridge.pipeline import CycleStats, Pipeline
from bridge.publish import CommitOutcomeUnknownError, Publisher, producer_config
from bridge.registry import RegistryFramer, RegistryUnavailableError
from bridge.routing import Router
from bridge.schedule import PollSchedule
from bridge.schema import latest
from bridge.topics import TopicManager

__all__ = ["RunOptions", "Service"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_GAVE_UP = 2


@dataclass(frozen=True, slots=True)
class RunOptions:
    once: bool = False
    since_ms: int | None = None
    until_ms: int | None = None
    serve_http: bool = True
    # Backfills write under their own source id, so they never fence the live bridge.
    source_suffix: str | None = None
    on_cycle: Callable[[CycleStats], None] | None = None


class Service:
    def __init__(
        self,
        config: Config,
        options: RunOptions,
        *,
        metrics: Metrics | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self.options = options
        self.metrics = metrics if metrics is not None else Metrics()
        self.stop = threading.Event()
        pe, kafka, br = config.passentry, config.kafka, config.bridge
        self.health = Health(
            max_poll_age_s=max(br.ready_max_poll_age_s, pe.poll_interval_max_s * 3)
        )
        token = pe.token()
        self.client = PassEntryClient(
            str(pe.api_url),
            token,
            metrics=self.metrics,
            budget=RequestBudget(pe.request_budget),
            timeout_s=pe.timeout_s,
            retry_deadline_s=pe.retry_deadline_s,
            transport=transport,
            sleep=self._sleep,
        )
        client_conf = kafka.librdkafka()
        self.topics = TopicManager(
            client_conf,
            create=br.create_topics,
            partitions=br.topic_partitions,
            replication_factor=br.topic_replication_factor,
        )
        self.source_id = br.source_id + (options.source_suffix or "")
        self.publisher = Publisher(
            producer_config(
                client_conf,
                transactional_id=f"passentry-bridge.{self.source_id}",
                compression=kafka.compression_type,
                linger_ms=kafka.linger_ms,
                message_timeout_ms=kafka.message_timeout_ms,
                transaction_timeout_ms=kafka.transaction_timeout_ms,
            ),
            self.metrics,
            dlq_topic=br.dlq_topic,
            call_timeout_s=max(30.0, kafka.message_timeout_ms / 1000),
            hold_s=br.debug_txn_hold_s,
        )
        self.checkpoints = CheckpointStore(client_conf, br.state_topic, self.source_id)
        schema = latest()
        # Registry mode when SCHEMA_REGISTRY_URL is set: the Confluent wire format, ids
        # from the registry; otherwise Avro single-object encoding.
        self.registry: RegistryFramer | None = None
        framer: Framer = SingleObjectFramer(schema)
        if config.schema_registry.enabled:
            framer = self.registry = RegistryFramer(config.schema_registry, schema)
        self._lookback_ms = int(pe.lookback_s * 1000)
        self._sweep_ms = None if pe.late_sweep_s is None else int(pe.late_sweep_s * 1000)
        now_ms = int(time.time() * 1000)
        self._start_ms = (
            options.since_ms if options.since_ms is not None else now_ms - self._lookback_ms
        )
        self.pipeline = Pipeline(
            client=self.client,
            enricher=Enricher(self.client.get_pass, self.metrics, PassCache(pe.pass_cache_size)),
            encoder=Encoder(schema, br.source_id),
            framer=framer,
            publisher=self.publisher,
            checkpoints=self.checkpoints,
            router=Router(br.scans_topic, br.topic_template),
            window=DedupWindow(self._lookback_ms, sweep_ms=self._sweep_ms),
            metrics=self.metrics,
            filters=pe.filters.as_query(),
            per_page=pe.per_page,
            concurrency=pe.backfill_concurrency,
            max_cycle_scans=pe.max_cycle_scans,
            poll_overlap_ms=int(pe.poll_overlap_s * 1000),
            sweep_interval_s=pe.sweep_interval_s,
            source_id=self.source_id,
            dlq_topic=br.dlq_topic,
            delivery_timeout_s=kafka.message_timeout_ms / 1000 + 5,
            start_ms=self._start_ms,
            ensure_topics=self.topics.ensure,
        )
        self.http: StatusServer | None = None
        if options.serve_http:
            self.http = StatusServer(br.http_host, br.http_port, self.metrics, self.health)

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise _Stopped

    def install_signal_handlers(self) -> None:
        def handle(signum: int, frame: FrameType | None) -> None:
            if self.stop.is_set():
                return
            log.info("stopping", extra={"signal": signal.Signals(signum).name})
            self.stop.set()
            grace = self.config.bridge.shutdown_grace_s
            # The last resort: if a call outlives the grace period, leave without committing
            # the cycle (the cursor has not moved, so nothing is lost) before SIGKILL comes.
            timer = threading.Timer(max(grace - 1.0, 0.5), _force_exit)
            timer.daemon = True
            timer.start()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def run(self) -> int:
        if self.http is not None:
            self.http.start()
            log.info("serving /metrics /healthz /readyz", extra={"port": self.http.port})
        try:
            return self._loop()
        finally:
            self._shutdown()

    def _restore(self) -> None:
        """Start-up order for exactly-once: fence, then read what was committed."""
        br = self.config.bridge
        self.topics.ensure([br.state_topic], compacted=True)
        self.topics.ensure(self._fixed_topics())
        if self.registry is not None and (
            br.topic_template is None
            or self.config.schema_registry.subject_name_strategy == "record"
        ):
            # A schema mismatch stops start-up before anything is published; the subject of
            # a routed topic is checked when that topic is first used. Unreachable: retried.
            self.registry.check_startup([br.scans_topic])
        # init_transactions first: it fences a zombie with our transactional.id and settles
        # its open transaction, so the checkpoint read next is the last word.
        self.publisher.init()
        checkpoint = self.checkpoints.read()
        window = DedupWindow(self._lookback_ms, sweep_ms=self._sweep_ms)
        self.pipeline.rejects.clear()
        self.pipeline.discard_ahead()
        self.pipeline.polled_until = None
        if checkpoint is None:
            self.pipeline.start_at(self._start_ms)
            log.info("no checkpoint: starting fresh", extra={"since_ms": self._start_ms})
        elif checkpoint.watermark is None:
            self.pipeline.start_at(checkpoint.since_ms or self._start_ms)
            log.info("checkpoint was reset", extra={"since_ms": checkpoint.since_ms})
        else:
            window = DedupWindow(
                self._lookback_ms, checkpoint.watermark_int(), sweep_ms=self._sweep_ms
            )
            rebuilt = self.checkpoints.rebuild(
                window,
                self.pipeline.rejects,
                [*checkpoint.topics, *self._fixed_topics()],
                br.dlq_topic,
            )
            self.pipeline.topics_written = set(checkpoint.topics)
            self.pipeline.polled_until = checkpoint.polled_until_ms
            log.info(
                "resumed from checkpoint",
                extra={
                    "watermark": checkpoint.watermark,
                    "window_ids": rebuilt.ids,
                    "records_read": rebuilt.records,
                    "seconds": round(rebuilt.seconds, 2),
                },
            )
        self.pipeline.window = window
        if window.watermark:
            self.metrics.published_up_to((window.watermark >> 80) / 1000)
        self.health.kafka(True)

    def _loop(self) -> int:
        pe = self.config.passentry
        schedule = PollSchedule(pe.poll_interval_min_s, pe.poll_interval_max_s)
        failing_since: float | None = None
        restored = False
        while not self.stop.is_set():
            self.health.beat()
            try:
                if not restored:
                    self._restore()
                    restored = True
                cycle_started = time.monotonic()
                stats = self.pipeline.cycle(self.stop, until_ms=self.options.until_ms)
            except _Stopped:
                break
            except FatalError as exc:
                self.metrics.poll_cycles.labels("fatal").inc()
                self.health.fatal(str(exc))
                log.error("stopping on a fatal error", extra={"error": str(exc)})
                return EXIT_FATAL
            except RetriableError as exc:
                kafka_error = isinstance(exc, KafkaRetriableError)
                registry_error = isinstance(exc, RegistryUnavailableError)
                outcome = (
                    "kafka_error"
                    if kafka_error
                    else "registry_error"
                    if registry_error
                    else "api_error"
                )
                self.metrics.poll_cycles.labels(outcome).inc()
                self.health.registry(not registry_error)
                if isinstance(exc, CommitOutcomeUnknownError):
                    # Whether the commit landed is unknown: a new producer settles it, and
                    # the checkpoint read back says where we are.
                    self._recreate_producer()
                    restored = False
                self.health.kafka(not kafka_error)
                failing_since = failing_since or time.monotonic()
                failed_for = time.monotonic() - failing_since
                log.warning(
                    "poll cycle failed; nothing was committed, the cycle will be retried",
                    extra={"error": str(exc), "failing_for_s": round(failed_for, 1)},
                )
                if self.options.once and failed_for > pe.retry_deadline_s * 3:
                    log.error("giving up: --once could not complete a cycle")
                    return EXIT_GAVE_UP
                self.stop.wait(schedule.after_failure())
                continue
            failing_since = None
            self.metrics.poll_cycles.labels("ok").inc()
            self.metrics.last_poll_timestamp.set(time.time())
            self.health.poll_succeeded()
            self.health.kafka(True)
            self.health.registry(True)
            if self.options.on_cycle is not None:
                self.options.on_cycle(stats)
            if stats.published or stats.dead_letters:
                log.info(
                    "cycle",
                    extra={
                        "pages": stats.pages,
                        "published": stats.published,
                        "duplicates": stats.duplicates,
                        "dead_letters": stats.dead_letters,
                    },
                )
            if self.options.once and not stats.busy:
                return EXIT_OK
            wait = schedule.after_cycle(
                busy=stats.busy,
                found=bool(stats.published or stats.dead_letters),
                took_s=time.monotonic() - cycle_started,
            )
            if wait > 0:
                self.stop.wait(wait)
        return EXIT_OK

    def _recreate_producer(self) -> None:
        try:
            self.publisher.recreate()
        except RetriableError as exc:
            log.warning("cannot recreate the producer yet", extra={"error": str(exc)})

    def _fixed_topics(self) -> list[str]:
        br = self.config.bridge
        topics = [br.dlq_topic]
        if br.topic_template is None:
            topics.append(br.scans_topic)
        return topics

    def _shutdown(self) -> None:
        left = self.publisher.close(self.config.bridge.shutdown_grace_s / 2)
        if left:
            log.warning("records left unacknowledged at shutdown", extra={"records": left})
        self.pipeline.close()
        self.client.close()
        if self.registry is not None:
            self.registry.close()
        if self.http is not None:
            self.http.stop()


class _Stopped(Exception):
    """Raised out of a backoff sleep when shutdown was requested."""


def _force_exit() -> None:
    log.warning("shutdown grace period over; leaving without finishing the cycle")
    logging.shutdown()
    os._exit(EXIT_OK)
