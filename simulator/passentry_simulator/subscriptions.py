"""Webhook subscriptions: ``POST|GET /api/v1/webhook-subscriptions`` and who gets what.

As PassEntry documents it: a subscription names a URL, the events it wants and a scope (the
organisation, or one entity); the API answers 201 with a generated ``secretKey`` that signs
every delivery. One subscription per URL per scope, at most 10 per scope. PassEntry
requires https; the simulator lives on loopback, so plain http is accepted for 127.0.0.1,
::1 and localhost only. The simulator sends only ``passScanned``; the other documented
events are accepted and never fire. An entity-scoped subscription hears only of scans made
by that entity's readers.

The ``simulate --webhook-url`` target is a subscription too, added at start-up without the
URL check (it may name a host on a cluster network), so both kinds are listed and counted
alike.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import secrets
import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from passentry_simulator.params import QueryError, positive_int
from passentry_simulator.store import Scan

__all__ = [
    "EVENTS",
    "MAX_PER_SCOPE",
    "ORGANISATION_NAME",
    "Subscription",
    "SubscriptionError",
    "Subscriptions",
    "subscription_routes",
]

EVENTS = ("passInstalled", "passRemoved", "passScanned", "passCreated")
MAX_PER_SCOPE = 10
ORGANISATION_NAME = "Simulated Organisation"
_PATH = "/api/v1/webhook-subscriptions"
_MAX_PER_PAGE = 100
_DEFAULT_PER_PAGE = 5


class SubscriptionError(ValueError):
    """A subscription request that PassEntry would refuse with 422; ``problems`` says why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    url: str
    enabled: bool
    events: tuple[str, ...]
    secret: str
    entity_id: str | None  # None: the whole organisation
    scope_name: str

    @property
    def scope_type(self) -> str:
        return "organisation" if self.entity_id is None else "entity"

    def wants(self, scan: Scan) -> bool:
        """Whether a ``passScanned`` event for this scan goes to this subscription."""
        return (
            self.enabled
            and "passScanned" in self.events
            and (self.entity_id is None or scan.spec.reader.entity_id == self.entity_id)
        )

    def resource(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "webhookSubscription",
            "attributes": {
                "url": self.url,
                "enabled": self.enabled,
                "subscribedEvents": list(self.events),
                "secretKey": self.secret,
                "scopeType": self.scope_type,
                "scopeName": self.scope_name,
            },
        }


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_problem(url: Any) -> str | None:
    if not isinstance(url, str) or not url:
        return "webhookSubscription.url must be a non-empty string"
    absolute = "webhookSubscription.url must be an absolute https URL"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        return absolute
    if parts.scheme not in ("http", "https") or not host:
        return absolute
    if parts.scheme == "http" and not _loopback(host):
        return "webhookSubscription.url must use https (http only for a loopback host)"
    return None


class Subscriptions:
    """Every subscription, in creation order; safe to read from any thread."""

    def __init__(self, entities: dict[str, str]) -> None:
        self.entities = entities  # entity id -> name, for scopeName
        self._lock = threading.Lock()
        # Replaced, never mutated, so readers iterate a snapshot without the lock.
        self._all: tuple[Subscription, ...] = ()

    def all(self) -> tuple[Subscription, ...]:
        return self._all

    def get(self, sub_id: str) -> Subscription | None:
        return next((s for s in self._all if s.id == sub_id), None)

    def add(
        self,
        url: str,
        *,
        secret: str | None = None,
        events: tuple[str, ...] = ("passScanned",),
        enabled: bool = True,
        entity_id: str | None = None,
    ) -> Subscription:
        """Add one after the per-scope checks; the URL itself is the caller's business."""
        scope_name = ORGANISATION_NAME if entity_id is None else self.entities[entity_id]
        with self._lock:
            same_scope = [s for s in self._all if s.entity_id == entity_id]
            if any(s.url == url for s in same_scope):
                raise SubscriptionError([f"a subscription for this url exists in {scope_name}"])
            if len(same_scope) >= MAX_PER_SCOPE:
                raise SubscriptionError([f"{scope_name} has {MAX_PER_SCOPE} subscriptions"])
            sub = Subscription(
                id=str(uuid.uuid4()),
                url=url,
                enabled=enabled,
                events=events,
                secret=secret if secret is not None else secrets.token_hex(32),
                entity_id=entity_id,
                scope_name=scope_name,
            )
            self._all = (*self._all, sub)
        return sub

    def update(self, sub_id: str, body: Any) -> Subscription | None:
        """PATCH: ``enabled`` and ``subscribedEvents`` (the URL and scope stay, as
        PassEntry's are immutable); None when there is no such subscription."""
        raw = body.get("webhookSubscription") if isinstance(body, dict) else None
        if not isinstance(raw, dict):
            raise SubscriptionError(
                ["body must be a JSON object with a 'webhookSubscription' object"]
            )
        changes: dict[str, Any] = {}
        if "enabled" in raw:
            if not isinstance(raw["enabled"], bool):
                raise SubscriptionError(["webhookSubscription.enabled must be a boolean"])
            changes["enabled"] = raw["enabled"]
        if "subscribedEvents" in raw:
            events = raw["subscribedEvents"]
            if not isinstance(events, list) or not events or not all(e in EVENTS for e in events):
                raise SubscriptionError([
                    f"webhookSubscription.subscribedEvents must be a non-empty list of"
                    f" {', '.join(EVENTS)}"
                ])  # fmt: skip
            changes["events"] = tuple(dict.fromkeys(events))
        if "url" in raw and raw["url"] is not None:
            raise SubscriptionError(["webhookSubscription.url cannot be changed"])
        return self._replace(sub_id, **changes)

    def rotate(self, sub_id: str) -> Subscription | None:
        """A new secret; the old one stops being valid at once."""
        return self._replace(sub_id, secret=secrets.token_hex(32))

    def remove(self, sub_id: str) -> bool:
        with self._lock:
            kept = tuple(s for s in self._all if s.id != sub_id)
            found = len(kept) != len(self._all)
            self._all = kept
        return found

    def _replace(self, sub_id: str, **changes: Any) -> Subscription | None:
        with self._lock:
            old = next((s for s in self._all if s.id == sub_id), None)
            if old is None:
                return None
            new = dataclasses.replace(old, **changes)
            self._all = tuple(new if s.id == sub_id else s for s in self._all)
        return new

    def create(self, body: Any) -> Subscription:
        """Check a POST body field by field (problems collected), then ``add``."""
        raw = body.get("webhookSubscription") if isinstance(body, dict) else None
        problems: list[str] = []
        if not isinstance(raw, dict):
            problems.append("body must be a JSON object with a 'webhookSubscription' object")
            raw = {}
        url = raw.get("url")
        url_problem = _url_problem(url)
        if url_problem is not None:
            problems.append(url_problem)
        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            problems.append("webhookSubscription.enabled must be a boolean")
        events = raw.get("subscribedEvents")
        if (
            not isinstance(events, list)
            or not events
            or not all(isinstance(e, str) and e in EVENTS for e in events)
        ):
            problems.append(
                f"webhookSubscription.subscribedEvents must be a non-empty list of "
                f"{', '.join(EVENTS)}"
            )
            events = []
        entity_id = raw.get("entityId")
        if entity_id is not None and entity_id not in self.entities:
            problems.append("webhookSubscription.entityId is not an entity of this organisation")
        if problems:
            raise SubscriptionError(problems)
        return self.add(
            str(url),
            events=tuple(dict.fromkeys(events)),
            enabled=enabled,
            entity_id=entity_id,
        )


