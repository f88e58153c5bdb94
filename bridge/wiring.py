"""One source's parts, built from the config: the one place that knows how.

The live source (``bridge.source``), the audit and its repair (backfill too), dlq replay and
``state reset`` all build the same API client, topics, producer, checkpoint store, framing,
enrichment, encoder and record builder. They take them from a :class:`Wiring`, so that a
setting means the same to every command, and every Kafka client reports its errors to the
command's :class:`KafkaAccess`, which tells a refused login, certificate or ACL from a broker
that is down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bridge.avro.encoder import Encoder
from bridge.avro.framing import Framer, SingleObjectFramer
from bridge.avro.registry import RegistryFramer
from bridge.avro.schemas import latest
from bridge.config import Config, SourceConfig
from bridge.enrich import Enricher, PassCache
from bridge.kafka.access import KafkaAccess
from bridge.kafka.checkpoint import CheckpointStore
from bridge.kafka.producer import Publisher
from bridge.kafka.records import RecordBuilder
from bridge.kafka.routing import Router
from bridge.kafka.topics import TopicManager
from bridge.ops.metrics import Metrics
from bridge.passentry.client import PassEntryClient
from bridge.passentry.ratelimit import RequestBudget
from bridge.passentry.slices import SlicePlan
from bridge.tracing.hooks import NO_TRACING, Tracing

__all__ = ["Framing", "Wiring", "command_api_client"]


@dataclass(frozen=True, slots=True)
class Framing:
    """How records are framed: Avro single-object encoding, or the registry's wire format
    (``registry`` set, to be checked at start-up and closed at the end)."""

    framer: Framer
    registry: RegistryFramer | None


@dataclass(frozen=True, slots=True)
class Wiring:
    config: Config
    spec: SourceConfig
    metrics: Metrics
    access: KafkaAccess
    tracing: Tracing = NO_TRACING

    @classmethod
    def of(
        cls,
        config: Config,
        source_id: str,
        *,
        metrics: Metrics | None = None,
        access: KafkaAccess | None = None,
        tracing: Tracing = NO_TRACING,
    ) -> Wiring:
        """``access``: the process's, shared by its sources; a command's own by default,
        which diagnoses a refusal at once (no grace: a command does not wait it out)."""
        return cls(
            config,
            config.source(source_id),
            metrics if metrics is not None else Metrics(),
            access if access is not None else KafkaAccess.for_command(config.kafka),
            tracing,
        )

    @property
    def source_id(self) -> str:
        return self.spec.id

    def kafka_conf(self) -> dict[str, Any]:
        """librdkafka's settings for any client of this source, errors going to ``access``."""
        return self.access.conf()

    def api_client(
        self,
        *,
        requests_per_s: float | None = None,
        retry_deadline_s: float | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> PassEntryClient:
        """The source's PassEntry client; ``requests_per_s`` at most its request budget."""
        pe = self.spec.passentry
        budget = pe.request_budget
        if requests_per_s is not None:
            budget = min(requests_per_s, budget)
        return PassEntryClient(
            str(pe.api_url),
            self.spec.token(),
            metrics=self.metrics,
            budget=RequestBudget(budget),
            timeout_s=pe.timeout_s,
            retry_deadline_s=pe.retry_deadline_s if retry_deadline_s is None else retry_deadline_s,
            transport=transport,
            sleep=sleep,
            tracing=self.tracing,
            names=self.spec.setting_names(),
        )

    def slice_plan(self, *, overlap_ms: int) -> SlicePlan:
        pe = self.spec.passentry
        return SlicePlan(
            filters=pe.filters.as_query(),
            per_page=pe.per_page,
            concurrency=pe.backfill_concurrency,
            max_scans=pe.max_cycle_scans,
            overlap_ms=overlap_ms,
            sweep_interval_s=pe.sweep_interval_s,
        )

    def topics(self) -> TopicManager:
        br = self.config.bridge
        return TopicManager(
            self.kafka_conf(),
            create=br.create_topics,
            partitions=br.topic_partitions,
            replication_factor=br.topic_replication_factor,
        )

    def publisher(self, transactional_id: str) -> Publisher:
        return Publisher.for_settings(
            self.kafka_conf(),
            self.config.kafka,
            self.metrics,
            transactional_id=transactional_id,
            hold_s=self.config.bridge.debug_txn_hold_s,
            every_delivery=self.tracing.active,
        )

    def checkpoints(self) -> CheckpointStore:
        return CheckpointStore(self.kafka_conf(), self.config.bridge.state_topic, self.source_id)

    def framing(self) -> Framing:
        """Registry mode when SCHEMA_REGISTRY_URL is set: the Confluent wire format, ids from
        the registry; otherwise Avro single-object encoding."""
        schema = latest()
        if self.config.schema_registry.enabled:
            registry = RegistryFramer(self.config.schema_registry, schema)
            return Framing(registry, registry)
        return Framing(SingleObjectFramer(schema), None)

    def enricher(self, client: PassEntryClient) -> Enricher:
        return Enricher(
            client.get_pass,
            self.metrics,
            PassCache(self.spec.passentry.pass_cache_size),
            look_up_scan=client.look_up_scan,
        )

    def encoder(self) -> Encoder:
        return Encoder(latest(), self.source_id)

    def records(self, framer: Framer) -> RecordBuilder:
        router = Router(self.spec.scans_topic, self.spec.topic_template)
        return RecordBuilder(self.source_id, self.config.bridge.dlq_topic, router, framer)


def command_api_client(
    config: Config, source: SourceConfig, *, retry_deadline_s: float = 10.0
) -> PassEntryClient:
    """A PassEntry client for a command (not the bridge): short retries, its own metrics,
    the source's settings and token."""
    wiring = Wiring(config, source, Metrics(), KafkaAccess.for_command(config.kafka))
    deadline = min(source.passentry.retry_deadline_s, retry_deadline_s)
    return wiring.api_client(retry_deadline_s=deadline)
