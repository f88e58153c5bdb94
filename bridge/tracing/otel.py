"""Tracing on: the hooks of ``bridge.tracing.hooks`` as OpenTelemetry spans, exported with
OTLP over HTTP by a batch processor.

The shape of one scan's path (names and attributes: ``bridge.tracing.semconv``):

- pushed: the caller's span -> ``POST /webhooks/passentry/{sourceId}`` (SERVER, on the
  replica that took the request) -> ``create <topic>`` (PRODUCER, on the source's owner,
  continued from the inbox record's ``traceparent``);
- polled: ``GET /api/v1/scans`` (CLIENT, a root span per page) -> ``create <topic>``;
- each transaction: ``send <topic>`` (CLIENT, a root span: its records come from many
  traces) with a link to every record's create span.

A create span's context is the record's ``traceparent`` (and ``tracestate``). The span
stays open until its transaction commits, then ends with the record's partition and offset.
A transaction that fails leaves its create spans open and pending: when the pipeline
publishes the same scan again (the same inbox event read again, the same slice polled
again) the record carries the same span, hence the same ``traceparent``, however often it
is retried. Pending spans are bounded (``_PENDING``): the oldest is ended, marked as never
committed, when a scan never comes back.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from bridge import __version__
from bridge.kafka.records import OutRecord
from bridge.tracecontext import TraceHeaders
from bridge.tracing import semconv as sc
from bridge.tracing.hooks import Tracing

if TYPE_CHECKING:
    from bridge.kafka.producer import Sink
    from bridge.passentry.pages import DecodedPage, Listed

__all__ = ["OtelTracing"]

log = logging.getLogger(__name__)

# Create spans of uncommitted transactions kept for their retry: twice the largest
# transaction (a webhook batch of 5000 events).
_PENDING = 10_000
# A transaction's send span links to each of its records' create spans; the SDK keeps 128
# links by default, fewer than a transaction holds.
_LINKS = 5_000
# Spans a burst of transactions queues for export; the SDK's default (2048) is two chunks.
_QUEUE = 50_000
# How long stopping waits for the last spans to be exported.
_SHUTDOWN_S = 5.0

_ROOT = Context()


class OtelTracing(Tracing):
    active = True

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer(
            "passentry-bridge", __version__, schema_url=sc.SCHEMA_URL
        )
        self._pending: OrderedDict[tuple[int, int | str], _Created] = OrderedDict()
        self._lock = threading.Lock()
        # The samplers of OTEL_TRACES_SAMPLER named parentbased_* never record a span whose
        # parent is not sampled (ParentBased's defaults).
        self._parent_based = isinstance(provider.sampler, ParentBased)
        self._ids = RandomIdGenerator()

    @classmethod
    def from_env(cls, exporter: SpanExporter | None = None) -> OtelTracing:
        """The provider as the ``OTEL_*`` variables set it (the SDK reads them), exporting
        to ``exporter`` (default: OTLP over HTTP)."""
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        env = os.environ
        links = None if "OTEL_SPAN_LINK_COUNT_LIMIT" in env else _LINKS
        queue = None if "OTEL_BSP_MAX_QUEUE_SIZE" in env else _QUEUE
        provider = TracerProvider(
            resource=Resource.create({"service.name": _service_name(env),
                                      "service.version": __version__}),
            span_limits=SpanLimits(max_links=links),
            shutdown_on_exit=False,
        )  # fmt: skip
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=queue))
        return cls(provider)

    def shutdown(self, timeout_s: float = _SHUTDOWN_S) -> None:
        """Export what is buffered, for ``timeout_s`` at most: a collector that does not
        answer must not hold the bridge's exit past its grace period."""
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
        for created in pending:
            created.abandon("the bridge stopped before its transaction committed")
        exporting = threading.Thread(target=self._provider.shutdown, name="trace-export",
                                     daemon=True)  # fmt: skip
        exporting.start()
        exporting.join(timeout_s)
        if exporting.is_alive():
            log.warning("trace export did not finish; the last spans are lost",
                        extra={"waited_s": timeout_s})  # fmt: skip

    # --- a polled page -------------------------------------------------------------------

    def page(self) -> _PageSpan:
        return _PageSpan(
            self._tracer.start_span(
                f"GET {sc.SCANS_URL_TEMPLATE}", context=_ROOT, kind=SpanKind.CLIENT,
                attributes={sc.HTTP_REQUEST_METHOD: "GET",
                            sc.URL_TEMPLATE: sc.SCANS_URL_TEMPLATE},
            )
        )  # fmt: skip

    # --- a webhook request -----------------------------------------------------------------

    def webhook(
        self, headers: Mapping[str, str], path: str, remote: str | None, started_ns: int
    ) -> _ServerSpan:
        attributes: dict[str, Any] = {
            sc.HTTP_REQUEST_METHOD: "POST",
            sc.HTTP_ROUTE: sc.WEBHOOK_ROUTE,
            sc.URL_PATH: path,
            sc.URL_SCHEME: "http",
        }
        if remote:
            attributes[sc.CLIENT_ADDRESS] = remote
        agent = headers.get("user-agent")
        if agent:
            attributes[sc.USER_AGENT_ORIGINAL] = agent[:256]
        span = self._tracer.start_span(
            f"POST {sc.WEBHOOK_ROUTE}", context=_parent(TraceHeaders.from_http(headers)),
            kind=SpanKind.SERVER, attributes=attributes, start_time=started_ns,
        )  # fmt: skip
        return _ServerSpan(span)

    # --- one transaction -----------------------------------------------------------------

    def publish(
        self,
        sink: Sink,
        records: list[OutRecord],
        items: Sequence[Listed],
        checkpoint: OutRecord,
        timeout_s: float,
    ) -> dict[str, int]:
        created = self._created(id(sink), records, items)
        traced = [
            OutRecord(r.topic, r.key, r.value, [*r.headers, *c.headers.kafka_headers()],
                      r.created_ms, r.dlq_reason)
            for r, c in zip(records, created, strict=True)
        ]  # fmt: skip
        topics = {r.topic for r in records}
        attributes: dict[str, Any] = {
            sc.MESSAGING_SYSTEM: sc.KAFKA,
            sc.MESSAGING_OPERATION_TYPE: sc.SEND,
            sc.MESSAGING_OPERATION_NAME: sc.SEND,
            sc.MESSAGING_BATCH_MESSAGE_COUNT: len(records),
        }
        # The conventions name the span after its destination when the batch has one.
        name = sc.SEND
        if len(topics) == 1:
            (topic,) = topics
            name = f"{sc.SEND} {topic}"
            attributes[sc.MESSAGING_DESTINATION_NAME] = topic
        send = self._tracer.start_span(
            name, context=_ROOT, kind=SpanKind.CLIENT, attributes=attributes
        )
        if send.is_recording():
            for c in created:
                send.add_link(c.context())
        partitions: dict[int, int] = {}
        offsets_at: dict[int, int] = {}

        def delivered(index: int, partition: int, offset: int) -> None:
            partitions[index], offsets_at[index] = partition, offset

        # Where records landed is for recording spans only: a callback per record costs.
        recording = any(c.span is not None for c in created)
        try:
            acked = sink.send(traced, checkpoint, timeout_s,
                              delivered=delivered if recording else None)  # fmt: skip
        except BaseException as exc:
            _failed(send, exc)
            send.end()
            raise
        send.end()
        for index, item in enumerate(created):
            item.committed(partitions.get(index), offsets_at.get(index))
        with self._lock:
            for item in created:
                self._pending.pop(item.key, None)
        return acked

    def _created(
        self, sink: int, records: list[OutRecord], items: Sequence[Listed]
    ) -> list[_Created]:
        """Each record's create span: the pending one of an earlier attempt, or a new one."""
        out: list[_Created] = []
        parents: dict[str, Context] = {}
        evicted: list[_Created] = []
        with self._lock:
            for index, record in enumerate(records):
                item = items[index] if index < len(items) else None
                key = (sink, item.scan.id_int if item is not None else _dead_letter_key(record))
                created = self._pending.get(key)
                if created is None:
                    trace_headers = item.page.trace if item is not None else None
                    created = self._start_create(key, record, item, trace_headers, parents)
                    self._pending[key] = created
                    if len(self._pending) > _PENDING:
                        evicted.append(self._pending.popitem(last=False)[1])
                out.append(created)
        for old in evicted:
            old.abandon("its scan was not published again")
        return out

    def _start_create(
        self, key: tuple[int, int | str], record: OutRecord, item: Listed | None,
        parent: TraceHeaders | None, parents: dict[str, Context],
    ) -> _Created:  # fmt: skip
        if parent is not None and not parent.sampled and self._parent_based:
            return self._unsampled(key, parent)
        context = _ROOT
        if parent is not None:
            found = parents.get(parent.traceparent)
            if found is None:
                found = parents[parent.traceparent] = _parent(parent)
            context = found
        attributes: dict[str, Any] = {
            sc.MESSAGING_SYSTEM: sc.KAFKA,
            sc.MESSAGING_OPERATION_TYPE: sc.CREATE,
            sc.MESSAGING_OPERATION_NAME: sc.CREATE,
            sc.MESSAGING_DESTINATION_NAME: record.topic,
            sc.MESSAGING_MESSAGE_BODY_SIZE: len(record.value),
        }
        if record.key:
            attributes[sc.MESSAGING_KAFKA_MESSAGE_KEY] = record.key.decode(errors="replace")
        if item is not None:
            attributes[sc.SCAN_ID] = item.scan.resource.id
        if record.dlq_reason is not None:
            attributes[sc.DLQ_REASON] = record.dlq_reason
        span = self._tracer.start_span(
            f"{sc.CREATE} {record.topic}", context=context, kind=SpanKind.PRODUCER,
            attributes=attributes,
        )  # fmt: skip
        return _Created(key, span, _headers(span.get_span_context()))

    def _unsampled(self, key: tuple[int, int | str], parent: TraceHeaders) -> _Created:
        """What the SDK makes under a parent-based sampler for a parent not sampled (a span
        that records nothing, in the parent's trace, with a new id), as its context alone:
        most scans, when a tenth of the traces are sampled, and a tenth of the cost."""
        span_id = self._ids.generate_span_id()
        headers = TraceHeaders(f"00-{parent.trace_id}-{span_id:016x}-00", parent.tracestate)
        return _Created(key, None, headers)


