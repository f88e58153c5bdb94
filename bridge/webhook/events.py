"""Decode a PassEntry webhook body into typed data.

A ``passScanned`` event carries the scan resource exactly as ``GET /api/v1/scans`` lists it,
the pass with its full attributes, and a reader with only ``name`` and ``readerType``. The
scan and the pass go through the same decoders as a polled page (``bridge.passentry.pages``),
so a scan decodes to the same data whichever path brings it. The short reader is kept
apart: it is not the reader a poll would see, and the pipeline uses the full one it has
seen recently instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import msgspec

from bridge.errors import InvalidWebhookError
from bridge.passentry.pages import (
    DecodedPage,
    PageBody,
    add_included,
    add_scan,
    resource_head,
    short_error,
)

__all__ = ["PASS_SCANNED", "WebhookEvent", "decode_event"]

PASS_SCANNED = "passScanned"  # noqa: S105 - an event name, not a secret


class _Attributes(msgspec.Struct, frozen=True, rename="camel"):
    time_stamp: str
    webhook_type: str


class _Data(msgspec.Struct, frozen=True):
    id: str
    type: str
    attributes: _Attributes


class _Envelope(msgspec.Struct, frozen=True):
    data: _Data
    included: list[msgspec.Raw] | None = None


_envelope = msgspec.json.Decoder(_Envelope)


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    event_id: str
    webhook_type: str
    # The event's timeStamp, Unix ms: how old it is decides replay protection.
    timestamp_ms: int
    # passScanned only: the scan (valid or rejected) and its pass, as a one-scan page.
    page: DecodedPage | None = None


def decode_event(body: bytes) -> WebhookEvent:
    """The event, or InvalidWebhookError saying what is wrong (never echoing the body)."""
    try:
        envelope = _envelope.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidWebhookError(f"not a webhook event: {short_error(exc)}") from None
    data = envelope.data
    if data.type != "webhook":
        raise InvalidWebhookError(f"data.type is {data.type[:40]!r}, not 'webhook'")
    timestamp_ms = _millis(data.attributes.time_stamp)
    if data.attributes.webhook_type != PASS_SCANNED:
        return WebhookEvent(data.id, data.attributes.webhook_type, timestamp_ms)
    page = DecodedPage()
    scans = 0
    for raw in envelope.included or ():
        head = resource_head(raw)
        if head is None:
            raise InvalidWebhookError("an included item is not a resource with a type")
        if head.type == "scan":
            scans += 1
            add_scan(raw, page, PageBody(raws=[raw]), 0)
        elif head.type == "pass":
            add_included(raw, page)
    if scans != 1:
        raise InvalidWebhookError(f"passScanned must include exactly one scan, not {scans}")
    return WebhookEvent(data.id, PASS_SCANNED, timestamp_ms, page)


def _millis(text: str) -> int:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidWebhookError("attributes.timeStamp is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise InvalidWebhookError("attributes.timeStamp has no time zone")
    return int(parsed.timestamp() * 1000)
