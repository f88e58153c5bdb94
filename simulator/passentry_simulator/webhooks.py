"""``passScanned`` webhooks for live scans: signed, retried, bounded, and faulty on demand.

How an event travels::

    Store.add (any thread, at creation, visible or not)
      -> on_scan: hand the scan to the event loop (call_soon[_threadsafe], creation order)
      -> _admit: draw the webhook faults, render the body once, file one delivery per
         subscription that wants the scan in the outbox (a heap ordered by due time)
      -> workers (``concurrency`` of them): take a due delivery, sign, POST
           2xx                       delivered
           other answer, no answer   back off (exponential, jitter) and file it again,
                                     until ``max_attempts`` or ``max_age_s``: given up

Bounded memory: the outbox holds at most ``queue_size`` deliveries, counting those in flight
and those waiting for a retry, so a slow or dead receiver costs at most that many bodies. A
delivery that finds the outbox full is dropped and counted (``queueFull``). The scan ids
kept per outcome for the admin API are capped as well (``ID_LOG_CAP`` each, oldest first out).

Faults (fields of :class:`Faults`, so ``PUT /_sim/faults`` changes them at run time), drawn
per delivery when the scan is admitted, from this sender's own rng (seeded from ``--seed``,
apart from the API's fault draws, so a seeded run drops, duplicates and delays the same
scans every time):

- drop: the event is never sent;
- duplicate: the same body (same event id, same signature) is filed twice, the copy
  50-250 ms after the original; each copy is retried on its own;
- delay: the first attempt waits uniform(0, ``webhook_delay_ms``), which reorders events;
- bad signature: the FIRST attempt is signed with a wrong key. The receiver should answer
  401; like any non-2xx that is retried, and retries are signed correctly, so the event
  still arrives. An event that never arrives is what the drop fault is for.

Signature: ``X-Webhook-Signature`` is HMAC-SHA256 over the exact body bytes, keyed with the
subscription's secret (UTF-8): lowercase hex by default, or base64, or ``sha256=<hex>``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import heapq
import hmac
import itertools
import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import msgspec
from aiohttp import web

from passentry_simulator.faults import Faults
from passentry_simulator.store import Scan, random_uuid4
from passentry_simulator.subscriptions import Subscription, Subscriptions

__all__ = [
    "ID_LOG_CAP",
    "SIGNATURE_FORMATS",
    "SIGNATURE_HEADER",
    "SignatureFormat",
    "WebhookConfig",
    "WebhookSender",
    "iso_ms",
    "render_event",
    "sign",
    "webhook_routes",
]

log = logging.getLogger(__name__)

SignatureFormat = Literal["hex", "base64", "prefixed-hex"]
SIGNATURE_FORMATS: tuple[SignatureFormat, ...] = ("hex", "base64", "prefixed-hex")
SIGNATURE_HEADER = "X-Webhook-Signature"
ID_LOG_CAP = 100_000
_DUPLICATE_GAP_S = (0.05, 0.25)
_WRONG_KEY_PREFIX = "not-"
_USER_AGENT = "passentry-simulator-webhooks"
COUNTERS = (
    "events",  # live scans addressed to the subscription
    "attempted",  # POSTs made, first tries, retries and duplicates alike
    "delivered",  # deliveries answered 2xx (a duplicated event counts twice)
    "retried",  # failed attempts filed again for a retry
    "gaveUp",  # deliveries abandoned after max attempts or max age
    "droppedByFault",  # events the drop fault kept from ever being sent
    "duplicated",  # events filed twice by the duplicate fault
    "badSignatures",  # attempts signed with a wrong key
    "queueFull",  # deliveries refused because the outbox was full
)
OUTCOMES = ("delivered", "droppedByFault", "queueFull", "gaveUp")
# Besides the outcomes, the ids whose first attempt failed: delivered late, if at all, so
# possibly after newer events (what an order check must allow for).
ID_LOGS = (*OUTCOMES, "retried")


@dataclass(frozen=True)
class WebhookConfig:
    """Delivery settings. ``url`` and ``secret`` add a subscription at start-up."""

    url: str | None = None
    secret: str | None = None
    signature_format: SignatureFormat = "hex"
    concurrency: int = 4  # POSTs in flight at once
    queue_size: int = 10_000  # deliveries held at once: waiting, in flight, backing off
    max_attempts: int = 8
    max_age_s: float = 300.0  # since the scan was created
    retry_base_s: float = 0.5  # first retry after 0.25-0.5 s, then doubling
    retry_cap_s: float = 60.0
    timeout_s: float = 10.0  # per attempt

    def __post_init__(self) -> None:
        if (self.url is None) != (self.secret is None):
            raise ValueError("a webhook url needs a secret, and a secret a url")
        if self.secret == "":
            raise ValueError("the webhook secret must not be empty")
        if self.signature_format not in SIGNATURE_FORMATS:
            raise ValueError(f"signature_format must be one of {', '.join(SIGNATURE_FORMATS)}")
        for name in ("concurrency", "queue_size", "max_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"webhook {name} must be at least 1")
        for name in ("max_age_s", "retry_base_s", "retry_cap_s", "timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"webhook {name} must be positive")

    def to_json(self) -> dict[str, Any]:
        return {
            "signatureFormat": self.signature_format,
            "concurrency": self.concurrency,
            "queueSize": self.queue_size,
            "maxAttempts": self.max_attempts,
            "maxAgeS": self.max_age_s,
            "retryBaseS": self.retry_base_s,
            "retryCapS": self.retry_cap_s,
            "timeoutS": self.timeout_s,
        }


def sign(body: bytes, secret: str, fmt: SignatureFormat = "hex") -> str:
    """The ``X-Webhook-Signature`` value for ``body``."""
    mac = hmac.new(secret.encode(), body, hashlib.sha256)
    if fmt == "base64":
        return base64.b64encode(mac.digest()).decode()
    if fmt == "prefixed-hex":
        return "sha256=" + mac.hexdigest()
    return mac.hexdigest()


def iso_ms(ms: int) -> str:
    """ISO 8601 UTC with milliseconds: ``2025-01-13T13:00:00.123Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def render_event(event_id: str, at_ms: int, scan: Scan) -> bytes:
    """The ``passScanned`` body. Its included scan and pass are the very bytes the scans
    list serves; the reader is its name and readerType only, as PassEntry documents."""
    spec = scan.spec
    pass_ref = None if spec.pass_ is None else {"id": spec.pass_.id, "type": "pass"}
    head = {
        "id": event_id,
        "type": "webhook",
        "attributes": {"timeStamp": iso_ms(at_ms), "webhookType": "passScanned"},
        "relationships": {
            "scan": {"data": {"id": scan.id, "type": "scan"}},
            "pass": {"data": pass_ref},
            "reader": {"data": {"id": spec.reader.id, "type": "reader"}},
        },
    }
    included = [scan.json]
    if spec.pass_ is not None:
        included.append(spec.pass_.json)
    included.append(spec.reader.brief_json)
    return b"".join(
        (b'{"data":', msgspec.json.encode(head), b',"included":[', b",".join(included), b"]}")
    )


