"""Fault injection: what can go wrong between the bridge and PassEntry, on demand.

Four kinds of fault live here, each applied where it would happen for real:

- transport faults (latency, hangs, resets, 5xx, a proxy's HTML page) hit a request before
  the API code sees it, as a load balancer or a crashed node would; they never consume a
  rate-limit slot;
- body faults (malformed JSON, truncated bodies) spoil a 200 answer on its way out;
- data faults (ids that are not UUIDv7, late visibility, skewed id-minting nodes, missing
  ``included`` items, a page-size cap) are read by the store and the page renderer;
- webhook faults (dropped, duplicated, delayed and badly signed ``passScanned`` deliveries)
  are drawn by the webhook sender, from its own seeded rng, when a live scan is created.

``Faults`` is a plain mutable dataclass so a test can flip a field on a running server
between two requests; ``update`` is the checked path used by ``PUT /_sim/faults``.
Faults only touch ``/api/v1/*`` and webhooks; the ``/_sim/*`` admin routes are never spoiled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import socket
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

__all__ = ["API_PREFIX", "Faults", "FaultsError", "fault_middleware", "faults_routes"]

API_PREFIX = "/api/v1/"

log = logging.getLogger(__name__)

_HTML_PAGE = b"""<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx</center>
</body>
</html>
"""

_5XX = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


class FaultsError(ValueError):
    """A fault setting has an unknown name or an invalid value."""


@dataclass
class Faults:
    """Every knob is off by default; rates are probabilities in [0, 1] per request or scan."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_5xx_rate: float = 0.0
    hang_rate: float = 0.0
    hang_s: float = 30.0
    reset_rate: float = 0.0
    malformed_rate: float = 0.0
    truncated_rate: float = 0.0
    html_rate: float = 0.0
    # Data faults: fixed when a scan is created (bad_id, late) or drawn per page.
    bad_id_rate: float = 0.0
    missing_included_rate: float = 0.0
    late_rate: float = 0.0
    late_s: float = 5.0
    nodes: int = 1
    max_skew_ms: int = 0
    max_page_size: int | None = None
    # Webhook faults, per delivery of a live scan to a subscription (``webhooks.py``).
    webhook_drop_rate: float = 0.0  # never sent
    webhook_duplicate_rate: float = 0.0  # sent twice, the copy a little later
    webhook_delay_ms: float = 0.0  # first attempt held back uniform(0, this): reorders
    webhook_bad_signature_rate: float = 0.0  # first attempt signed with a wrong key
    # A seeded rng keeps a faulty run replayable; excluded from the JSON view.
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)
    # How often each fault fired, for ``GET /_sim/stats``.
    fired: Counter[str] = field(default_factory=Counter, repr=False, compare=False)

    def roll(self, name: str, rate: float, rng: random.Random | None = None) -> bool:
        """Draw one fault (from ``rng``, default our own); counts it when it fires.

        A zero rate never touches the rng.
        """
        if rate <= 0.0 or (rng if rng is not None else self.rng).random() >= rate:
            return False
        self.fired[name] += 1
        return True

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in _settable_fields()}

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update, all or nothing: a bad key or value changes nothing."""
        checked: dict[str, Any] = {}
        settable = {f.name: f for f in _settable_fields()}
        for name, value in changes.items():
            if name not in settable:
                raise FaultsError(f"unknown fault setting {name!r}")
            checked[name] = _check(name, value)
        for name, value in checked.items():
            setattr(self, name, value)


def _settable_fields() -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(Faults) if f.name not in ("rng", "fired")]


def _check(name: str, value: Any) -> Any:
    # bool is an int subclass; true/false for a number is a caller bug, not a 1.
    if isinstance(value, bool):
        raise FaultsError(f"{name} must be a number")
    if name == "max_page_size":
        if value is None:
            return None
        if not isinstance(value, int) or value < 1:
            raise FaultsError("max_page_size must be a positive integer or null")
        return value
    if name in ("nodes", "max_skew_ms"):
        if not isinstance(value, int) or value < (1 if name == "nodes" else 0):
            raise FaultsError(f"{name} must be an integer >= {1 if name == 'nodes' else 0}")
        return value
    if not isinstance(value, int | float) or value < 0:
        raise FaultsError(f"{name} must be a non-negative number")
    if name.endswith("_rate") and value > 1:
        raise FaultsError(f"{name} must be between 0 and 1")
    return float(value)


def _drop_connection(request: web.BaseRequest, *, reset: bool) -> None:
    """Close the client's socket. With ``reset`` an RST is sent instead of a FIN."""
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER with a zero timeout makes close() send RST: the client sees
            # "connection reset by peer", not a tidy end of stream.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


