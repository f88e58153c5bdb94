"""The bridge process: build its parts from the config, serve /metrics, the probes and the
webhook receiver, handle signals, run the sources, and shut down within the grace period.

Under a consumer group (``BRIDGE_GROUP_ID``, the default) the process is a member: it runs
the sources the group assigns it and hands them over on a rebalance. Without one, and for
``run --once`` and ``backfill``, it runs every source of its config itself.

Every Kafka client of the process reports to one ``KafkaAccess``, which tells refused
credentials and unverifiable certificates from a broker that is merely down.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

import httpx

from bridge.avro.framing import Framer
from bridge.backoff import Backoff
from bridge.config import Config
from bridge.errors import FatalError, ListenError, RetriableError
from bridge.fleet import Fleet
from bridge.kafka.access import KafkaAccess
from bridge.kafka.membership import GroupSettings, Membership
from bridge.kafka.tls import check_tls_files
from bridge.kafka.topics import TopicManager
from bridge.ops.health import MemberHealth, ProcessHealth
from bridge.ops.metrics import Metrics
from bridge.ops.status_server import StatusServer
from bridge.runner import EXIT_FATAL, EXIT_OK, RunOptions
from bridge.tracing.env import tracing_from_env
from bridge.tracing.hooks import Tracing

if TYPE_CHECKING:
    from bridge.webhook.inbox import InboxWriter
    from bridge.webhook.receiver import WebhookReceiver

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
        tracing: Tracing | None = None,
    ) -> None:
        self.config = config
        self.options = options
        self.metrics = metrics if metrics is not None else Metrics()
        self.stop = threading.Event()
        br = config.bridge
        # A TLS file that cannot be read is a configuration error, said before any client.
        check_tls_files(config.kafka)
        # OTEL_*: off unless an endpoint is set; a wrong value is a configuration error.
        self.tracing = tracing if tracing is not None else tracing_from_env()
        self.kafka = KafkaAccess(config.kafka)
        # A run that ends by itself (--once, backfill) owns its sources outright.
        self.grouped = bool(br.group_id) and not options.once
        self.member = MemberHealth() if self.grouped else None
        self.health = ProcessHealth(self.member)
        self.fleet = Fleet(
            config,
            options,
            self.metrics,
            self.health,
            restart_fatal=self.grouped,
            transport=transport,
            framer=framer,
            kafka=self.kafka,
            tracing=self.tracing,
        )
        self.http: StatusServer | None = None
        if options.serve_http:
            self.http = StatusServer(br.http_host, br.http_port, self.metrics, self.health)
        self.webhooks: WebhookReceiver | None = None
        if options.serve_http and any(s.passentry.webhooks_enabled for s in config.sources):
            from bridge.webhook.inbox import InboxWriter

            inbox = InboxWriter(self.kafka.conf(), br.webhook_topic)
            # Until the inbox can take events the receiver answers 503: not ready.
            self.health.needs("webhooks", inbox.readiness)
            self.webhooks = _receiver(config, inbox, self.metrics, self.tracing)

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
        if self.webhooks is not None:
            # Bound first: a port in use stops the start with that one line.
            try:
                self.webhooks.start()
            except ListenError as exc:
                log.error("cannot start", extra={"error": str(exc)})
                if self.http is not None:
                    self.http.stop()
                return EXIT_FATAL
        if self.http is not None:
            self.http.start()
            log.info("serving /metrics /healthz /readyz", extra={"port": self.http.port})
        if self.webhooks is not None:
            log.info(
                "receiving webhooks at /webhooks/passentry/<source id>",
                extra={"port": self.webhooks.port},
            )
        try:
            if self.grouped:
                return self._run_as_member()
            self.fleet.start(s.id for s in self.config.sources)
            code = self.fleet.wait(self.stop)
        finally:
            self._shutdown()
        if code != EXIT_OK:
            # Without a group a source's failure is the process's: its last line says why.
            reports = self.health.reports().items()
            why = "; ".join(f"source {sid}: {r.error}" for sid, r in reports if r.error)
            log.error("exiting", extra={"exit_code": code, "error": why or "see above"})
        return code

    def _run_as_member(self) -> int:
        br = self.config.bridge
        partitions = self._coordination_partitions()
        if partitions is None:
            return EXIT_OK  # stopped before Kafka answered
        grace = br.shutdown_grace_s / 2
        member = self.member
        if member is None:
            raise RuntimeError("a group member needs its health")
        membership = Membership(
            self.kafka.conf(),
            GroupSettings(
                br.group_id,
                br.coordination_topic,
                partitions,
                br.group_session_timeout_ms,
                br.group_protocol,
            ),
            [s.id for s in self.config.sources],
            start=self.fleet.start,
            stop=lambda ids: self.fleet.stop(ids, grace),
            hold=self.fleet.hold,
            release=self.fleet.release,
            metrics=self.metrics,
            health=member,
            access=self.kafka,
        )
        log.info("joining the consumer group", extra={"group_id": br.group_id})
        membership.run(self.stop)
        return EXIT_OK

    def _coordination_partitions(self) -> int | None:
        """The coordination topic's partition count, creating the topic (and the webhook
        inbox) if allowed; retried, readiness false meanwhile, until Kafka answers or the
        bridge is stopped. Refused by Kafka (credentials, certificate, an ACL), the member
        stays unready with the reason, said once in the log, and keeps trying: the fix may
        come from the cluster's side."""
        br = self.config.bridge
        topics = TopicManager(
            self.kafka.conf(),
            create=br.create_topics,
            partitions=br.coordination_partitions,
            replication_factor=br.topic_replication_factor,
        )
        backoff = Backoff(1.0, 30.0)
        said: str | None = None
        while not self.stop.is_set():
            if self.member is not None:
                self.member.beat()
            try:
                topics.ensure([br.coordination_topic])
                if self.webhooks is not None:
                    # Any member takes webhooks for any source, owner or not.
                    topics.ensure([br.webhook_topic])
                partitions = topics.partition_count(br.coordination_topic)
                self.kafka.succeeded()
                return partitions
            except (RetriableError, FatalError) as exc:
                refused = exc if isinstance(exc, FatalError) else self.kafka.failure()
                reason = str(refused or exc)
                if self.member is not None:
                    self.member.error(reason)
                if refused is None:
                    log.warning("cannot reach the coordination topic yet", extra={"error": reason})
                elif reason != said:
                    log.error("Kafka refuses this member; retrying", extra={"error": reason})
                said = reason if refused is not None else None
                self.stop.wait(backoff.next())
        return None

    def _shutdown(self) -> None:
        # Stop taking webhooks first: what was accepted is in the inbox already.
        if self.webhooks is not None:
            self.webhooks.stop()
        self.fleet.stop_all(self.config.bridge.shutdown_grace_s / 2)
        if self.http is not None:
            self.http.stop()
        # Export the spans of what was committed, before the process leaves.
        self.tracing.shutdown()


