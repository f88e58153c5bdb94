"""The receiver's answers, over real HTTP, with an inbox that is a list."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from bridge.tracecontext import TraceHeaders
from bridge.webhook.receiver import WebhookReceiver
from tests.support import sample
from tests.unit.webhook.webhook_support import (
    OLD_SECRET,
    ListWriter,
    event_body,
    receiver_for,
    sign,
)


def post(
    receiver: WebhookReceiver,
    body: bytes,
    signature: str | None = None,
    source: str = "gates",
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Webhook-Signature"] = signature
    url = f"http://127.0.0.1:{receiver.port}/webhooks/passentry/{source}"
    return httpx.post(url, content=body, headers=headers, timeout=10)


def outcome(receiver: WebhookReceiver, name: str) -> float:
    return sample(receiver._metrics, "passentry_bridge_webhook_requests_total", outcome=name)


def test_a_signed_event_is_written_to_the_inbox_before_the_200(
    receiver: WebhookReceiver, writer: ListWriter
) -> None:
    body = event_body()
    answer = post(receiver, body, sign(body))
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}
    assert writer.events == [("gates", body)]
    assert outcome(receiver, "accepted") == 1


@pytest.mark.parametrize("name", ["traceparent", "TraceParent", "TRACEPARENT"])
def test_the_callers_trace_context_goes_into_the_inbox_whatever_the_header_case(
    receiver: WebhookReceiver, writer: ListWriter, name: str
) -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    body = event_body()
    headers = {"X-Webhook-Signature": sign(body), name: parent, "TraceState": "vendor=x"}
    url = f"http://127.0.0.1:{receiver.port}/webhooks/passentry/gates"
    assert httpx.post(url, content=body, headers=headers, timeout=10).status_code == 200
    # Tracing off (the default): the caller's context passes through, checked.
    assert writer.traces == [TraceHeaders(parent, "vendor=x")]


def test_a_malformed_traceparent_is_not_written(
    receiver: WebhookReceiver, writer: ListWriter
) -> None:
    body = event_body()
    headers = {"X-Webhook-Signature": sign(body), "traceparent": "00-zz-01", "tracestate": "a=b"}
    url = f"http://127.0.0.1:{receiver.port}/webhooks/passentry/gates"
    assert httpx.post(url, content=body, headers=headers, timeout=10).status_code == 200
    assert writer.traces == [None]


def test_the_previous_secret_is_accepted_during_a_rotation(
    receiver: WebhookReceiver, writer: ListWriter
) -> None:
    body = event_body()
    assert post(receiver, body, sign(body, OLD_SECRET)).status_code == 200
    assert len(writer.events) == 1


@pytest.mark.parametrize("signature", [None, "", "sha256=" + "0" * 64, sign(b"other body")])
def test_a_forged_or_missing_signature_is_401_and_nothing_is_written(
    receiver: WebhookReceiver,
    writer: ListWriter,
    signature: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = event_body(reader="secret-reader-name")
    answer = post(receiver, body, signature)
    assert answer.status_code == 401
    assert writer.events == []
    assert outcome(receiver, "unauthorized") == 1
    # Counted and logged, but the body never appears in a log line.
    assert "secret-reader-name" not in caplog.text


def test_malformed_json_and_the_wrong_shape_are_400(
    receiver: WebhookReceiver, writer: ListWriter
) -> None:
    for body in (b"{nope", b'{"data": {"id": "x", "type": "webhook"}}'):
        answer = post(receiver, body, sign(body))
        assert answer.status_code == 400
        assert answer.json()["errors"]
    assert writer.events == []
    assert outcome(receiver, "malformed") == 2


def test_a_stale_event_is_400_and_left_to_polling(
    receiver: WebhookReceiver, writer: ListWriter
) -> None:
    body = event_body(at_ms=int(time.time() * 1000) - 301_000)
    answer = post(receiver, body, sign(body))
    assert answer.status_code == 400
    assert "polling covers it" in answer.json()["errors"][0]
    assert writer.events == []
    assert outcome(receiver, "stale") == 1


def test_an_oversized_body_is_413(receiver: WebhookReceiver, writer: ListWriter) -> None:
    body = b'{"pad": "' + b"x" * (256 * 1024) + b'"}'
    assert post(receiver, body, sign(body)).status_code == 413
    assert writer.events == []
    assert outcome(receiver, "too_large") == 1


def test_an_unknown_source_gets_the_answer_a_bad_signature_gets(
    receiver: WebhookReceiver, writer: ListWriter
) -> None:
    body = event_body()
    unknown = post(receiver, body, sign(body), source="elsewhere")
    forged = post(receiver, body, sign(body, "not-the-secret-" * 3))
    assert (unknown.status_code, unknown.json()) == (forged.status_code, forged.json())
    assert unknown.status_code == 401
    assert unknown.headers.keys() == forged.headers.keys()
    assert writer.events == []
    assert outcome(receiver, "unknown_source") == 1


def test_requests_are_counted_by_the_source_they_name_only_when_it_runs_here(
    receiver: WebhookReceiver, writer: ListWriter
) -> None:
    """The dashboard's per-source refusals; an id from a path nobody runs names no series,
    or anyone could mint them."""
    body = event_body()
    post(receiver, body, sign(body))
    post(receiver, body, "sha256=" + "0" * 64)
    post(receiver, body, sign(body), source="made-up-by-anyone")
    requests = "passentry_bridge_webhook_requests_total"
    metrics = receiver._metrics
    assert sample(metrics, requests, source_id="gates", outcome="accepted") == 1
    assert sample(metrics, requests, source_id="gates", outcome="unauthorized") == 1
    assert sample(metrics, requests, source_id="", outcome="unknown_source") == 1
    assert sample(metrics, requests, source_id="made-up-by-anyone") == 0


def test_other_routes_are_404(receiver: WebhookReceiver) -> None:
    for path in ("/", "/webhooks/passentry/", "/webhooks/passentry/gates/x", "/metrics"):
        url = f"http://127.0.0.1:{receiver.port}{path}"
        assert httpx.post(url, content=b"{}", timeout=5).status_code == 404, path


def test_an_unknown_event_type_is_200_counted_and_ignored(
    receiver: WebhookReceiver, writer: ListWriter
) -> None:
    body = event_body(webhook_type="passInstalled")
    assert post(receiver, body, sign(body)).status_code == 200
    assert writer.events == []
    assert outcome(receiver, "ignored") == 1


def test_kafka_refusing_the_event_is_503_so_passentry_retries(
    receiver: WebhookReceiver, writer: ListWriter
) -> None:
    writer.fail = True
    body = event_body()
    assert post(receiver, body, sign(body)).status_code == 503
    assert outcome(receiver, "unavailable") == 1
    writer.fail = False
    assert post(receiver, body, sign(body)).status_code == 200  # the retry gets through


def test_other_methods_are_405(receiver: WebhookReceiver) -> None:
    url = f"http://127.0.0.1:{receiver.port}/webhooks/passentry/gates"
    assert httpx.get(url, timeout=5).status_code == 405


def test_no_server_header_tells_what_runs_here(receiver: WebhookReceiver) -> None:
    body = event_body()
    for answer in (post(receiver, body, sign(body)), post(receiver, body, None)):
        assert "server" not in answer.headers
        assert not any("python" in v.lower() for v in answer.headers.values())


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "gzip, identity", "x-custom"])
def test_an_encoded_body_is_415_and_never_inflated(
    receiver: WebhookReceiver, writer: ListWriter, encoding: str
) -> None:
    plain = event_body()
    body = gzip.compress(plain)
    # Signed both ways: over the bytes sent, and over what they inflate to.
    for signature in (sign(body), sign(plain)):
        answer = httpx.post(
            f"http://127.0.0.1:{receiver.port}/webhooks/passentry/gates",
            content=body,
            headers={"Content-Encoding": encoding, "X-Webhook-Signature": signature},
            timeout=10,
        )
        assert answer.status_code == 415
        assert answer.headers["connection"] == "close"
    assert writer.events == []
    assert outcome(receiver, "unsupported_encoding") == 2


def test_identity_encoding_is_the_body_as_sent(
    receiver: WebhookReceiver, writer: ListWriter
) -> None:
    body = event_body()
    answer = httpx.post(
        f"http://127.0.0.1:{receiver.port}/webhooks/passentry/gates",
        content=body,
        headers={"Content-Encoding": "identity", "X-Webhook-Signature": sign(body)},
        timeout=10,
    )
    assert answer.status_code == 200
    assert writer.events == [("gates", body)]


def test_an_event_stamped_in_the_future_is_400_beyond_the_tolerance(
    receiver: WebhookReceiver, writer: ListWriter
) -> None:
    now_ms = int(time.time() * 1000)
    ahead = event_body(at_ms=now_ms + 365 * 86_400_000)
    answer = post(receiver, ahead, sign(ahead))
    assert answer.status_code == 400
    assert "future" in answer.json()["errors"][0]
    assert outcome(receiver, "future") == 1
    # A clock a little behind PassEntry's is fine.
    close = event_body(at_ms=now_ms + 30_000)
    assert post(receiver, close, sign(close)).status_code == 200
    assert [b for _, b in writer.events] == [close]


def test_a_replayed_event_is_200_and_written_once(
    receiver: WebhookReceiver, writer: ListWriter
) -> None:
    body = event_body()
    answers = [post(receiver, body, sign(body)).status_code for _ in range(5)]
    assert answers == [200] * 5
    assert writer.events == [("gates", body)]
    assert outcome(receiver, "accepted") == 1
    assert outcome(receiver, "replayed") == 4
    # Another event is its own, and the same event id at another source is that source's.
    other = event_body()
    assert post(receiver, other, sign(other)).status_code == 200
    assert len(writer.events) == 2


def test_the_same_event_id_at_two_sources_is_two_events(writer: ListWriter) -> None:
    a, b = "a" * 40, "b" * 40
    server = receiver_for(writer, secrets={"north": [a], "south": [b]})
    server.start()
    try:
        body = event_body(event_id="shared-id")
        assert post(server, body, sign(body, a), source="north").status_code == 200
        assert post(server, body, sign(body, b), source="south").status_code == 200
        # ...and each source's secret works at its own only.
        assert post(server, body, sign(body, a), source="south").status_code == 401
    finally:
        server.stop()
    assert writer.events == [("north", body), ("south", body)]


def test_a_replay_while_the_first_is_written_waits_for_that_write() -> None:
    release = threading.Event()

    class SlowWriter(ListWriter):
        def write(self, source_id, body, done, trace=None):  # type: ignore[no-untyped-def]
            self.events.append((source_id, body))
            threading.Thread(target=lambda: (release.wait(10), done(None)), daemon=True).start()

    writer = SlowWriter()
    server = receiver_for(writer)
    server.start()
    try:
        body = event_body()
        answered: list[tuple[int, float]] = []

        def send() -> None:
            status = post(server, body, sign(body)).status_code
            answered.append((status, time.monotonic()))

        first = threading.Thread(target=send)
        first.start()
        wait_until(lambda: len(writer.events) == 1)
        second = threading.Thread(target=send)
        second.start()
        # Both requests are in: the first waits for the broker, the second for the first.
        wait_until(lambda: server._server.open_connections == 2)
        released = time.monotonic()
        release.set()
        first.join(10)
        second.join(10)
        assert [status for status, _ in answered] == [200, 200]
        assert all(at >= released for _, at in answered), "a 200 before the event was durable"
        assert len(writer.events) == 1
        assert outcome(server, "accepted") == 1
        assert outcome(server, "replayed") == 1
    finally:
        server.stop()


def test_a_replay_after_a_failed_write_is_written(
    receiver: WebhookReceiver, writer: ListWriter
) -> None:
    writer.fail = True
    body = event_body()
    assert post(receiver, body, sign(body)).status_code == 503
    writer.fail = False
    assert post(receiver, body, sign(body)).status_code == 200
    assert writer.events == [("gates", body)]


def test_requests_beyond_the_bound_are_503_not_queued() -> None:
    release = threading.Event()

    class SlowWriter(ListWriter):
        def write(self, source_id, body, done, trace=None):  # type: ignore[no-untyped-def]
            # The broker answers only when the test says so: requests pile up in hand.
            threading.Thread(target=lambda: (release.wait(10), done(None)), daemon=True).start()

    server = receiver_for(SlowWriter(), max_inflight=2)
    server.start()
    try:
        bodies = [event_body() for _ in range(3)]
        results: list[int] = []
        threads = [
            threading.Thread(
                target=lambda b=b: results.append(post(server, b, sign(b)).status_code)
            )
            for b in bodies[:2]
        ]
        for t in threads:
            t.start()
        wait_until(lambda: server._inflight == 2)
        # Unsigned requests are refused on their own merits: they never wait for a slot.
        assert post(server, bodies[2], None).status_code == 401
        assert post(server, bodies[2], sign(bodies[2])).status_code == 503
        release.set()
        for t in threads:
            t.join(10)
        assert results == [200, 200]
    finally:
        server.stop()


def wait_until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_stopping_lets_an_event_on_its_way_to_kafka_get_its_answer() -> None:
    writing = threading.Event()

    class SlowWriter(ListWriter):
        def write(self, source_id, body, done, trace=None):  # type: ignore[no-untyped-def]
            writing.set()
            # The broker acknowledges half a second later, while the receiver stops.
            threading.Timer(0.5, done, args=(None,)).start()

    server = receiver_for(SlowWriter())
    server.start()
    body = event_body()
    results: list[int] = []
    sender = threading.Thread(
        target=lambda: results.append(post(server, body, sign(body)).status_code)
    )
    sender.start()
    assert writing.wait(10)
    server.stop()
    sender.join(10)
    assert results == [200]