class _IdLog:
    """Scan ids in first-seen order, each once, the oldest forgotten past ``cap``."""

    def __init__(self, cap: int) -> None:
        self._ids: dict[str, None] = {}
        self._cap = cap

    def add(self, scan_id: str) -> None:
        if scan_id in self._ids:
            return
        self._ids[scan_id] = None
        if len(self._ids) > self._cap:
            del self._ids[next(iter(self._ids))]

    def to_list(self) -> list[str]:
        return list(self._ids)


@dataclass
class _Ledger:
    """What happened to one subscription's deliveries."""

    counts: Counter[str] = field(default_factory=Counter)
    ids: dict[str, _IdLog] = field(
        default_factory=lambda: {name: _IdLog(ID_LOG_CAP) for name in ID_LOGS}
    )

    def record(self, outcome: str, scan_id: str) -> None:
        self.counts[outcome] += 1
        self.ids[outcome].add(scan_id)

    def stats(self) -> dict[str, int]:
        return {name: self.counts[name] for name in COUNTERS}


@dataclass(slots=True, eq=False)
class _Delivery:
    sub: Subscription
    scan_id: str
    body: bytes
    admitted: float  # loop time
    bad_first: bool  # the bad-signature fault: the first attempt gets a wrong key
    attempts: int = 0


