"""Signed passScanned bodies built from the documented shape, and an inbox that is a list."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError

from bridge.uuid7 import UUIDv7Minter

SECRET = "whsec-current"
OLD_SECRET = "whsec-previous"


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
) -> bytes:
    at_ms = int(time.time() * 1000) if at_ms is None else at_ms
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
            "id": "9f1c2a8e-6d3b-4c1e-8f2a-0b9e8d7c6a51",
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
        self.fail = False

    def start(self) -> None:
        pass

    def close(self, timeout_s: float) -> int:
        return 0

    def write(self, source_id: str, body: bytes, done: Callable[[KafkaError | None], None]) -> None:
        if self.fail:
            done(KafkaError(KafkaError._MSG_TIMED_OUT, "broker gone"))
            return
        self.events.append((source_id, body))
        done(None)
