"""Fixtures for the webhook unit tests: a receiver on a free port whose inbox is a list."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.ops.metrics import Metrics
from bridge.webhook.receiver import ReceiverSettings, WebhookReceiver
from tests.unit.webhook.webhook_support import OLD_SECRET, SECRET, ListWriter


@pytest.fixture
def writer() -> ListWriter:
    return ListWriter()


@pytest.fixture
def receiver(writer: ListWriter) -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(
        ReceiverSettings("127.0.0.1", 0, max_age_s=300, max_inflight=8),
        {"gates": [SECRET, OLD_SECRET]},
        writer,
        Metrics(),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