class WebhookSender:
    """The outbox and its workers; ``start``/``stop`` run on the simulator's event loop."""

    def __init__(
        self,
        config: WebhookConfig,
        faults: Faults,
        subscriptions: Subscriptions,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self.faults = faults
        self.subscriptions = subscriptions
        # Fault draws and event ids, in admission order: replayable with a seed.
        self.rng = random.Random(None if seed is None else seed + 2)
        # Backoff jitter depends on timing, so it draws from a stream of its own.
        self._jitter = random.Random(None if seed is None else seed + 3)
        self._ledgers: dict[str, _Ledger] = {}
        self._outbox: list[tuple[float, int, _Delivery]] = []
        self._seq = itertools.count()
        self._in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._workers: list[asyncio.Task[None]] = []

    # -- intake ------------------------------------------------------------------------

    def on_scan(self, scan: Scan) -> None:
        """Store listener: runs under the store's lock, on whichever thread made the scan."""
        loop = self._loop
        if loop is None or not any(s.wants(scan) for s in self.subscriptions.all()):
            return
        at_ms = time.time_ns() // 1_000_000
        if threading.get_ident() == self._loop_thread:
            loop.call_soon(self._admit, scan, at_ms)
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: the simulator is stopping
            loop.call_soon_threadsafe(self._admit, scan, at_ms)

    def _admit(self, scan: Scan, at_ms: int) -> None:
        targets = [s for s in self.subscriptions.all() if s.wants(scan)]
        if not targets:
            return
        faults, rng = self.faults, self.rng
        body = render_event(random_uuid4(rng), at_ms, scan)
        now = asyncio.get_running_loop().time()
        for sub in targets:
            ledger = self._ledger(sub.id)
            ledger.counts["events"] += 1
            # Every draw is made before the outbox is looked at, so a full outbox does not
            # shift the faults of the scans after it.
            if faults.roll("webhook_drop", faults.webhook_drop_rate, rng):
                ledger.record("droppedByFault", scan.id)
                continue
            duplicate = faults.roll("webhook_duplicate", faults.webhook_duplicate_rate, rng)
            delay_ms = faults.webhook_delay_ms
            delay_s = rng.uniform(0.0, delay_ms) / 1000 if delay_ms > 0 else 0.0
            bad = faults.roll("webhook_bad_signature", faults.webhook_bad_signature_rate, rng)
            gap_s = rng.uniform(*_DUPLICATE_GAP_S) if duplicate else 0.0
            if not self._file(_Delivery(sub, scan.id, body, now, bad), now + delay_s):
                ledger.record("queueFull", scan.id)
                continue
            if not duplicate:
                continue
            if self._file(_Delivery(sub, scan.id, body, now, False), now + delay_s + gap_s):
                ledger.counts["duplicated"] += 1
            else:  # the original is on its way; only the copy is lost
                ledger.counts["queueFull"] += 1

    def _ledger(self, sub_id: str) -> _Ledger:
        ledger = self._ledgers.get(sub_id)
        if ledger is None:
            ledger = self._ledgers[sub_id] = _Ledger()
        return ledger

    def _file(self, delivery: _Delivery, due: float) -> bool:
        if len(self._outbox) + self._in_flight >= self.config.queue_size:
            return False
        self._schedule(delivery, due)
        return True

    def _schedule(self, delivery: _Delivery, due: float) -> None:
        heapq.heappush(self._outbox, (due, next(self._seq), delivery))
        self._wake.set()

    # -- delivery ----------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.config.concurrency),
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
            headers={"User-Agent": _USER_AGENT},
        )
        self._workers = [
            asyncio.create_task(self._work(), name=f"webhook-worker-{n}")
            for n in range(self.config.concurrency)
        ]

    async def stop(self) -> None:
        """Stop taking scans and abandon what is still in the outbox."""
        self._loop = None
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _take(self) -> _Delivery:
        loop = asyncio.get_running_loop()
        while True:
            timeout: float | None = None
            if self._outbox:
                timeout = self._outbox[0][0] - loop.time()
                if timeout <= 0:
                    self._in_flight += 1
                    return heapq.heappop(self._outbox)[2]
            # Nothing awaits between looking at the outbox and waiting, so no wake-up is lost.
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _work(self) -> None:
        while True:
            delivery = await self._take()
            try:
                await self._attempt(delivery)
            except Exception:  # a bug here must not silently stop a worker
                log.exception("webhook delivery to %s failed unexpectedly", delivery.sub.url)
            finally:
                self._in_flight -= 1

    async def _attempt(self, d: _Delivery) -> None:
        if self._session is None:
            raise RuntimeError("webhook sender not started")
        ledger = self._ledger(d.sub.id)
        d.attempts += 1
        bad = d.bad_first and d.attempts == 1
        key = _WRONG_KEY_PREFIX + d.sub.secret if bad else d.sub.secret
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(d.body, key, self.config.signature_format),
        }
        ledger.counts["attempted"] += 1
        if bad:
            ledger.counts["badSignatures"] += 1
        try:
            async with self._session.post(
                d.sub.url, data=d.body, headers=headers, allow_redirects=False
            ) as resp:
                status: int | None = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            status = None
            log.debug("webhook to %s: %s", d.sub.url, type(exc).__name__)
        if status is not None and 200 <= status < 300:
            ledger.record("delivered", d.scan_id)
            return
        now = asyncio.get_running_loop().time()
        wait = self._backoff(d.attempts)
        too_old = now + wait - d.admitted > self.config.max_age_s
        if d.attempts == 1:
            ledger.ids["retried"].add(d.scan_id)  # later, if ever: whatever comes next
        if d.attempts >= self.config.max_attempts or too_old:
            ledger.record("gaveUp", d.scan_id)
            log.debug("webhook for scan %s given up after %d attempts", d.scan_id, d.attempts)
            return
        ledger.counts["retried"] += 1
        self._schedule(d, now + wait)

    def _backoff(self, attempts: int) -> float:
        """Exponential with equal jitter: half the step fixed, half random, never instant."""
        step = min(self.config.retry_cap_s, self.config.retry_base_s * 2.0 ** (attempts - 1))
        return step / 2 + self._jitter.uniform(0.0, step / 2)

    # -- what the admin API shows ----------------------------------------------------------

    def totals(self) -> dict[str, int]:
        """Counters summed over subscriptions, plus the outbox's current size."""
        total: Counter[str] = Counter()
        for ledger in self._ledgers.values():
            total.update(ledger.counts)
        out = {name: total[name] for name in COUNTERS}
        out["pending"] = len(self._outbox)
        out["inFlight"] = self._in_flight
        return out

    def view(self) -> dict[str, Any]:
        subs = [
            {
                "id": s.id,
                "url": s.url,
                "enabled": s.enabled,
                "subscribedEvents": list(s.events),
                "scopeType": s.scope_type,
                "scopeName": s.scope_name,
                "stats": self._ledger(s.id).stats(),
            }
            for s in self.subscriptions.all()
        ]
        return {"settings": self.config.to_json(), "totals": self.totals(), "subscriptions": subs}

    def outcomes(self) -> dict[str, dict[str, list[str]]]:
        return {
            s.id: {name: log_.to_list() for name, log_ in self._ledger(s.id).ids.items()}
            for s in self.subscriptions.all()
        }


def webhook_routes(router: web.UrlDispatcher, sender: WebhookSender) -> None:
    """``GET /_sim/webhooks``: settings, totals and per-subscription counters.
    ``GET /_sim/webhooks/scans``: per subscription id, the scan ids of each outcome, and
    those whose first attempt failed (``retried``)."""

    async def show(request: web.Request) -> web.Response:
        return web.json_response(sender.view())

    async def scans(request: web.Request) -> web.Response:
        return web.json_response(sender.outcomes())

    router.add_get("/_sim/webhooks", show)
    router.add_get("/_sim/webhooks/scans", scans)
