"""One scan followed end to end in a real Jaeger: the bridge (a process, tracing on by the
standard OTEL_* variables) exports to Jaeger's OTLP receiver; the test asks Jaeger's query API.

- A webhook carrying a ``TraceParent`` (not lower-case on the wire) is continued: the
  caller's span -> the receiver's server span -> the scan's create span, one trace; the
  transaction's send span links to the create span; the record's ``traceparent`` names the
  create span, its ``tracestate`` is the caller's.
- A polled page starts a root span; its scans' create spans are its children, and their
  records' ``traceparent`` names them.
"""

from __future__ import annotations

import json
import secrets
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.tracing import semconv
from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from passentry_simulator.webhooks import render_event, sign
from tests.integration.eos_harness import BridgeProcess, Topics, bridge_env
from tests.integration.harness import Record, drain
from tests.integration.jaeger_support import (
    BUILD_TIMEOUT_S,
    Jaeger,
    build_jaeger,
    refs,
    span_named,
    start_jaeger,
    tags,
)
from tests.support import free_port

# A cold build of Jaeger may be part of the first test.
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S + 300)

SECRET = "whsec-tracing-0123456789abcdef0123456789"


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    binary = build_jaeger()
    proc, found = start_jaeger(binary, tmp_path_factory.mktemp("jaeger"))
    try:
        yield found
    finally:
        proc.terminate()
        proc.wait(20)


def _same(a: str, b: str) -> bool:
    """Jaeger prints ids as hex without their leading zeros."""
    return int(a, 16) == int(b, 16)


def _parent_of(span: dict[str, Any]) -> str:
    (parent,) = refs(span, "CHILD_OF")
    return parent[1]


def _traceparent(record: Record) -> tuple[str, str]:
    version, trace_id, span_id, flags = record.headers["traceparent"].decode().split("-")
    assert version == "00"
    assert int(flags, 16) & 1, "a sampled W3C traceparent"
    return trace_id, span_id


