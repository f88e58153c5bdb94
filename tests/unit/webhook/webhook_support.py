"""Signed passScanned bodies built from the documented shape (each a new event, unless an
id is given), an inbox that is a list, and receivers on free ports."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError

from bridge.ops.metrics import Metrics
from bridge.tracecontext import TraceHeaders
from bridge.uuid7 import UUIDv7Minter
from bridge.webhook.keys import SigningKeys
from bridge.webhook.receiver import (
    MAX_BODY_BYTES,
    EventWriter,
    ReceiverSettings,
    WebhookReceiver,
    WebhookSource,
)
from bridge.webhook.server import ServerLimits

# PassEntry-like secrets: 32 bytes at least, or the bridge refuses them.
SECRET = "whsec-current-0123456789abcdef0123456789"
OLD_SECRET = "whsec-previous-0123456789abcdef012345678"


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def event_body(
    *,
    at_ms: int | None = None,
    scan_id: str | None = None,
    reader: str = "south-gate-1",
    pass_id: str | None = "7882e98b-1d24-4bd1-9a53-6a1d2f0b1c11",
    webhook_type: str = "passScanned",
    event_id: str | None = None,
) -> bytes:
    at_ms = int(time.time() * 1000) if at_ms is None else at_ms
    event_id = event_id or str(uuid.uuid4())
    scan_id = scan_id or str(UUIDv7Minter().mint(at_ms=at_ms))
    scan = {
        "id": scan_id,
        "type": "scan",
        "attributes": {
            "scanType": "nfc",
            "scanValue": "04A1B2",
            "validationType": "internalValidation",
            "status": "successful",
            "statusDetail": None,
            "scannedAt": iso(at_ms),
        },
        "relationships": {
            "pass": {"data": {"id": pass_id, "type": "pass"} if pass_id else None},
            "reader": {"data": {"id": reader, "type": "reader"}},
        },
    }
    included: list[dict[str, Any]] = [scan]
    if pass_id:
        included.append(
            {
                "id": pass_id,
                "type": "pass",
                "attributes": {"passType": "eventTicket", "status": "active", "extId": "e-1"},
            }
        )
    included.append(
        {
            "id": reader,
            "type": "reader",
            "attributes": {"name": "South gate 1", "readerType": "PassentryReader"},
        }
    )
    doc = {
        "data": {
            "id": event_id,
            "type": "webhook",
            "attributes": {"timeStamp": iso(at_ms), "webhookType": webhook_type},
            "relationships": {
                "scan": {"data": {"id": scan_id, "type": "scan"}},
                "reader": {"data": {"id": reader, "type": "reader"}},
            },
        },
        "included": included,
    }
    return json.dumps(doc).encode()


class ListWriter:
    """An inbox that keeps events in a list; ``fail`` makes the broker refuse them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []
        # The trace context each event was written with, in order.
        self.traces: list[TraceHeaders | None] = []
        self.fail = False

    def start(self) -> None:
        pass

    def close(self, timeout_s: float) -> int:
        return 0

    def write(
        self,
        source_id: str,
        body: bytes,
        done: Callable[[KafkaError | None], None],
        trace: TraceHeaders | None = None,
    ) -> None:
        if self.fail:
            done(KafkaError(KafkaError._MSG_TIMED_OUT, "broker gone"))
            return
        self.events.append((source_id, body))
        self.traces.append(trace)
        done(None)


def receiver_for(
    writer: EventWriter,
    *,
    secrets: dict[str, list[str]] | None = None,
    max_inflight: int = 8,
    max_connections: int = 64,
    header_timeout_s: float = 10.0,
    body_timeout_s: float = 10.0,
    keepalive_s: float = 75.0,
    replay_cache_size: int = 1000,
    max_age_s: float = 300.0,
    max_future_s: float = 60.0,
) -> WebhookReceiver:
    """A receiver on 127.0.0.1 and a free port (not started), ``gates`` taking both secrets
    unless ``secrets`` says otherwise."""
    chosen = secrets if secrets is not None else {"gates": [SECRET, OLD_SECRET]}
    sources = {
        source_id: WebhookSource(
            SigningKeys(source_id, lambda found=found: list(found)), max_age_s, max_future_s
        )
        for source_id, found in chosen.items()
    }
    limits = ServerLimits(
        max_connections=max_connections,
        header_timeout_s=header_timeout_s,
        body_timeout_s=body_timeout_s,
        keepalive_s=keepalive_s,
        max_body_bytes=MAX_BODY_BYTES,
    )
    settings = ReceiverSettings("127.0.0.1", 0, max_inflight, limits, replay_cache_size)
    return WebhookReceiver(settings, sources, writer, Metrics())