def subscription_routes(router: web.UrlDispatcher, subs: Subscriptions) -> None:
    """The subscription endpoints; auth and the rate limit come from the middlewares."""

    def unprocessable(problems: list[str]) -> web.Response:
        return web.json_response({"errors": problems}, status=422)

    async def create(request: web.Request) -> web.Response:
        try:
            body = msgspec.json.decode(await request.read())
        except msgspec.DecodeError:
            body = None
        try:
            sub = subs.create(body)
        except SubscriptionError as exc:
            return unprocessable(exc.problems)
        return web.json_response({"data": sub.resource()}, status=201)

    async def list_(request: web.Request) -> web.Response:
        problems: list[str] = []
        per_page, page = _DEFAULT_PER_PAGE, 1
        try:
            per_page = positive_int(request.query, "perPage", _DEFAULT_PER_PAGE)
        except QueryError as exc:
            problems.append(str(exc))
        try:
            page = positive_int(request.query, "page", 1)
        except QueryError as exc:
            problems.append(str(exc))
        if problems:
            return unprocessable(problems)
        size = min(per_page, _MAX_PER_PAGE)
        entity_id = request.query.get("entityId")
        found = [s for s in subs.all() if entity_id is None or s.entity_id == entity_id]
        items = found[(page - 1) * size : page * size]
        meta = {
            "totalCount": len(found),
            "resultsPerPage": size,
            "currentPage": page,
            "totalPages": -(-len(found) // size),
        }
        return web.json_response({"data": [s.resource() for s in items], "meta": meta})

    async def show(request: web.Request) -> web.Response:
        sub = subs.get(request.match_info["id"])
        if sub is None:
            return web.json_response({"errors": ["Not Found"]}, status=404)
        return web.json_response({"data": sub.resource()})

    def not_found() -> web.Response:
        return web.json_response({"errors": ["Not Found"]}, status=404)

    async def update(request: web.Request) -> web.Response:
        try:
            body = msgspec.json.decode(await request.read())
        except msgspec.DecodeError:
            body = None
        try:
            sub = subs.update(request.match_info["id"], body)
        except SubscriptionError as exc:
            return unprocessable(exc.problems)
        return not_found() if sub is None else web.json_response({"data": sub.resource()})

    async def rotate(request: web.Request) -> web.Response:
        sub = subs.rotate(request.match_info["id"])
        return not_found() if sub is None else web.json_response({"data": sub.resource()})

    async def delete(request: web.Request) -> web.Response:
        # The guide says subscriptions can be deleted; the path is REST's, not confirmed.
        if not subs.remove(request.match_info["id"]):
            return not_found()
        return web.Response(status=204)

    router.add_post(_PATH, create)
    router.add_get(_PATH, list_)
    router.add_get(_PATH + "/{id}", show)
    router.add_patch(_PATH + "/{id}", update)
    router.add_patch(_PATH + "/{id}/rotate-secret", rotate)
    router.add_delete(_PATH + "/{id}", delete)