def _gone() -> web.Response:
    # aiohttp writes the handler's answer after it returns; on a dropped connection that
    # write raises ConnectionError, which aiohttp swallows. So any response will do.
    return web.Response(status=499)


async def _truncated(request: web.Request, resp: web.Response) -> web.StreamResponse:
    body = bytes(resp.body) if isinstance(resp.body, bytes | bytearray) else b""
    stream = web.StreamResponse(status=resp.status, headers=resp.headers)
    stream.content_length = len(body)
    await stream.prepare(request)
    await stream.write(body[: max(1, len(body) // 2)])
    # A graceful close flushes the half already written, then FIN: the client gets a
    # short body against the promised Content-Length.
    _drop_connection(request, reset=False)
    return stream


def fault_middleware(faults: Faults) -> Middleware:
    """aiohttp middleware applying transport and body faults to ``/api/v1/*``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX):
            return await handler(request)
        delay_ms = faults.latency_ms
        if faults.jitter_ms > 0:
            delay_ms += faults.rng.uniform(0.0, faults.jitter_ms)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        if faults.roll("hang", faults.hang_rate):
            await asyncio.sleep(faults.hang_s)
            _drop_connection(request, reset=False)
            return _gone()
        if faults.roll("reset", faults.reset_rate):
            _drop_connection(request, reset=True)
            return _gone()
        if faults.roll("5xx", faults.error_5xx_rate):
            status = faults.rng.choice(list(_5XX))
            return web.json_response({"errors": [_5XX[status]]}, status=status)
        if faults.roll("html", faults.html_rate):
            return web.Response(status=502, body=_HTML_PAGE, content_type="text/html")
        resp = await handler(request)
        if resp.status != 200 or not isinstance(resp, web.Response):
            return resp
        if faults.roll("malformed", faults.malformed_rate):
            body = bytes(resp.body) if isinstance(resp.body, bytes | bytearray) else b""
            # Half a document plus a NUL byte: never valid JSON, whatever the cut point.
            resp.body = body[: len(body) // 2] + b"\x00<garbage"
            return resp
        if faults.roll("truncated", faults.truncated_rate):
            return await _truncated(request, resp)
        return resp

    return middleware


def faults_routes(router: web.UrlDispatcher, faults: Faults) -> None:
    """``GET /_sim/faults`` shows the settings; ``PUT`` changes some of them.

    The PUT body is a JSON object of the fields to change, named as on :class:`Faults`
    (``{"error_5xx_rate": 0.2, "max_page_size": 7}``); the answer is the full settings.
    """

    async def show(request: web.Request) -> web.Response:
        return web.json_response(faults.to_json())

    async def change(request: web.Request) -> web.Response:
        try:
            changes = await request.json()
        except ValueError:
            changes = None
        if not isinstance(changes, dict):
            return web.json_response({"errors": ["body must be a JSON object"]}, status=400)
        try:
            faults.update(changes)
        except FaultsError as exc:
            return web.json_response({"errors": [str(exc)]}, status=400)
        log.info("faults changed: %s", changes)
        return web.json_response(faults.to_json())

    router.add_get("/_sim/faults", show)
    router.add_put("/_sim/faults", change)
