"""``POST /webhooks/passentry/<source id>``: verify, make durable in the inbox, answer.

The receiver runs on its own port (``BRIDGE_WEBHOOK_PORT``), apart from /metrics, so that
only it is exposed to PassEntry, and on its own thread and event loop, so that nothing a
client does waits on the poll loop or its transactions, or the other way round. Its HTTP
server (``bridge.webhook.server``) bounds connections, time and bytes; this module decides
what a request is worth, in this order, each step cheaper than the next:

1. the head: POST only (405), no ``Content-Encoding`` but identity (415: bodies are never
   inflated, so the signature covers the bytes as received and a compression bomb costs
   nothing); the route (404 for any path but ``/webhooks/passentry/<id>``);
2. the body is read, then the signature checked against the source's secrets (401). A
   source this deployment does not run gets the same 401, after the same work, so the
   answers do not tell which sources exist;
3. the event: not a webhook event (400); a type the bridge does not handle (200, ignored);
   stamped more than the source's maximum age ago or its tolerance ahead (400);
4. a redelivery of an event accepted within its window (same source and ``data.id``) is
   answered 200 and not written again; one still being written waits for that write;
5. only now is a slot in hand taken (``max_inflight``, else 503): the event is written to
   the inbox and answered 200 once the broker has it, 503 if it cannot (PassEntry retries).

Only a verified request keeps its connection alive. Refusals are counted by outcome and
401s logged at most every few seconds, with a count (``bridge.webhook.refusals``).

A verified request continues the caller's W3C ``traceparent`` (sent in any case): with
tracing on, as a server span whose context the inbox record carries; with tracing off, the
caller's context goes into the inbox record as it came, if well-formed (``bridge.tracing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import KafkaError

from bridge.errors import (
    InboxNotReadyError,
    InvalidWebhookError,
    KafkaRetriableError,
    ListenError,
)
from bridge.ops.metrics import Metrics
from bridge.tracecontext import TraceHeaders
from bridge.tracing.hooks import NO_TRACING, Tracing, WebhookSpan
from bridge.webhook.events import PASS_SCANNED, decode_event
from bridge.webhook.keys import SigningKeys
from bridge.webhook.refusals import RefusalLog
from bridge.webhook.replay import ReplayCache
from bridge.webhook.server import Answer, HttpServer, RequestHead, ServerLimits
from bridge.webhook.signature import signature_matches

__all__ = [
    "MAX_BODY_BYTES",
    "EventWriter",
    "ReceiverSettings",
    "WebhookReceiver",
    "WebhookSource",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
SIGNATURE_HEADER = "x-webhook-signature"
_ROUTE = re.compile(r"^/webhooks/passentry/([^/]+)$")
# How long a request waits for the broker before it is answered 503.
_DURABLE_WAIT_S = 10.0
_UNAUTHORIZED = ("bad or missing signature",)


class EventWriter(Protocol):
    """Where accepted events go: ``InboxWriter`` in production."""

    def start(self) -> None: ...

    def close(self, timeout_s: float) -> int: ...

    def write(
        self,
        source_id: str,
        body: bytes,
        done: Callable[[KafkaError | None], None],
        trace: TraceHeaders | None = None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class ReceiverSettings:
    host: str
    port: int
    max_inflight: int
    limits: ServerLimits
    replay_cache_size: int


@dataclass(frozen=True, slots=True)
class WebhookSource:
    """What the receiver knows of one source: its keys and its event time window."""

    keys: SigningKeys
    max_age_s: float
    max_future_s: float


class WebhookReceiver:
    def __init__(
        self,
        settings: ReceiverSettings,
        sources: Mapping[str, WebhookSource],
        inbox: EventWriter,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        """``sources`` holds each source this deployment takes webhooks for."""
        self._tracing = tracing
        self._settings = settings
        self._sources = dict(sources)
        self._inbox = inbox
        self._metrics = metrics
        self._clock = clock
        self._inflight = 0
        self._replays = ReplayCache(settings.replay_cache_size)
        # Writes under way, by (source, event id): a redelivery meanwhile waits for them.
        self._writing: dict[tuple[str, str], asyncio.Future[bool]] = {}
        self._refusals = RefusalLog()
        # Verifies bodies for unknown sources, so that they cost what a bad signature does.
        self._decoy = [secrets.token_bytes(32)]
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._port: int | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="webhooks", daemon=True)
        self._server = HttpServer(settings.host, settings.port, settings.limits, self, self._count)
        metrics.webhook_connections.set_function(lambda: self._server.open_connections)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the webhook receiver is not started")
        return self._port

    def start(self) -> None:
        """Listen; returns once the port is bound (or raises what binding raised)."""
        self._inbox.start()
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread.ident is not None:
            self._thread.join(10)
        self._inbox.close(5)

    async def _close(self) -> None:
        self._refusals.close()
        await self._server.close()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            try:
                self._port = self._loop.run_until_complete(self._server.start())
            except OSError as exc:
                s = self._settings
                self._error = ListenError("BRIDGE_WEBHOOK_PORT", s.host, s.port, exc)
                return
            except BaseException as exc:  # handed to start(), which raises it in its thread
                self._error = exc
                return
            finally:
                self._started.set()
            self._loop.run_forever()
        finally:
            self._loop.close()

    # --- what a request is worth (bridge.webhook.server.Handler) --------------------------

    def screen(self, head: RequestHead) -> Answer | None:
        if head.method != "POST":
            return self._answer("method_not_allowed", 405, "use POST")
        encoding = head.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            return self._answer(
                "unsupported_encoding", 415, "send the body as is, without Content-Encoding"
            )
        if _ROUTE.match(head.path) is None:
            return self._answer("not_found", 404, "no such route")
        return None

    async def handle(self, head: RequestHead, body: bytes) -> Answer:
        started_ns = time.time_ns()
        match = _ROUTE.match(head.path)
        source_id = match.group(1) if match else ""
        source = self._sources.get(source_id)
        signature = head.headers.get(SIGNATURE_HEADER)
        if source is None:
            signature_matches(body, signature, self._decoy)
            self._refusals.refused(source_id[:100], head.remote)
            return self._answer("unknown_source", 401, *_UNAUTHORIZED)
        if not signature_matches(body, signature, source.keys.current()):
            self._refusals.refused(source_id, head.remote)
            return self._answer("unauthorized", 401, *_UNAUTHORIZED, source_id=source_id)
        # Verified: whatever the answer, this sender may keep its connection. Only now is
        # the request traced: an unsigned flood never reaches the trace backend.
        with self._tracing.webhook(head.headers, head.path, head.remote, started_ns) as span:
            return await self._verified(source_id, source, body, span)

    async def _verified(
        self, source_id: str, source: WebhookSource, body: bytes, span: WebhookSpan
    ) -> Answer:
        try:
            event = decode_event(body)
        except InvalidWebhookError as exc:
            return self._answer(
                "malformed", 400, str(exc), keep=True, span=span, source_id=source_id
            )
        if event.webhook_type != PASS_SCANNED:
            return self._answer("ignored", 200, keep=True, span=span, source_id=source_id)
        now = self._clock()
        stamped = event.timestamp_ms / 1000
        if now - stamped > source.max_age_s:
            age = now - stamped
            return self._answer(
                "stale",
                400,
                f"event is {age:.0f}s old; polling covers it",
                keep=True,
                span=span,
                source_id=source_id,
            )
        if stamped - now > source.max_future_s:
            ahead = stamped - now
            return self._answer(
                "future",
                400,
                f"event is stamped {ahead:.0f}s in the future",
                keep=True,
                span=span,
                source_id=source_id,
            )
        key = (source_id, event.event_id)
        if self._replays.seen(source_id, event.event_id, now):
            return self._answer("replayed", 200, keep=True, span=span, source_id=source_id)
        writing = self._writing.get(key)
        if writing is not None:
            if await asyncio.shield(writing):
                return self._answer("replayed", 200, keep=True, span=span, source_id=source_id)
            return self._unavailable("Kafka cannot take the event now", span, source_id)
        if self._inflight >= self._settings.max_inflight:
            return self._unavailable("too many webhook requests in hand", span, source_id)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._writing[key] = done
        self._inflight += 1
        durable = False
        try:
            durable = await self._durable(source_id, body, span.headers)
            if durable:
                # Until the age check would refuse it anyway.
                self._replays.add(source_id, event.event_id, stamped + source.max_age_s)
        finally:
            self._inflight -= 1
            del self._writing[key]
            done.set_result(durable)
        if not durable:
            return self._unavailable("Kafka cannot take the event now", span, source_id)
        return self._answer("accepted", 200, keep=True, span=span, source_id=source_id)

    async def _durable(self, source_id: str, body: bytes, trace: TraceHeaders | None) -> bool:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[KafkaError | None] = loop.create_future()

        def report(err: KafkaError | None) -> None:
            # A delivery reported while the receiver shuts down (the last flush) finds its
            # request gone with the loop: nobody waits for the answer any more.
            with contextlib.suppress(RuntimeError):  # "Event loop is closed"
                loop.call_soon_threadsafe(_settle, done, err)

        try:
            self._inbox.write(source_id, body, report, trace)
        except InboxNotReadyError as exc:
            # At start, before the inbox exists: the inbox's writer warns if that lasts.
            log.debug("webhook event not written", extra={"error": str(exc)})
            return False
        except KafkaRetriableError as exc:
            log.warning("webhook event not written", extra={"error": str(exc)})
            return False
        try:
            err = await asyncio.wait_for(done, _DURABLE_WAIT_S)
        except TimeoutError:
            return False
        if err is not None:
            log.warning("webhook event not written", extra={"error": err.str()})
        return err is None

    def _answer(
        self, outcome: str, status: int, error: str | None = None, *, keep: bool = False,
        span: WebhookSpan | None = None,
        source_id: str = "",
    ) -> Answer:  # fmt: skip
        self._count(outcome, source_id)
        if span is not None:
            span.answered(outcome, status)
        return Answer(status, (error,) if error else (), keep_alive=keep)

    def _unavailable(self, why: str, span: WebhookSpan, source_id: str) -> Answer:
        """503: the sender retries later, on the same connection."""
        return self._answer("unavailable", 503, why, keep=True, span=span, source_id=source_id)

    def _count(self, outcome: str, source_id: str = "") -> None:
        # Only a source this deployment runs names a series: ids from paths are anyone's.
        self._metrics.webhook_requests.labels(source_id, outcome).inc()


def _settle(future: asyncio.Future[KafkaError | None], err: KafkaError | None) -> None:
    if not future.done():
        future.set_result(err)
