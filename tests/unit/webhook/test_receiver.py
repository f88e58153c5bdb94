"""The receiver's answers, over real HTTP, with an inbox that is a list."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from bridge.webhook.receiver import WebhookReceiver
from tests.support import sample
from tests.unit.webhook.webhook_support import OLD_SECRET, ListWriter, event_body, sign


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


def test_an_unknown_source_is_404(receiver: WebhookReceiver, writer: ListWriter) -> None:
    body = event_body()
    assert post(receiver, body, sign(body), source="elsewhere").status_code == 404
    assert outcome(receiver, "unknown_source") == 1


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


def test_requests_beyond_the_bound_are_503_not_queued(writer: ListWriter) -> None:
    from bridge.ops.metrics import Metrics
    from bridge.webhook.receiver import ReceiverSettings

    release = threading.Event()

    class SlowWriter(ListWriter):
        def write(self, source_id, body, done):  # type: ignore[no-untyped-def]
            # The broker answers only when the test says so: requests pile up in hand.
            threading.Thread(target=lambda: (release.wait(10), done(None)), daemon=True).start()

    server = WebhookReceiver(
        ReceiverSettings("127.0.0.1", 0, max_age_s=300, max_inflight=2),
        {"gates": ["whsec-current"]},
        SlowWriter(),
        Metrics(),
    )
    server.start()
    try:
        body = event_body()
        results: list[int] = []
        threads = [
            threading.Thread(
                target=lambda: results.append(post(server, body, sign(body)).status_code)
            )
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while server._inflight < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server._inflight == 2
        assert post(server, body, sign(body)).status_code == 503
        release.set()
        for t in threads:
            t.join(10)
        assert results == [200, 200]
    finally:
        server.stop()
