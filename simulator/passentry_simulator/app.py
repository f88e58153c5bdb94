"""The aiohttp application: PassEntry's scan and webhook-subscription endpoints, the
``/_sim/*`` admin routes, and the webhook sender running beside them.

Middlewares, outermost first: faults (a proxy in front of the API), authentication, then
the rate limiter, so that neither a proxy failure nor a 401 consumes a rate-limit slot.
Page bodies are joined from bytes pre-rendered by the store; only ``meta`` and ``links``
are serialised per request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from passentry_simulator.faults import API_PREFIX, Faults, fault_middleware, faults_routes
from passentry_simulator.params import QueryError, positive_int
from passentry_simulator.ratelimit import EndpointStats, SlidingWindowLimiter, ratelimit_middleware
from passentry_simulator.store import EXTERNAL, Scan, ScanQuery, ScanSpec, Store, WorldConfig, iso
from passentry_simulator.subscriptions import Subscriptions, subscription_routes
from passentry_simulator.webhooks import WebhookConfig, WebhookSender, webhook_routes

__all__ = ["Simulator", "SimulatorConfig", "build_app", "errors"]

log = logging.getLogger(__name__)

MAX_PER_PAGE = 100
_ENUMS = {
    "validationType": ("internalValidation", "externalValidation"),
    "scanType": ("nfc", "barcode"),
    "status": ("successful", "failed"),
}
_STRING_FILTERS = {
    "entity": "entity",
    "readerId": "reader_id",
    "passId": "pass_id",
    "eventId": "event_id",
    "passTemplateName": "pass_template_name",
    "groupTag": "group_tag",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SimulatorConfig:
    token: str = "sim-token"  # noqa: S105 - the fake API's well-known test token
    world: WorldConfig = field(default_factory=WorldConfig)
    rate: float = 0.0  # live scans per second; 0 = no live traffic
    duration_s: float | None = None  # live traffic stops after this; the API keeps serving
    rate_limit: int | None = 10  # requests per window per (route, method); None = off
    rate_window_s: float = 1.0
    webhooks: WebhookConfig = field(default_factory=WebhookConfig)


@dataclass
class Simulator:
    """Everything a running simulator holds; tests reach in through these attributes."""

    config: SimulatorConfig
    faults: Faults
    store: Store
    limiter: SlidingWindowLimiter
    subscriptions: Subscriptions
    webhooks: WebhookSender
    stats: EndpointStats = field(default_factory=EndpointStats)
    # Set when live traffic with a duration has made its last scan.
    traffic_done: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def create(cls, config: SimulatorConfig, faults: Faults | None = None) -> Simulator:
        faults = faults if faults is not None else Faults()
        store = Store.build(config.world, faults)  # the backlog is minted here
        limiter = SlidingWindowLimiter(config.rate_limit, config.rate_window_s)
        entity_ids = dict.fromkeys(r.entity_id for r in store.world.readers)
        subscriptions = Subscriptions({e: f"Entity {n}" for n, e in enumerate(entity_ids, 1)})
        hooks = config.webhooks
        if hooks.url is not None:
            subscriptions.add(hooks.url, secret=hooks.secret)
        webhooks = WebhookSender(hooks, faults, subscriptions, config.world.seed)
        store.listeners.append(webhooks.on_scan)  # after the backlog: it is never announced
        return cls(config, faults, store, limiter, subscriptions, webhooks)


def errors(status: int, *messages: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"errors": list(messages)}, status=status, headers=headers)


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


def _auth_middleware(sim: Simulator, stats: EndpointStats) -> Middleware:
    expected = f"Bearer {sim.config.token}"

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX):
            return await handler(request)
        if request.headers.get("Authorization") != expected:
            stats.unauthorized[f"{request.method} {request.path}"] += 1
            return errors(401, "Unauthorized")
        try:
            return await handler(request)
        except web.HTTPException as exc:  # unknown route, wrong method: JSON like the rest
            return errors(exc.status, exc.reason)

    return middleware


def _instant_us(name: str, text: str) -> int:
    """Microseconds since the epoch; a naive time is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)  # 3.11: accepts Z, offsets and fractions
    except ValueError:
        raise QueryError(f"{name} must be an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def parse_scan_query(params: Any) -> tuple[ScanQuery, int, int]:
    """Filters, perPage and page from a query string; raises QueryError on bad input."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    for name, attr in _STRING_FILTERS.items():
        values[attr] = params.get(name)
    for name, allowed in _ENUMS.items():
        raw = params.get(name)
        if raw is not None and raw not in allowed:
            problems.append(f"{name} must be one of {', '.join(allowed)}")
        attr = "".join("_" + c.lower() if c.isupper() else c for c in name)
        values[attr] = raw
    # Both bounds are exclusive. A scan created in millisecond m lies in [m, m+1) ms;
    # "after T" keeps m*1000 > T_us, "before T" keeps m*1000 < T_us.
    for name in ("createdAfter", "createdBefore"):
        raw = params.get(name)
        if raw is None:
            continue
        try:
            us = _instant_us(name, raw)
        except QueryError as exc:
            problems.append(str(exc))
            continue
        if name == "createdAfter":
            values["min_ms"] = us // 1000 + 1
        else:
            values["end_ms"] = -(-us // 1000)
    per_page = page = 1
    for name, default in (("perPage", MAX_PER_PAGE), ("page", 1)):
        try:
            value = positive_int(params, name, default)
        except QueryError as exc:
            problems.append(str(exc))
            continue
        per_page, page = (value, page) if name == "perPage" else (per_page, value)
    if problems:
        raise QueryError("; ".join(problems))
    return ScanQuery(**values), per_page, page


def _included(sim: Simulator, scans: list[Scan]) -> list[bytes]:
    """Each referenced pass and reader once, in order of first mention."""
    items = list(dict.fromkeys(chain.from_iterable(s.refs for s in scans)))
    if items and sim.faults.roll("missing_included", sim.faults.missing_included_rate):
        del items[sim.faults.rng.randrange(len(items))]
    return items


async def list_scans(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    try:
        query, per_page, page = parse_scan_query(request.query)
    except QueryError as exc:
        return errors(422, *str(exc).split("; "))
    cap = sim.faults.max_page_size
    size = min(per_page, MAX_PER_PAGE, cap if cap is not None else MAX_PER_PAGE)
    result = sim.store.query(query)
    total = len(result.scans)
    pages = -(-total // size)
    items = result.scans[(page - 1) * size : page * size]
    meta = {
        "totalScans": total,
        "successfulScans": result.successful,
        "failedScans": result.failed,
        "readersCount": result.readers,
        "totalCount": total,
        "resultsPerPage": size,
        "currentPage": page,
        "totalPages": pages,
    }

    def link(n: int, wanted: bool) -> str | None:
        return str(request.url.update_query(page=n)) if wanted else None

    # As in PassEntry's one-page example: null where the link would point at this page.
    links = {
        "first": link(1, 1 < page <= pages or page > pages > 0),
        "prev": link(min(page - 1, pages), page > 1 and pages > 0),
        "next": link(page + 1, page < pages),
        "last": link(pages, pages > 0 and page != pages),
    }
    body = b"".join(
        (
            b'{"data":[',
            b",".join([s.json for s in items]),
            b'],"included":[',
            b",".join(_included(sim, items)),
            b'],"meta":',
            msgspec.json.encode(meta),
            b',"links":',
            msgspec.json.encode(links),
            b"}",
        )
    )
    return _json(body)


async def get_scan(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    scan = sim.store.get(request.match_info["id"])
    if scan is None:
        return errors(404, "Not Found")
    included = b",".join(_included(sim, [scan]))
    return _json(b'{"data":' + scan.json + b',"included":[' + included + b"]}")


async def get_pass(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    pass_ = sim.store.world.passes_by_key.get(request.match_info["id"])
    if pass_ is None:
        return errors(404, "Not Found")
    return _json(b'{"data":' + pass_.json + b"}")


def scan_info(scan: Scan) -> dict[str, Any]:
    spec = scan.spec
    return {
        "scanId": scan.id,
        "scanType": spec.scan_type,
        "scanValue": spec.scan_value,
        "validationType": spec.validation_type,
        "status": spec.status,
        "statusDetail": spec.status_detail,
        "scannedAt": iso(spec.scanned_at_ms),
        "passId": None if spec.pass_ is None else spec.pass_.id,
        "passExtId": None if spec.pass_ is None else spec.pass_.ext_id,
        "readerId": spec.reader.id,
    }


class _Body:
    """The ``scan`` object of a POST body, checked field by field, problems collected."""

    def __init__(self, raw: Any) -> None:
        self.problems: list[str] = []
        scan = raw.get("scan") if isinstance(raw, dict) else None
        if not isinstance(scan, dict):
            self.problems.append("body must be a JSON object with a 'scan' object")
            scan = {}
        self._scan: dict[str, Any] = scan

    def text(self, name: str, *, required: bool = True, allowed: tuple[str, ...] = ()) -> str:
        value = self._scan.get(name)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or not value or (allowed and value not in allowed):
            hint = f" ({', '.join(allowed)})" if allowed else ""
            self.problems.append(f"scan.{name} must be a non-empty string{hint}")
            return ""
        return value

    def get(self, name: str) -> Any:
        return self._scan.get(name)


async def _read_body(request: web.Request) -> _Body:
    try:
        raw = msgspec.json.decode(await request.read())
    except msgspec.DecodeError:
        raw = None
    return _Body(raw)


async def create_scan(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    body = await _read_body(request)
    reader_id, pass_id = body.text("readerId"), body.text("passId")
    scan_type = body.text("scanType", allowed=_ENUMS["scanType"])
    loyalty = body.get("loyalty")
    if loyalty is not None and not (
        isinstance(loyalty, dict) and isinstance(loyalty.get("balance"), int | float)
    ):
        body.problems.append("scan.loyalty must be an object with a numeric balance")
    if body.problems:
        return errors(422, *body.problems)
    reader = sim.store.world.readers_by_id.get(reader_id)
    pass_ = sim.store.world.passes_by_key.get(pass_id)
    if reader is None or pass_ is None:
        return errors(404, "Reader not found" if reader is None else "Pass not found")
    now_ms = time.time_ns() // 1_000_000
    scan = sim.store.add(sim.store.world.internal_spec(reader, pass_, scan_type, now_ms))
    ok = scan.spec.status == "successful"
    verdict: dict[str, Any] = {
        "status": scan.spec.status,
        "statusDetail": scan.spec.status_detail,
        "readerInstructions": {"message": "Access granted" if ok else "Access denied"},
    }
    if loyalty is not None:
        balance = loyalty["balance"]
        verdict["loyalty"] = {"balanceChange": balance, "updatedBalance": balance}
        verdict["loyalty"]["operation"] = "add"
    return web.json_response({"validationResponse": verdict, "scanInfo": scan_info(scan)})


async def log_scan(request: web.Request) -> web.Response:
    sim: Simulator = request.app[SIM_KEY]
    body = await _read_body(request)
    reader_id = body.text("readerId")
    scan_type = body.text("scanType", allowed=_ENUMS["scanType"])
    status = body.text("status", allowed=_ENUMS["status"])
    scan_value = body.text("scanValue")
    pass_id = body.text("passId", required=False)
    detail = body.get("statusDetail")
    if detail is not None and not isinstance(detail, str):
        body.problems.append("scan.statusDetail must be a string or null")
    if body.problems:
        return errors(422, *body.problems)
    reader = sim.store.world.readers_by_id.get(reader_id)
    pass_ = sim.store.world.passes_by_key.get(pass_id) if pass_id else None
    if reader is None or (pass_id and pass_ is None):
        return errors(404, "Reader not found" if reader is None else "Pass not found")
    now_ms = time.time_ns() // 1_000_000
    spec = ScanSpec(reader, pass_, scan_type, scan_value, EXTERNAL, status, detail, now_ms)
    return web.json_response({"scanInfo": scan_info(sim.store.add(spec))})


async def _traffic(sim: Simulator) -> None:
    """Live scans at ``rate`` per second, as evenly as a 20 ms tick allows."""
    rate, duration = sim.config.rate, sim.config.duration_s
    loop = asyncio.get_running_loop()
    start, made = loop.time(), 0
    while True:
        await asyncio.sleep(0.02)
        elapsed = loop.time() - start
        if duration is not None:
            elapsed = min(elapsed, duration)
        due = int(elapsed * rate) - made
        if due > 0:
            sim.store.generate(due)
            made += due
        if duration is not None and elapsed >= duration:
            log.info("live traffic finished after %d scans", made)
            sim.traffic_done.set()
            return


async def _traffic_ctx(app: web.Application) -> AsyncIterator[None]:
    sim = app[SIM_KEY]
    task = asyncio.create_task(_traffic(sim)) if sim.config.rate > 0 else None
    yield
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    sender = app[SIM_KEY].webhooks
    await sender.start()
    yield
    await sender.stop()


async def sim_scans(request: web.Request) -> web.Response:
    """Every scan created so far, visible or not, with its pass and reader: ground truth."""
    rows = [
        {
            "id": s.id,
            "createdAtMs": s.created_ms,
            "visibleAtMs": s.visible_at_ms,
            "readerId": s.spec.reader.id,
            "passId": None if s.spec.pass_ is None else s.spec.pass_.id,
            "resource": msgspec.Raw(s.json),
            "pass": None if s.spec.pass_ is None else msgspec.Raw(s.spec.pass_.json),
            "reader": msgspec.Raw(s.spec.reader.json),
        }
        for s in request.app[SIM_KEY].store.all_scans()
    ]
    return _json(msgspec.json.encode(rows))


async def sim_generate(request: web.Request) -> web.Response:
    try:
        n = positive_int(request.query, "n", 1)
    except QueryError as exc:
        return errors(400, str(exc))
    scans = request.app[SIM_KEY].store.generate(n)
    return web.json_response({"ids": [s.id for s in scans]})


async def sim_stats(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    total, pending = sim.store.counts()
    stats = {
        "requests": dict(sim.stats.requests),
        "rateLimited": dict(sim.stats.rate_limited),
        "unauthorized": dict(sim.stats.unauthorized),
        "faultsFired": dict(sim.faults.fired),
        "scans": {"total": total, "visible": total - pending, "pending": pending},
        "webhooks": sim.webhooks.totals(),
    }
    return web.json_response(stats)


SIM_KEY = web.AppKey("simulator", Simulator)


def build_app(sim: Simulator) -> web.Application:
    app = web.Application(
        middlewares=[
            fault_middleware(sim.faults),
            _auth_middleware(sim, sim.stats),
            ratelimit_middleware(sim.limiter, sim.stats),
        ]
    )
    app[SIM_KEY] = sim
    app.router.add_get("/api/v1/scans", list_scans)
    app.router.add_post("/api/v1/scans", create_scan)
    app.router.add_post("/api/v1/scans/log", log_scan)
    app.router.add_get("/api/v1/scans/{id}", get_scan)
    app.router.add_get("/api/v1/passes/{id}", get_pass)
    subscription_routes(app.router, sim.subscriptions)
    # Admin routes: no auth, no faults, no rate limit (the middlewares skip them).
    app.router.add_get("/_sim/scans", sim_scans)
    app.router.add_post("/_sim/scans/generate", sim_generate)
    app.router.add_get("/_sim/stats", sim_stats)
    faults_routes(app.router, sim.faults)
    webhook_routes(app.router, sim.webhooks)
    app.cleanup_ctx.append(_webhooks_ctx)  # before the traffic, which feeds it
    app.cleanup_ctx.append(_traffic_ctx)
    return app
