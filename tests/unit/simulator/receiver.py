"""A webhook receiver for the simulator's tests: aiohttp on its own thread and loop.

It checks ``X-Webhook-Signature`` the way a real receiver would (its own HMAC code, not the
simulator's), answers 401 when the signature is wrong, otherwise whatever ``answer`` says
(200 by default), and records every request. Tests wait on :meth:`Receiver.wait_for`, which
wakes on each request, never on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from aiohttp import web

# (parsed event, how many requests this event id has made, this one included) -> status
Answer = Callable[[dict[str, Any], int], int]


@dataclass(frozen=True)
class Received:
    body: bytes
    signature: str
    valid: bool  # the signature checked out
    status: int  # what the receiver answered
    at: float  # time.monotonic() on arrival

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def event_id(self) -> str:
        return str(self.event["data"]["id"])

    @property
    def scan_id(self) -> str:
        return str(self.event["data"]["relationships"]["scan"]["data"]["id"])


def signature_ok(body: bytes, header: str, secret: str, fmt: str) -> bool:
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    if fmt == "base64":
        expected = base64.b64encode(digest).decode()
    elif fmt == "prefixed-hex":
        expected = "sha256=" + digest.hex()
    else:
        expected = digest.hex()
    return hmac.compare_digest(header, expected)


class Receiver:
    def __init__(self, secret: str = "", fmt: str = "hex", answer: Answer | None = None) -> None:
        self.secret = secret  # may be set after start, e.g. to a subscription's secretKey
        self.fmt = fmt
        self.answer = answer if answer is not None else (lambda event, nth: 200)
        self.port = 0
        self._received: list[Received] = []
        self._seen: Counter[str] = Counter()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._gate: asyncio.Event | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/passentry"

    @property
    def received(self) -> list[Received]:
        with self._cond:
            return list(self._received)

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 15.0
    ) -> list[Received]:
        """Block until ``predicate(received so far)`` holds; fails the test on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self._received), timeout):
                raise AssertionError(f"receiver: condition not met, got {len(self._received)}")
            return list(self._received)

    def hold(self) -> None:
        """Keep every request waiting (as a stuck receiver would) until :meth:`release`."""
        self._call(lambda gate: gate.clear())

    def release(self) -> None:
        self._call(lambda gate: gate.set())

    def _call(self, action: Callable[[asyncio.Event], None]) -> None:
        if self._loop is None or self._gate is None:
            raise RuntimeError("receiver not started")
        done = threading.Event()
        gate = self._gate

        def run() -> None:
            action(gate)
            done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(5)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self._gate is not None:
            await self._gate.wait()
        header = request.headers.get("X-Webhook-Signature", "")
        valid = signature_ok(body, header, self.secret, self.fmt)
        status = 401
        if valid:
            event = json.loads(body)
            with self._cond:
                self._seen[event["data"]["id"]] += 1
                nth = self._seen[event["data"]["id"]]
            status = self.answer(event, nth)
        with self._cond:
            self._received.append(Received(body, header, valid, status, time.monotonic()))
            self._cond.notify_all()
        return web.json_response({"status": "ok" if status < 300 else "no"}, status=status)

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="webhook-receiver", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("receiver did not start")
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._stopping is None:
            return
        self.release()
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        self._gate = asyncio.Event()
        self._gate.set()
        app = web.Application()
        app.router.add_post("/hooks/passentry", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()


def wait_until(condition: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    """Poll a condition on the simulator's state until it holds (or fail the test)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or 'a condition'}")
        time.sleep(0.01)
