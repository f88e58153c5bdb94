from __future__ import annotations

import json

import pytest

from bridge.errors import InvalidWebhookError
from bridge.webhook.events import PASS_SCANNED, decode_event
from tests.unit.webhook.webhook_support import event_body


def test_pass_scanned_decodes_to_the_scan_and_its_pass_but_not_the_short_reader() -> None:
    body = event_body(at_ms=1_736_773_200_123, reader="south-gate-1")
    event = decode_event(body)
    assert event.webhook_type == PASS_SCANNED
    assert event.timestamp_ms == 1_736_773_200_123
    assert event.page is not None
    (scan,) = event.page.scans
    doc = json.loads(body)
    assert scan.resource.id == doc["included"][0]["id"]
    assert scan.created_ms == 1_736_773_200_123
    assert scan.resource.reader_id == "south-gate-1"
    # The scan's own JSON travels as it came: a dead letter would carry exactly it.
    assert json.loads(bytes(scan.raw)) == doc["included"][0]
    assert set(event.page.passes) == {"7882e98b-1d24-4bd1-9a53-6a1d2f0b1c11"}
    assert event.page.readers == {}


def test_other_event_types_decode_without_a_page() -> None:
    event = decode_event(event_body(webhook_type="passInstalled"))
    assert event.webhook_type == "passInstalled"
    assert event.page is None


def test_a_scan_id_that_is_not_uuidv7_is_a_rejected_scan_not_an_invalid_event() -> None:
    event = decode_event(event_body(scan_id="5b8c7c2e-4d43-4f0e-9a43-2d2f6a3e1b7a"))
    assert event.page is not None
    assert [r.reason for r in event.page.rejected] == ["invalid_id"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not a webhook event"),
        (b"[]", "not a webhook event"),
        (json.dumps({"data": {"id": "x", "type": "webhook"}}).encode(), "not a webhook event"),
        (
            json.dumps(
                {
                    "data": {
                        "id": "x",
                        "type": "scan",
                        "attributes": {"timeStamp": "2025-01-13T13:00:00Z", "webhookType": "x"},
                    }
                }
            ).encode(),
            "not 'webhook'",
        ),
        (
            json.dumps(
                {
                    "data": {
                        "id": "x",
                        "type": "webhook",
                        "attributes": {"timeStamp": "yesterday", "webhookType": "passScanned"},
                    }
                }
            ).encode(),
            "not an ISO 8601 time",
        ),
        (
            json.dumps(
                {
                    "data": {
                        "id": "x",
                        "type": "webhook",
                        "attributes": {
                            "timeStamp": "2025-01-13T13:00:00Z",
                            "webhookType": "passScanned",
                        },
                    },
                    "included": [],
                }
            ).encode(),
            "exactly one scan",
        ),
    ],
)
def test_malformed_bodies_are_refused_with_a_reason(body: bytes, message: str) -> None:
    with pytest.raises(InvalidWebhookError, match=message):
        decode_event(body)