def test_one_scan_is_followed_from_the_webhook_and_a_page_in_jaeger(
    kafka_bootstrap: str, jaeger: Jaeger, tmp_path: Path
) -> None:
    topics = Topics.fresh()
    service = f"bridge-trace-{uuid.uuid4().hex[:6]}"
    world = WorldConfig(readers=3, passes=20, seed=41, backlog=12, backlog_span_s=60)
    webhook_port = free_port()
    with SimulatorServer(SimulatorConfig(world=world)) as sim:
        env = bridge_env(
            sim.url, kafka_bootstrap, topics,
            PASSENTRY_WEBHOOK_SECRET=SECRET,
            BRIDGE_WEBHOOK_PORT=str(webhook_port),
            BRIDGE_WEBHOOK_TOPIC=f"{topics.scans}-inbox",
            BRIDGE_HTTP_HOST="127.0.0.1",
            # One poll (the backlog: every reader seen in full), then none for the test:
            # the scan made later can only come by its webhook.
            PASSENTRY_POLL_INTERVAL_MIN_S="120", PASSENTRY_POLL_INTERVAL_MAX_S="120",
            OTEL_EXPORTER_OTLP_ENDPOINT=jaeger.otlp_url,
            OTEL_SERVICE_NAME=service,
            OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="1.0",
            OTEL_BSP_SCHEDULE_DELAY="200",
        )  # fmt: skip
        bridge = BridgeProcess(env, tmp_path, "bridge").start(since="2000-01-01T00:00:00Z")
        bridge.wait_up()
        # Ready: the webhook receiver's inbox is known, so the webhook below is taken.
        bridge.wait_metric("passentry_bridge_ready", 1, 60)
        backlog = {s.id for s in sim.store.all_scans()}
        polled = drain(
            kafka_bootstrap, topics.scans, timeout_s=90,
            until=lambda rs: {r.headers["scan-id"].decode() for r in rs} >= backlog,
        )  # fmt: skip

        # The webhook: a scan made now, pushed with the caller's trace context.
        (scan,) = sim.store.generate(1)
        caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)
        body = render_event(str(uuid.uuid4()), int(time.time() * 1000), scan)
        answer = httpx.post(
            f"http://127.0.0.1:{webhook_port}/webhooks/passentry/{topics.source}",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Webhook-Signature": sign(body, SECRET),
                "TraceParent": f"00-{caller_trace}-{caller_span}-01",
                "TraceState": "passentry=caller",
            },
            timeout=15,
        )
        assert answer.status_code == 200, answer.text
        pushed = drain(
            kafka_bootstrap, topics.scans, timeout_s=60,
            until=lambda rs: any(r.headers["scan-id"].decode() == scan.id for r in rs),
        )  # fmt: skip
        (record,) = [r for r in pushed if r.headers["scan-id"].decode() == scan.id]
        trace_id, create_id = _traceparent(record)
        assert trace_id == caller_trace, "the record continues the caller's trace"
        assert record.headers["tracestate"] == b"passentry=caller"

        # Jaeger: the caller's trace holds the server span and, under it, the create span.
        create_name = f"create {topics.scans}"
        server_name = f"POST {semconv.WEBHOOK_ROUTE}"
        trace = jaeger.wait_trace(
            caller_trace, lambda t: bool(span_named(t, server_name) and span_named(t, create_name))
        )
        (server,) = span_named(trace, server_name)
        (create,) = span_named(trace, create_name)
        assert _same(_parent_of(server), caller_span)
        assert _same(_parent_of(create), server["spanID"])
        assert _same(create["spanID"], create_id), "the record's traceparent names its create span"
        assert trace["processes"][server["processID"]]["serviceName"] == service
        server_tags, create_tags = tags(server), tags(create)
        assert server_tags["span.kind"] == "server"
        assert server_tags["http.request.method"] == "POST"
        assert server_tags["http.route"] == semconv.WEBHOOK_ROUTE
        assert server_tags["http.response.status_code"] == 200
        assert server_tags["passentry.webhook.outcome"] == "accepted"
        assert create_tags["span.kind"] == "producer"
        assert create_tags["messaging.system"] == "kafka"
        assert create_tags["messaging.operation.type"] == "create"
        assert create_tags["messaging.destination.name"] == topics.scans
        assert create_tags["messaging.kafka.message.key"] == record.key.decode()
        assert create_tags["messaging.destination.partition.id"] == str(record.partition)
        assert create_tags["messaging.kafka.offset"] == record.offset
        assert create_tags["passentry.scan.id"] == scan.id

        # The transaction's send span, in a trace of its own, links to that create span.
        send_name = f"send {topics.scans}"

        def linking() -> list[dict[str, Any]]:
            return [
                s
                for t in jaeger.find(service, send_name)
                for s in span_named(t, send_name)
                if any(_same(tid, caller_trace) and _same(sid, create_id)
                       for tid, sid in refs(s, "FOLLOWS_FROM"))
            ]  # fmt: skip

        deadline = time.monotonic() + 60
        while not (sends := linking()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(sends) == 1, "one send span links to the create span"
        (send,) = sends
        send_tags = tags(send)
        assert send_tags["span.kind"] == "client"
        assert send_tags["messaging.operation.type"] == "send"
        assert send_tags["messaging.destination.name"] == topics.scans
        assert send_tags["messaging.batch.message_count"] >= 1
        assert not refs(send, "CHILD_OF"), "a transaction's send span is a root"
        # What Jaeger returned, for a person to read (pytest --basetemp keeps it).
        (tmp_path / "trace.json").write_text(json.dumps({"trace": trace, "send": send}, indent=2))

        # A polled page: a root span, its scans' create spans under it.
        first = polled[0]
        page_trace, page_create = _traceparent(first)
        page_name = f"GET {semconv.SCANS_URL_TEMPLATE}"
        trace = jaeger.wait_trace(
            page_trace, lambda t: bool(span_named(t, page_name) and span_named(t, create_name))
        )
        (page,) = span_named(trace, page_name)
        assert not page.get("references"), "a polled page starts a root span"
        page_tags = tags(page)
        assert page_tags["span.kind"] == "client"
        assert page_tags["http.response.status_code"] == 200
        assert page_tags["url.full"].startswith(sim.url + "/api/v1/scans?")
        creates = span_named(trace, create_name)
        assert all(_same(_parent_of(c), page["spanID"]) for c in creates)
        assert any(_same(c["spanID"], page_create) for c in creates)
        same_page = [r for r in polled if _traceparent(r)[0] == page_trace]
        # A scan listed on two pages of a walk continues the one it was taken from.
        assert 1 <= len(creates) == len(same_page) <= page_tags["passentry.page.scans"]

        bridge.send(signal.SIGTERM)
        assert bridge.wait(30) == 0
