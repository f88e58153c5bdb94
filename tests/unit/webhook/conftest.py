"""Fixtures for the webhook unit tests: a receiver on a free port whose inbox is a list."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.webhook.receiver import WebhookReceiver
from tests.unit.webhook.webhook_support import ListWriter, receiver_for


@pytest.fixture
def writer() -> ListWriter:
    return ListWriter()


@pytest.fixture
def receiver(writer: ListWriter) -> Iterator[WebhookReceiver]:
    server = receiver_for(writer)
    server.start()
    try:
        yield server
    finally:
        server.stop()
