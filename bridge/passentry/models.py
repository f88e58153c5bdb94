"""Typed models of PassEntry's JSON:API documents, decoded with msgspec.

Only what the docs show is modelled. Every attribute the docs do not promise is optional, and
unknown keys are ignored, so PassEntry can add fields without breaking the bridge. A scan's
required attributes (type, validation type, status) are required here too: a scan without
them goes to the dead-letter topic rather than being published half-empty.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

__all__ = [
    "Barcode",
    "PageEnvelope",
    "PageLinks",
    "PageMeta",
    "PassAttributes",
    "PassDocument",
    "PassResource",
    "ReaderAttributes",
    "ReaderResource",
    "Relationship",
    "ResourceHead",
    "ResourceId",
    "ScanAttributes",
    "ScanDocument",
    "ScanRelationships",
    "ScanResource",
    "WebhookSubscription",
    "WebhookSubscriptionAttributes",
    "WebhookSubscriptionDocument",
    "WebhookSubscriptionList",
]


class ResourceId(msgspec.Struct, frozen=True):
    id: str
    type: str


class Relationship(msgspec.Struct, frozen=True):
    # ``data: null`` is how the API says "no pass" for third-party logged scans.
    data: ResourceId | None = None


class ScanRelationships(msgspec.Struct, frozen=True):
    pass_: Relationship | None = msgspec.field(default=None, name="pass")
    reader: Relationship | None = None


class ScanAttributes(msgspec.Struct, frozen=True, rename="camel"):
    scan_type: str
    validation_type: str
    status: str
    scan_value: str | None = None
    status_detail: str | None = None
    # The reader device's clock: informative only, never used for the cursor.
    scanned_at: datetime | None = None


class ScanResource(msgspec.Struct, frozen=True):
    id: str
    type: str
    attributes: ScanAttributes
    relationships: ScanRelationships = ScanRelationships()

    @property
    def pass_id(self) -> str | None:
        rel = self.relationships.pass_
        return rel.data.id if rel is not None and rel.data is not None else None

    @property
    def reader_id(self) -> str | None:
        rel = self.relationships.reader
        return rel.data.id if rel is not None and rel.data is not None else None


class Barcode(msgspec.Struct, frozen=True, rename="camel"):
    enabled: bool | None = None
    type: str | None = None
    source: str | None = None
    value: str | None = None
    display_text: bool | None = None


class PassAttributes(msgspec.Struct, frozen=True, rename="camel"):
    download_url: str | None = None
    pass_type: str | None = None
    device_type: str | None = None
    created_at: datetime | None = None
    status: str | None = None
    ext_id: str | None = None
    pass_template_uuid: str | None = None
    pass_template_name: str | None = None
    nfc: str | None = None
    barcode: Barcode | None = None
    pass_content: dict[str, Any] | None = None
    added_at: datetime | None = None
    removed_at: datetime | None = None
    deactivated_at: datetime | None = None


class PassResource(msgspec.Struct, frozen=True, tag_field="type", tag="pass"):
    id: str
    attributes: PassAttributes = PassAttributes()


class ReaderAttributes(msgspec.Struct, frozen=True, rename="camel"):
    name: str | None = None
    reader_type: str | None = None
    logged_in: bool | None = None
    qr_enabled: bool | None = None
    mifare_classic_nfc_enabled: bool | None = None
    scan_enabled: bool | None = None
    redeem_enabled: bool | None = None
    add_points_enabled: bool | None = None
    ndef_tag_scanning_enabled: bool | None = None
    last_seen_at: datetime | None = None


class ReaderResource(msgspec.Struct, frozen=True, tag_field="type", tag="reader"):
    id: str
    attributes: ReaderAttributes = ReaderAttributes()


class ResourceHead(msgspec.Struct, frozen=True):
    """Just enough of an ``included`` item to know which model decodes the rest."""

    id: str
    type: str


class PageMeta(msgspec.Struct, frozen=True, rename="camel"):
    total_scans: int | None = None
    successful_scans: int | None = None
    failed_scans: int | None = None
    readers_count: int | None = None
    total_count: int | None = None
    results_per_page: int | None = None
    current_page: int | None = None
    total_pages: int | None = None


class PageLinks(msgspec.Struct, frozen=True):
    first: str | None = None
    prev: str | None = None
    next: str | None = None
    last: str | None = None


class PageEnvelope(msgspec.Struct, frozen=True):
    """A list page with its items left raw.

    Items are decoded one by one afterwards, so that one bad scan becomes one dead letter
    instead of failing the whole page, and so the dead letter carries the scan's own bytes.
    """

    data: list[msgspec.Raw]
    included: list[msgspec.Raw] | None = None
    meta: PageMeta | None = None
    links: PageLinks | None = None


class ScanDocument(msgspec.Struct, frozen=True):
    """``GET /api/v1/scans/{id}``: one scan, its pass and reader in ``included``."""

    data: msgspec.Raw
    included: list[msgspec.Raw] | None = None


class PassDocument(msgspec.Struct, frozen=True):
    """``GET /api/v1/passes/{id}``."""

    data: PassResource


class WebhookSubscriptionAttributes(msgspec.Struct, frozen=True, rename="camel"):
    url: str
    enabled: bool = True
    subscribed_events: list[str] = msgspec.field(default_factory=list)
    # Only in the answer that creates the subscription (or rotates its secret).
    secret_key: str | None = None
    scope_type: str | None = None
    scope_name: str | None = None


class WebhookSubscription(msgspec.Struct, frozen=True):
    id: str
    type: str
    attributes: WebhookSubscriptionAttributes


class WebhookSubscriptionDocument(msgspec.Struct, frozen=True):
    """``POST /api/v1/webhook-subscriptions`` (201)."""

    data: WebhookSubscription


class WebhookSubscriptionList(msgspec.Struct, frozen=True):
    """``GET /api/v1/webhook-subscriptions``."""

    data: list[WebhookSubscription]
    meta: PageMeta | None = None
