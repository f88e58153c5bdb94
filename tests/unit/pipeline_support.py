"""A pipeline over a fake PassEntry and a list for a sink: for pipeline unit tests."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import fastavro

from bridge.avro.encoder import Encoder
from bridge.avro.framing import SingleObjectFramer
from bridge.avro.schemas import latest
from bridge.dedup import DedupWindow
from bridge.enrich import Enricher
from bridge.errors import KafkaRetriableError
from bridge.kafka.checkpoint import CheckpointStore
from bridge.kafka.producer import Delivered
from bridge.kafka.records import OutRecord, RecordBuilder
from bridge.kafka.routing import Router
from bridge.ops.metrics import Metrics
from bridge.passentry.client import PassEntryClient
from bridge.passentry.ratelimit import RequestBudget
from bridge.passentry.slices import SlicePlan, SliceReader
from bridge.pipeline import Pipeline, PipelineSettings
from bridge.tracing.hooks import NO_TRACING, Tracing
from tests.unit.fake_api import FakeApi


def now_ms() -> int:
    # Each test reads the clock when it starts: a module-level constant goes stale when a
    # long suite runs before this file, and old scans then fall outside the lookback.
    return int(time.time() * 1000)


class ListSink:
    def __init__(self) -> None:
        self.records: list[OutRecord] = []
        self.fail_next = False
        self.checkpoints: list[dict[str, Any]] = []

    def init(self) -> None:
        pass

    def send(
        self,
        records: list[OutRecord],
        checkpoint: OutRecord,
        timeout_s: float,
        *,
        delivered: Delivered | None = None,
    ) -> dict[str, int]:
        if self.fail_next:
            self.fail_next = False
            raise KafkaRetriableError("broker went away")
        if delivered is not None:
            # One partition; offsets go on from what was sent before.
            for index in range(len(records)):
                delivered(index, 0, len(self.records) + index)
        self.records.extend(records)
        self.checkpoints.append(json.loads(checkpoint.value))
        counts: dict[str, int] = {}
        for r in records:
            counts[r.topic] = counts.get(r.topic, 0) + 1
        return counts

    def scan_ids(self, topic: str = "scans") -> list[str]:
        return [dict(r.headers)["scan-id"] for r in self.records if r.topic == topic]  # type: ignore[misc]


def build(
    api: FakeApi,
    sink: ListSink,
    metrics: Metrics,
    *,
    per_page: int = 10,
    concurrency: int = 3,
    lookback_ms: int = 60_000,
    template: str | None = None,
    max_cycle_scans: int = 10_000,
    overlap_ms: int = 10_000,
    start_ms: int | None = None,
    encoder: Encoder | None = None,
    tracing: Tracing = NO_TRACING,
) -> Pipeline:
    client = PassEntryClient(
        "https://api.example.test",
        "t",
        metrics=metrics,
        budget=RequestBudget(10_000),
        transport=api.transport(),
        tracing=tracing,
    )
    schema = latest()
    reader = SliceReader(
        client,
        SlicePlan(
            filters={},
            per_page=per_page,
            concurrency=concurrency,
            max_scans=max_cycle_scans,
            overlap_ms=min(overlap_ms, lookback_ms),
            sweep_interval_s=30,
        ),
    )
    return Pipeline(
        reader=reader,
        enricher=Enricher(client.get_pass, metrics, look_up_scan=client.look_up_scan),
        encoder=Encoder(schema, "src") if encoder is None else encoder,
        records=RecordBuilder("src", "dlq", Router("scans", template), SingleObjectFramer(schema)),
        publisher=sink,
        checkpoints=CheckpointStore({}, "state", "src"),
        window=DedupWindow(lookback_ms),
        metrics=metrics,
        settings=PipelineSettings(
            source_id="src",
            dlq_topic="dlq",
            fixed_topics=("dlq", "scans"),
            delivery_timeout_s=5,
            start_ms=now_ms() - 3_600_000 if start_ms is None else start_ms,
        ),
        ensure_topics=lambda topics: None,
        tracing=tracing,
    )


def decode(value: bytes) -> dict:  # type: ignore[type-arg]
    return fastavro.schemaless_reader(io.BytesIO(value[10:]), latest().parsed)  # type: ignore[return-value]
