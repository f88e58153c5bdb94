"""The spans tracing makes, on an in-memory exporter, through the pipeline on a fake PassEntry
and a list sink: names, kinds, parents, links and attributes as the messaging conventions
say, the record's traceparent naming its create span, and that traceparent the same when a
failed transaction is retried."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from bridge.errors import KafkaRetriableError
from bridge.kafka.checkpoint import InboxPosition
from bridge.kafka.records import OutRecord
from bridge.ops.metrics import Metrics
from bridge.tracecontext import TraceHeaders
from bridge.tracing import NO_TRACING
from bridge.tracing import otel as otel_module
from bridge.tracing.otel import OtelTracing
from bridge.webhook.inbox import InboxBatch, InboxEvent
from tests.unit.fake_api import FakeApi
from tests.unit.pipeline_support import ListSink, build, now_ms
from tests.unit.test_pipeline_push import doc_of, webhook

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exported: InMemorySpanExporter) -> Iterator[OtelTracing]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exported))
    on = OtelTracing(provider)
    yield on
    on.shutdown()


def named(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def traceparent(record: OutRecord) -> TraceHeaders:
    found = TraceHeaders.from_kafka(record.headers)
    assert found is not None
    return found


def test_a_polled_page_is_a_root_span_and_its_scans_create_spans_are_its_children(
    tracing: OtelTracing, exported: InMemorySpanExporter
) -> None:
    api = FakeApi()
    api.include_readers = True
    for n in range(3):
        api.add(now_ms() - 5_000 + n, reader=f"gate-{n}")
    sink = ListSink()
    build(api, sink, Metrics(), tracing=tracing).cycle(threading.Event())
    spans = exported.get_finished_spans()
    pages = named(spans, "GET /api/v1/scans")
    creates = named(spans, "create ")
    (send,) = named(spans, "send")
    assert pages
    assert all(p.parent is None and p.kind is SpanKind.CLIENT for p in pages)
    by_id = {p.context.span_id: p for p in pages}
    assert len(creates) == len(sink.records) == 3
    for record, create in zip(sink.records, creates, strict=True):
        assert create.parent is not None
        assert create.parent.span_id in by_id
        assert create.kind is SpanKind.PRODUCER
        assert create.name == "create scans"
        attrs = create.attributes or {}
        assert attrs["messaging.system"] == "kafka"
        assert attrs["messaging.operation.type"] == "create"
        assert attrs["messaging.destination.name"] == "scans"
        assert attrs["messaging.kafka.message.key"] == record.key.decode()  # type: ignore[union-attr]
        assert attrs["messaging.destination.partition.id"] == "0"
        assert attrs["passentry.scan.id"] == dict(record.headers)["scan-id"]
        header = traceparent(record)
        assert int(header.span_id, 16) == create.context.span_id
        assert int(header.trace_id, 16) == create.context.trace_id
    assert sorted((s.attributes or {})["messaging.kafka.offset"] for s in creates) == [0, 1, 2]
    assert send.name == "send scans"
    assert send.kind is SpanKind.CLIENT
    assert send.parent is None
    assert (send.attributes or {})["messaging.batch.message_count"] == 3
    assert (send.attributes or {})["messaging.operation.type"] == "send"
    assert {link.context.span_id for link in send.links} == {c.context.span_id for c in creates}


def test_a_pushed_scan_continues_the_inbox_records_trace(
    tracing: OtelTracing, exported: InMemorySpanExporter
) -> None:
    now = now_ms()
    api = FakeApi()
    api.include_readers = True
    api.add(now - 5_000, reader="gate-7")
    sink = ListSink()
    p = build(api, sink, Metrics(), tracing=tracing)
    p.cycle(threading.Event())
    new = api.add(now - 100, reader="gate-7")
    event = InboxEvent(webhook(doc_of(api, new)), 0, TraceHeaders(CALLER, "vendor=x"))
    p.publish_pushed(InboxBatch([event], InboxPosition(0, 1)))
    (record,) = [r for r in sink.records if dict(r.headers)["scan-id"] == new]
    header = traceparent(record)
    assert header.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert header.tracestate == "vendor=x"
    (create,) = [
        s for s in named(exported.get_finished_spans(), "create ")
        if s.context.span_id == int(header.span_id, 16)
    ]  # fmt: skip
    assert create.parent is not None
    assert create.parent.span_id == 0x00F067AA0BA902B7
    assert create.parent.is_remote


def test_a_scan_whose_trace_is_not_sampled_carries_its_context_and_records_nothing(
    tracing: OtelTracing, exported: InMemorySpanExporter
) -> None:
    unsampled = CALLER[:-2] + "00"
    now = now_ms()
    api = FakeApi()
    api.include_readers = True
    api.add(now - 5_000, reader="gate-7")
    sink = ListSink()
    p = build(api, sink, Metrics(), tracing=tracing)
    p.cycle(threading.Event())
    exported.clear()
    new = api.add(now - 100, reader="gate-7")
    event = InboxEvent(webhook(doc_of(api, new)), 0, TraceHeaders(unsampled, "vendor=x"))
    p.publish_pushed(InboxBatch([event], InboxPosition(0, 1)))
    (record,) = [r for r in sink.records if dict(r.headers)["scan-id"] == new]
    header = traceparent(record)
    assert header.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert header.span_id not in ("00f067aa0ba902b7", "0" * 16)
    assert not header.sampled
    assert header.tracestate == "vendor=x"
    assert not named(exported.get_finished_spans(), "create ")
    # The transaction's own span is sampled here (always, by the default sampler): it links.
    (send,) = named(exported.get_finished_spans(), "send")
    assert [link.context.span_id for link in send.links] == [int(header.span_id, 16)]


def test_a_retried_transaction_carries_the_same_traceparent_and_one_create_span(
    tracing: OtelTracing, exported: InMemorySpanExporter
) -> None:
    now = now_ms()
    api = FakeApi()
    api.include_readers = True
    api.add(now - 5_000, reader="gate-7")
    sink = ListSink()
    p = build(api, sink, Metrics(), tracing=tracing)
    p.cycle(threading.Event())
    new = api.add(now - 100, reader="gate-7")
    event = InboxEvent(webhook(doc_of(api, new)), 0, TraceHeaders(CALLER))
    sink.fail_next = True
    with pytest.raises(KafkaRetriableError):
        p.publish_pushed(InboxBatch([event], InboxPosition(0, 1)))
    (failed,) = [s for s in named(exported.get_finished_spans(), "send") if s.status.is_ok is False]
    assert failed.status.status_code is StatusCode.ERROR
    # Not ended while its transaction is uncommitted: nothing exported for it yet.
    assert not [
        s for s in named(exported.get_finished_spans(), "create ")
        if (s.attributes or {}).get("passentry.scan.id") == new
    ]  # fmt: skip
    # The inbox is read again: the same event, rebuilt records, the same context.
    p.publish_pushed(InboxBatch([event], InboxPosition(0, 1)))
    (record,) = [r for r in sink.records if dict(r.headers)["scan-id"] == new]
    creates = [
        s for s in named(exported.get_finished_spans(), "create ")
        if (s.attributes or {}).get("passentry.scan.id") == new
    ]  # fmt: skip
    assert len(creates) == 1
    assert int(traceparent(record).span_id, 16) == creates[0].context.span_id
    retried = [s for s in named(exported.get_finished_spans(), "send") if s is not failed]
    assert creates[0].context.span_id in {link.context.span_id for s in retried for link in s.links}


def test_pending_create_spans_are_bounded(
    tracing: OtelTracing, exported: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(otel_module, "_PENDING", 2)

    class Failing(ListSink):
        def send(self, *args: object, **kwargs: object) -> dict[str, int]:
            raise KafkaRetriableError("down")

    records = [OutRecord("dlq", None, b"{}", [("ce_id", f"invalid_id:{n}")]) for n in range(3)]
    checkpoint = OutRecord("state", b"s", b"{}", [])
    with pytest.raises(KafkaRetriableError):
        tracing.publish(Failing(), records, [], checkpoint, 5)
    # The oldest of the three never came back: ended, as never committed.
    (abandoned,) = named(exported.get_finished_spans(), "create ")
    assert abandoned.status.status_code is StatusCode.ERROR
    assert "not published again" in (abandoned.status.description or "")


def test_the_webhook_server_span_continues_the_caller_and_names_the_inbox_context(
    tracing: OtelTracing, exported: InMemorySpanExporter
) -> None:
    started = time.time_ns()
    headers = {"traceparent": CALLER, "user-agent": "PassEntry"}
    with tracing.webhook(headers, "/webhooks/passentry/s1", "10.0.0.1", started) as span:
        span.answered("accepted", 200)
        inbox = span.headers
    (server,) = exported.get_finished_spans()
    assert server.name == "POST /webhooks/passentry/{sourceId}"
    assert server.kind is SpanKind.SERVER
    assert server.start_time == started
    assert server.parent is not None
    assert server.parent.span_id == 0x00F067AA0BA902B7
    assert inbox is not None
    assert int(inbox.span_id, 16) == server.context.span_id
    attrs = server.attributes or {}
    assert attrs["http.route"] == "/webhooks/passentry/{sourceId}"
    assert attrs["http.response.status_code"] == 200
    assert attrs["passentry.webhook.outcome"] == "accepted"
    assert attrs["client.address"] == "10.0.0.1"
    assert server.status.status_code is StatusCode.UNSET  # a 4xx or 2xx is not the server's error


def test_stopping_waits_for_the_export_a_bounded_time() -> None:
    answered = threading.Event()

    class Stuck(TracerProvider):
        def shutdown(self) -> None:
            answered.wait(30)  # a collector that does not answer

    started = time.monotonic()
    OtelTracing(Stuck(shutdown_on_exit=False)).shutdown(timeout_s=0.2)
    assert time.monotonic() - started < 5
    answered.set()


def test_tracing_off_passes_records_through_and_the_callers_context_to_the_inbox() -> None:
    sink = ListSink()
    record = OutRecord("scans", b"k", b"v", [("scan-id", "x")])
    NO_TRACING.publish(sink, [record], [], OutRecord("state", b"s", b"{}", []), 5)
    assert sink.records == [record]
    with NO_TRACING.webhook({"traceparent": CALLER}, "/p", None, 0) as span:
        assert span.headers == TraceHeaders(CALLER)
    with NO_TRACING.webhook({"traceparent": "junk"}, "/p", None, 0) as span:
        assert span.headers is None
