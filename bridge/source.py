"""One PassEntry source, assembled from the config: its API client and slice reader, the
stages, its transactional producer, checkpoint store, webhook inbox and pipeline.

Everything here belongs to one source id: its transactional id fences any other writer of
the source, and its checkpoint and dedup window are its own. All of it is used from one
thread, the source's (``bridge.runner``); its webhook inbox is served on that thread too,
between polls and while a poll waits for PassEntry (``bridge.webhook.pump``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import httpx

from bridge.avro.framing import Framer
from bridge.avro.registry import RegistryFramer
from bridge.dedup import DedupWindow
from bridge.kafka.producer import transactional_id
from bridge.passentry.slices import SliceReader
from bridge.pipeline import CycleStats, Pipeline, PipelineSettings, Restored
from bridge.webhook.inbox import InboxReader
from bridge.webhook.pump import InboxPump
from bridge.wiring import Wiring

__all__ = ["Source"]

log = logging.getLogger(__name__)


class Source:
    def __init__(
        self,
        wiring: Wiring,
        *,
        start_ms: int,
        sleep: Callable[[float], None],
        transport: httpx.BaseTransport | None = None,
        framer: Framer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``wiring``: the source's parts, as every command builds them (its metrics, its
        KafkaAccess and its tracing come with it)."""
        self.config = config = wiring.config
        self.spec = spec = wiring.spec
        self.source_id = source_id = spec.id
        pe, kafka, br = spec.passentry, config.kafka, config.bridge
        metrics, tracing = wiring.metrics, wiring.tracing
        self.client = wiring.api_client(transport=transport, sleep=sleep)
        self.topics = wiring.topics()
        self.publisher = wiring.publisher(transactional_id(source_id))
        self.checkpoints = wiring.checkpoints()
        self._metrics = metrics
        self._clock = clock
        self.registry: RegistryFramer | None = None
        if framer is None:
            framing = wiring.framing()
            framer, self.registry = framing.framer, framing.registry
        lookback_ms = int(pe.lookback_s * 1000)
        reader = SliceReader(
            self.client,
            wiring.slice_plan(overlap_ms=min(int(pe.poll_overlap_s * 1000), lookback_ms)),
        )
        self.pipeline = Pipeline(
            reader=reader,
            enricher=wiring.enricher(self.client),
            encoder=wiring.encoder(),
            records=wiring.records(framer),
            publisher=self.publisher,
            checkpoints=self.checkpoints,
            window=DedupWindow(
                lookback_ms,
                sweep_ms=None if pe.late_sweep_s is None else int(pe.late_sweep_s * 1000),
            ),
            metrics=metrics,
            settings=PipelineSettings(
                source_id=source_id,
                dlq_topic=br.dlq_topic,
                fixed_topics=tuple(self._fixed_topics()),
                delivery_timeout_s=kafka.message_timeout_ms / 1000 + 5,
                start_ms=start_ms,
            ),
            ensure_topics=self.topics.ensure,
            tracing=tracing,
        )
        # The webhook inbox of this source, read while this process owns it, from the
        # position the pipeline's last committed checkpoint carried.
        self.inbox: InboxReader | None = None
        self._pump: InboxPump | None = None
        if pe.webhooks_enabled:
            self.inbox = InboxReader(
                wiring.kafka_conf(), br.webhook_topic, source_id, lambda: self.pipeline.inbox
            )
            self._pump = InboxPump(
                self.inbox,
                lambda batch: self.pipeline.publish_pushed(batch).events,
                gather_s=br.webhook_batch_ms / 1000,
                on_lag=metrics.webhook_inbox_lag.labels(source_id).set,
                clock=clock,
            )
            # A poll's requests wait on the source's thread: serve webhooks meanwhile.
            reader.wait = self._pump.wait

    def prepare(self) -> Restored:
        """Make sure the topics exist and the registry holds our schema, then restore, then
        read the inbox from the position the restored transactions committed."""
        br = self.config.bridge
        if self.inbox is not None:
            self.inbox.close()  # until the restore says where its events continue
        self.topics.ensure([br.state_topic], compacted=True)
        self.topics.ensure(self._fixed_topics())
        if self.inbox is not None:
            self.topics.ensure([br.webhook_topic])
        if self.registry is not None and (
            self.spec.topic_template is None
            or self.config.schema_registry.subject_name_strategy == "record"
        ):
            # A schema mismatch stops start-up before anything is published; the subject of
            # a routed topic is checked when that topic is first used. Unreachable: retried.
            self.registry.check_startup([self.spec.scans_topic])
        restored = self.pipeline.restore()
        if self.inbox is not None:
            self.inbox.open(self.topics.partition_count(br.webhook_topic))
        return restored

    @property
    def pushing(self) -> bool:
        """Webhooks flowed lately: polling is the backstop."""
        if self._pump is None:
            return False
        since = self._clock() - self._pump.last_events_at
        return since < 2 * self.spec.passentry.poll_interval_backstop_s

    def cycle(self, stop: threading.Event) -> CycleStats:
        settle = int(self.spec.passentry.webhook_settle_s * 1000) if self.pushing else None
        return self.pipeline.cycle(stop, settle_ms=settle)

    def wait(self, seconds: float, stop: threading.Event) -> None:
        """Until the next poll, publishing what webhooks bring meanwhile; a failure to do so
        is raised here, in the source's loop, like a failed poll."""
        if self._pump is None:
            stop.wait(seconds)
        else:
            self._pump.serve_for(seconds, stop)

    def recreate_producer(self) -> None:
        """After a ProducerSpentError: a new producer with the same transactional id,
        which the next restore initialises (that settles what the old one left open)."""
        self.publisher.recreate()

    def close(self, grace_s: float) -> int:
        """Abort what is open, release everything; return the records left unacknowledged."""
        left = self.publisher.close(grace_s)
        if self.inbox is not None:
            self.inbox.close()
        self.pipeline.close()
        self.client.close()
        if self.registry is not None:
            self.registry.close()
        return left

    def _fixed_topics(self) -> list[str]:
        topics = [self.config.bridge.dlq_topic]
        if self.spec.topic_template is None:
            topics.append(self.spec.scans_topic)
        return topics
