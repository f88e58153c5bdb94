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

from bridge.avro.encoder import Encoder
from bridge.avro.framing import Framer, SingleObjectFramer
from bridge.avro.registry import RegistryFramer
from bridge.avro.schemas import latest
from bridge.config import Config, SourceConfig
from bridge.dedup import DedupWindow
from bridge.enrich import Enricher, PassCache
from bridge.kafka.access import KafkaAccess
from bridge.kafka.checkpoint import CheckpointStore
from bridge.kafka.producer import Publisher, transactional_id
from bridge.kafka.records import RecordBuilder
from bridge.kafka.routing import Router
from bridge.kafka.topics import TopicManager
from bridge.ops.metrics import Metrics
from bridge.passentry.client import PassEntryClient
from bridge.passentry.ratelimit import RequestBudget
from bridge.passentry.slices import SlicePlan, SliceReader
from bridge.pipeline import CycleStats, Pipeline, PipelineSettings, Restored
from bridge.tracing.hooks import NO_TRACING, Tracing
from bridge.webhook.inbox import InboxReader
from bridge.webhook.pump import InboxPump

__all__ = ["Source"]

log = logging.getLogger(__name__)


class Source:
    def __init__(
        self,
        config: Config,
        spec: SourceConfig,
        *,
        start_ms: int,
        metrics: Metrics,
        sleep: Callable[[float], None],
        transport: httpx.BaseTransport | None = None,
        framer: Framer | None = None,
        clock: Callable[[], float] = time.monotonic,
        kafka_access: KafkaAccess | None = None,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self.config = config
        self.spec = spec
        self.source_id = source_id = spec.id
        pe, kafka, br = spec.passentry, config.kafka, config.bridge
        self.client = PassEntryClient(
            str(pe.api_url),
            spec.token(),
            metrics=metrics,
            budget=RequestBudget(pe.request_budget),
            timeout_s=pe.timeout_s,
            retry_deadline_s=pe.retry_deadline_s,
            transport=transport,
            sleep=sleep,
            tracing=tracing,
            names=spec.setting_names(),
        )
        client_conf = kafka.librdkafka()
        if kafka_access is not None:
            # Its clients' errors tell a refused login or certificate from an outage.
            client_conf = kafka_access.client_conf(client_conf)
        self.topics = TopicManager(
            client_conf,
            create=br.create_topics,
            partitions=br.topic_partitions,
            replication_factor=br.topic_replication_factor,
        )
        self.publisher = Publisher.for_settings(
            client_conf,
            kafka,
            metrics,
            transactional_id=transactional_id(source_id),
            hold_s=br.debug_txn_hold_s,
        )
        self.checkpoints = CheckpointStore(client_conf, br.state_topic, source_id)
        self._metrics = metrics
        self._clock = clock
        # The webhook inbox of this source, read while this process owns it.
        self.inbox: InboxReader | None = None
        if pe.webhooks_enabled:
            self.inbox = InboxReader(client_conf, br.webhook_topic, source_id)
        schema = latest()
        # Registry mode when SCHEMA_REGISTRY_URL is set: the Confluent wire format, ids
        # from the registry; otherwise Avro single-object encoding.
        self.registry: RegistryFramer | None = None
        if framer is None:
            framer = SingleObjectFramer(schema)
            if config.schema_registry.enabled:
                framer = self.registry = RegistryFramer(config.schema_registry, schema)
        lookback_ms = int(pe.lookback_s * 1000)
        reader = SliceReader(
            self.client,
            SlicePlan(
                filters=pe.filters.as_query(),
                per_page=pe.per_page,
                concurrency=pe.backfill_concurrency,
                max_scans=pe.max_cycle_scans,
                overlap_ms=min(int(pe.poll_overlap_s * 1000), lookback_ms),
                sweep_interval_s=pe.sweep_interval_s,
            ),
        )
        self.pipeline = Pipeline(
            reader=reader,
            enricher=Enricher(self.client.get_pass, metrics, PassCache(pe.pass_cache_size)),
            encoder=Encoder(schema, spec.id),
            records=RecordBuilder(
                source_id, br.dlq_topic, Router(spec.scans_topic, spec.topic_template), framer
            ),
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
        self._pump: InboxPump | None = None
        if self.inbox is not None:
            self._pump = InboxPump(
                self.inbox,
                lambda batch, group: self.pipeline.publish_pushed(batch, group).events,
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
        """After a commit whose outcome is unknown: a new producer with the same
        transactional id, which the next restore initialises (that settles it)."""
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
