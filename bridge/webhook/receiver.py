"""``POST /webhooks/passentry/<source id>``: verify, make durable in the inbox, answer.

The receiver runs on its own port (``BRIDGE_WEBHOOK_PORT``), apart from /metrics, so that
only it is exposed to PassEntry. It answers:

- 200 ``{"status":"ok"}`` only once the event is in the inbox (the broker acknowledged it);
- 200 for an event type the bridge does not handle (counted, ignored);
- 401 for a missing or wrong signature (counted; the body is never logged);
- 400 for a body that is not a webhook event, or one older than the replay window;
- 404 for a source this deployment does not run; 405 for another method;
- 413 above 256 KiB;
- 503 while Kafka cannot take the event, or too many requests are in hand, so that
  PassEntry retries.

It runs an aiohttp server on a thread of its own, with a bound on requests in hand, so a
flood of bad requests costs little and never waits on the poll loop or its transactions.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from confluent_kafka import KafkaError

from bridge.errors import InvalidWebhookError, KafkaRetriableError
from bridge.ops.metrics import Metrics
from bridge.webhook.events import PASS_SCANNED, decode_event
from bridge.webhook.signature import signature_matches

__all__ = ["MAX_BODY_BYTES", "EventWriter", "ReceiverSettings", "WebhookReceiver"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
SIGNATURE_HEADER = "X-Webhook-Signature"
# How long a request waits for the broker before it is answered 503.
_DURABLE_WAIT_S = 10.0


class EventWriter(Protocol):
    """Where accepted events go: ``InboxWriter`` in production."""

    def start(self) -> None: ...

    def close(self, timeout_s: float) -> int: ...

    def write(
        self, source_id: str, body: bytes, done: Callable[[KafkaError | None], None]
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class ReceiverSettings:
    host: str
    port: int
    max_age_s: float
    max_inflight: int


class WebhookReceiver:
    def __init__(
        self,
        settings: ReceiverSettings,
        secrets: Mapping[str, list[str]],
        inbox: EventWriter,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``secrets`` maps each source id this deployment runs to its accepted secrets."""
        self._settings = settings
        self._secrets = dict(secrets)
        self._inbox = inbox
        self._metrics = metrics
        self._clock = clock
        self._inflight = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._port: int | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="webhooks", daemon=True)
        self._runner: web.AppRunner | None = None

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
        if self._runner is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread.ident is not None:
            self._thread.join(10)
        self._inbox.close(5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            try:
                self._loop.run_until_complete(self._listen())
            except BaseException as exc:  # handed to start(), which raises it in its thread
                self._error = exc
                return
            finally:
                self._started.set()
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _listen(self) -> None:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/webhooks/passentry/{source_id}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._settings.host, self._settings.port)
        await site.start()
        # The port the OS gave, when port 0 was asked for (tests).
        self._port = int(self._runner.addresses[0][1])

    async def _handle(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return web.json_response({"errors": ["use POST"]}, status=405)
        if self._inflight >= self._settings.max_inflight:
            return self._answer("unavailable", 503, "too many webhook requests in hand")
        self._inflight += 1
        try:
            return await self._accept(request)
        finally:
            self._inflight -= 1

    async def _accept(self, request: web.Request) -> web.Response:
        source_id = request.match_info["source_id"]
        secrets = self._secrets.get(source_id)
        if secrets is None:
            return self._answer("unknown_source", 404, "no such source")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return self._answer("too_large", 413, "body above 256 KiB")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._answer("too_large", 413, "body above 256 KiB")
        if not signature_matches(body, request.headers.get(SIGNATURE_HEADER), secrets):
            log.warning(
                "webhook refused: bad or missing signature",
                extra={"source_id": source_id, "remote": request.remote},
            )
            return self._answer("unauthorized", 401, "bad or missing signature")
        try:
            event = decode_event(body)
        except InvalidWebhookError as exc:
            return self._answer("malformed", 400, str(exc))
        if event.webhook_type != PASS_SCANNED:
            return self._answer("ignored", 200, None)
        age_s = self._clock() - event.timestamp_ms / 1000
        if age_s > self._settings.max_age_s:
            return self._answer("stale", 400, f"event is {age_s:.0f}s old; polling covers it")
        if not await self._durable(source_id, body):
            return self._answer("unavailable", 503, "Kafka cannot take the event now")
        return self._answer("accepted", 200, None)

    async def _durable(self, source_id: str, body: bytes) -> bool:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[KafkaError | None] = loop.create_future()

        def report(err: KafkaError | None) -> None:
            loop.call_soon_threadsafe(_settle, done, err)

        try:
            self._inbox.write(source_id, body, report)
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

    def _answer(self, outcome: str, status: int, error: str | None) -> web.Response:
        self._metrics.webhook_requests.labels(outcome).inc()
        if error is None:
            return web.json_response({"status": "ok"}, status=status)
        return web.json_response({"errors": [error]}, status=status)


def _settle(future: asyncio.Future[KafkaError | None], err: KafkaError | None) -> None:
    if not future.done():
        future.set_result(err)
