"""PassEntry's documented rate limit: N requests per sliding second per (endpoint, method).

Each bucket keeps the monotonic times of the requests it let through during the last
window (a sliding log, exact rather than approximated by fixed windows). Choice: a request
that gets 429 does NOT consume a slot, so a client that waits ``x-rate-limit-retry-after``
is guaranteed to get in, and a client hammering the API cannot lock itself out for ever.
PassEntry does not document which way it goes; ours is the friendlier reading.

Headers, on every answer of a limited route:
``x-rate-limit-limit``, ``x-rate-limit-remaining`` (after this request),
``x-rate-limit-reset`` (Unix time, fractional seconds, when the oldest slot frees),
``x-rate-limit-url`` (the route template the bucket counts, e.g. ``/api/v1/scans/{id}``),
and on 429 ``x-rate-limit-retry-after`` (seconds, fractional).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

__all__ = ["Decision", "EndpointStats", "SlidingWindowLimiter", "ratelimit_middleware", "route_key"]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: float  # Unix seconds
    retry_after: float  # seconds; 0 when allowed


class SlidingWindowLimiter:
    """``limit`` requests per ``window_s`` seconds per key; ``limit=None`` turns it off."""

    def __init__(
        self,
        limit: int | None = 10,
        window_s: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit is not None and limit < 1:
            raise ValueError("rate limit must be >= 1 request per window, or None")
        if window_s <= 0:
            raise ValueError("rate-limit window must be positive")
        self.limit = limit
        self.window_s = window_s
        # Monotonic seconds. Tests may swap in a fake clock before the first request.
        self.clock = clock
        self._buckets: dict[str, deque[float]] = {}

    def check(self, key: str) -> Decision | None:
        """Admit or refuse one request now; ``None`` when limiting is off."""
        if self.limit is None:
            return None
        mono = self.clock()
        bucket = self._buckets.setdefault(key, deque())
        horizon = mono - self.window_s
        while bucket and bucket[0] <= horizon:
            bucket.popleft()
        allowed = len(bucket) < self.limit
        if allowed:
            bucket.append(mono)
        # The oldest stamp leaves the window first; that is when a slot frees.
        frees_in = bucket[0] + self.window_s - mono
        return Decision(
            allowed=allowed,
            limit=self.limit,
            remaining=self.limit - len(bucket),
            reset_at=time.time() + frees_in,
            retry_after=0.0 if allowed else max(frees_in, 0.001),
        )


@dataclass
class EndpointStats:
    """Counts per route key, served by ``GET /_sim/stats``."""

    requests: Counter[str] = field(default_factory=Counter)
    rate_limited: Counter[str] = field(default_factory=Counter)
    unauthorized: Counter[str] = field(default_factory=Counter)


def route_key(request: web.Request) -> str | None:
    """``"GET /api/v1/scans/{id}"`` for a matched route, ``None`` for a 404 route."""
    resource = request.match_info.route.resource
    if resource is None:
        return None
    return f"{request.method} {resource.canonical}"


def _headers(decision: Decision, url: str) -> dict[str, str]:
    headers = {
        "x-rate-limit-limit": str(decision.limit),
        "x-rate-limit-remaining": str(decision.remaining),
        "x-rate-limit-reset": f"{decision.reset_at:.3f}",
        "x-rate-limit-url": url,
    }
    if not decision.allowed:
        headers["x-rate-limit-retry-after"] = f"{decision.retry_after:.3f}"
    return headers


def ratelimit_middleware(limiter: SlidingWindowLimiter, stats: EndpointStats) -> Middleware:
    """Counts and limits each matched ``/api/v1`` route; runs after authentication."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        key = route_key(request)
        if key is None or not request.path.startswith("/api/v1/"):
            return await handler(request)
        stats.requests[key] += 1
        decision = limiter.check(key)
        if decision is None:
            return await handler(request)
        url = key.split(" ", 1)[1]
        if not decision.allowed:
            stats.rate_limited[key] += 1
            return web.json_response(
                {"errors": ["Too Many Requests"]}, status=429, headers=_headers(decision, url)
            )
        resp = await handler(request)
        resp.headers.update(_headers(decision, url))
        return resp

    return middleware
