"""The bridge process: build the source from its config, serve /metrics and the probes,
handle signals, run, and shut down within the grace period."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType

import httpx

from bridge.avro.framing import Framer
from bridge.config import Config
from bridge.errors import ShutdownRequested
from bridge.ops.health import Health
from bridge.ops.metrics import Metrics
from bridge.ops.status_server import StatusServer
from bridge.runner import EXIT_OK, Pace, RunOptions, SourceRunner
from bridge.source import Source
from bridge.webhook.inbox import InboxWriter
from bridge.webhook.receiver import ReceiverSettings, WebhookReceiver

__all__ = ["RunOptions", "Service"]

log = logging.getLogger(__name__)


class Service:
    def __init__(
        self,
        config: Config,
        options: RunOptions,
        *,
        metrics: Metrics | None = None,
        transport: httpx.BaseTransport | None = None,
        framer: Framer | None = None,
    ) -> None:
        self.config = config
        self.options = options
        self.metrics = metrics if metrics is not None else Metrics()
        self.stop = threading.Event()
        pe, br = config.passentry, config.bridge
        self.health = Health(
            max_poll_age_s=max(br.ready_max_poll_age_s, pe.poll_interval_max_s * 3)
        )
        start_ms = options.since_ms
        if start_ms is None:  # a fresh source starts one lookback ago
            start_ms = int(time.time() * 1000) - int(pe.lookback_s * 1000)
        self.source = Source(
            config,
            source_id=br.source_id + (options.source_suffix or ""),
            start_ms=start_ms,
            metrics=self.metrics,
            sleep=self._sleep,
            transport=transport,
            framer=framer,
        )
        self.runner = SourceRunner(
            self.source,
            options=options,
            pace=Pace(
                pe.poll_interval_min_s,
                pe.poll_interval_max_s,
                pe.retry_deadline_s,
                pe.poll_interval_backstop_s,
            ),
            health=self.health,
            metrics=self.metrics,
            stop=self.stop,
        )
        self.http: StatusServer | None = None
        if options.serve_http:
            self.http = StatusServer(br.http_host, br.http_port, self.metrics, self.health)
        self.webhooks: WebhookReceiver | None = None
        if options.serve_http and pe.webhooks_enabled:
            self.webhooks = WebhookReceiver(
                ReceiverSettings(
                    br.http_host, br.webhook_port, pe.webhook_max_age_s, br.webhook_max_inflight
                ),
                {self.source.source_id: pe.webhook_secrets()},
                InboxWriter(config.kafka.librdkafka(), br.webhook_topic),
                self.metrics,
            )

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise ShutdownRequested

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
        if self.webhooks is not None:
            self.webhooks.start()
            log.info(
                "receiving webhooks at /webhooks/passentry/<source id>",
                extra={"port": self.webhooks.port},
            )
        try:
            return self.runner.run()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        # Stop taking webhooks first: what was accepted is in the inbox already.
        if self.webhooks is not None:
            self.webhooks.stop()
        left = self.source.close(self.config.bridge.shutdown_grace_s / 2)
        if left:
            log.warning("records left unacknowledged at shutdown", extra={"records": left})
        if self.http is not None:
            self.http.stop()


def _force_exit() -> None:
    log.warning("shutdown grace period over; leaving without finishing the cycle")
    logging.shutdown()
    os._exit(EXIT_OK)