class _Created:
    """A record's create span, or (not sampled) only its context."""

    __slots__ = ("headers", "key", "span")

    def __init__(
        self, key: tuple[int, int | str], span: Span | None, headers: TraceHeaders
    ) -> None:
        self.key = key
        self.span = span
        self.headers = headers

    def context(self) -> SpanContext:
        if self.span is not None:
            return self.span.get_span_context()
        h = self.headers
        state = TraceState.from_header([h.tracestate]) if h.tracestate else None
        flags = TraceFlags(TraceFlags.DEFAULT)
        return SpanContext(
            int(h.trace_id, 16), int(h.span_id, 16), False, trace_flags=flags, trace_state=state
        )

    def committed(self, partition: int | None, offset: int | None) -> None:
        if self.span is None:
            return
        if partition is not None and offset is not None:
            self.span.set_attribute(sc.MESSAGING_DESTINATION_PARTITION_ID, str(partition))
            self.span.set_attribute(sc.MESSAGING_KAFKA_OFFSET, offset)
        self.span.end()

    def abandon(self, why: str) -> None:
        if self.span is None:
            return
        self.span.set_status(Status(StatusCode.ERROR, why))
        self.span.end()


class _Scoped:
    """A span as a context manager: ended on leaving, marked failed if an error left it."""

    def __init__(self, span: Span) -> None:
        self._span = span

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            _failed(self._span, exc)
        self._span.end()