def _receiver(
    config: Config, inbox: InboxWriter, metrics: Metrics, tracing: Tracing
) -> WebhookReceiver:
    """The webhook receiver for every source that takes webhooks. Raises ConfigError for a
    bad or shared secret, or a connection cap the file limit cannot hold."""
    from bridge.webhook.keys import signing_keys
    from bridge.webhook.receiver import (
        MAX_BODY_BYTES,
        ReceiverSettings,
        WebhookReceiver,
        WebhookSource,
    )
    from bridge.webhook.server import ServerLimits, ensure_file_limit, ensure_port_free

    br = config.bridge
    ensure_file_limit(br.webhook_max_connections)
    ensure_port_free(br.http_host, br.webhook_port, "BRIDGE_WEBHOOK_PORT")
    keys = signing_keys(config.sources)
    sources = {
        s.id: WebhookSource(
            keys[s.id], s.passentry.webhook_max_age_s, s.passentry.webhook_max_future_s
        )
        for s in config.sources
        if s.id in keys
    }
    limits = ServerLimits(
        max_connections=br.webhook_max_connections,
        header_timeout_s=br.webhook_header_timeout_s,
        body_timeout_s=br.webhook_body_timeout_s,
        keepalive_s=br.webhook_keepalive_s,
        max_body_bytes=MAX_BODY_BYTES,
    )
    # Any replica takes a webhook for any source: the owner reads it from the inbox.
    return WebhookReceiver(
        ReceiverSettings(
            br.http_host,
            br.webhook_port,
            br.webhook_max_inflight,
            limits,
            br.webhook_replay_cache_size,
        ),
        sources,
        inbox,
        metrics,
        tracing=tracing,
    )


def _force_exit() -> None:
    log.warning("shutdown grace period over; leaving without finishing the cycle")
    logging.shutdown()
    os._exit(EXIT_OK)