class _PageSpan(_Scoped):
    def fetched(self, url: str, page: DecodedPage) -> None:
        span = self._span
        parts = urlsplit(url)
        span.set_attribute(sc.URL_FULL, url)
        if parts.hostname:
            span.set_attribute(sc.SERVER_ADDRESS, parts.hostname)
        if parts.port:
            span.set_attribute(sc.SERVER_PORT, parts.port)
        span.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, 200)
        span.set_attribute(sc.PAGE_SCANS, page.size)
        page.trace = _headers(span.get_span_context())


class _ServerSpan(_Scoped):
    def __init__(self, span: Span) -> None:
        super().__init__(span)
        self.headers: TraceHeaders | None = _headers(span.get_span_context())

    def answered(self, outcome: str, status: int) -> None:
        self._span.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, status)
        self._span.set_attribute(sc.WEBHOOK_OUTCOME, outcome)
        if status >= 500:
            # A server span marks only its own failures as errors, not a client's 4xx.
            self._span.set_attribute(sc.ERROR_TYPE, str(status))
            self._span.set_status(Status(StatusCode.ERROR))


def _parent(headers: TraceHeaders | None) -> Context:
    if headers is None:
        return _ROOT
    state = TraceState.from_header([headers.tracestate]) if headers.tracestate else None
    remote = SpanContext(
        int(headers.trace_id, 16),
        int(headers.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(headers.traceparent[53:55], 16)),
        trace_state=state,
    )
    return trace.set_span_in_context(NonRecordingSpan(remote), _ROOT)


def _headers(ctx: SpanContext) -> TraceHeaders:
    parent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags) & 0xFF:02x}"
    state = ctx.trace_state.to_header() if ctx.trace_state else ""
    return TraceHeaders(parent, state or None)


def _failed(span: Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_attribute(sc.ERROR_TYPE, type(exc).__name__)
    span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))


def _dead_letter_key(record: OutRecord) -> str:
    """A dead letter's own id (its ``ce_id``: reason and scan id, or a digest)."""
    for key, value in record.headers:
        if key == "ce_id" and value is not None:
            return value.decode(errors="replace") if isinstance(value, bytes) else value
    return f"{record.topic}:{hash(record.value)}"


def _service_name(env: Mapping[str, str]) -> str:
    # Resource.create reads OTEL_SERVICE_NAME too; without it the SDK says "unknown_service".
    return env.get("OTEL_SERVICE_NAME", "").strip() or "passentry-bridge"
