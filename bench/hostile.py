"""Hostile clients for the webhook receiver, in a process of their own.

The mix an attacker on the internet can throw at ``/webhooks/passentry/<source>`` at once,
each kind on its own asyncio tasks, reconnecting whenever the server ends a connection:

- ``slow_upload``: a body declared 1,000 bytes, sent one byte every ``trickle_s``;
- ``held_upload``: 250 KiB of a 256 KiB body sent at once, the rest never;
- ``slow_headers``: a header line every ``trickle_s``, never the blank line;
- ``flood``: unsigned (forged) requests, ``flood_per_s`` in all, a new connection each;
- ``replay``: one captured, correctly signed request sent again and again (``replay_per_s``);
- ``bomb``: a chunked gzip body that inflates to 1 GiB, ``bombs_per_s``;
- ``oversize``: a chunked body of ``oversize_bytes``, as fast as it goes.

Each kind's outcomes are counted (an HTTP status, or ``closed``/``reset`` when the server
ended the connection without one) and returned by :meth:`HostileClients.stop`. The bench
(``webhook_latency``'s hostile run) and the integration test
(tests/integration/test_webhooks_hostile.py) run the same mix.
"""

from __future__ import annotations

import asyncio
import functools
import json
import multiprocessing
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from typing import Any

from bridge.uuid7 import UUIDv7Minter

__all__ = ["HostileClients", "HostileMix", "Target", "captured_event", "gzip_bomb"]

GIB = 1 << 30


@dataclass(frozen=True)
class HostileMix:
    slow_uploads: int = 200
    held_uploads: int = 100
    slow_headers: int = 100
    trickle_s: float = 2.0
    flood_per_s: float = 1000.0
    flood_workers: int = 4
    replay_per_s: float = 400.0
    replay_workers: int = 4
    bombs_per_s: float = 1.0
    oversize_workers: int = 2
    oversize_bytes: int = 64 * 1024 * 1024

    def connections(self) -> int:
        """Connections the mix holds open at most."""
        return (
            self.slow_uploads
            + self.held_uploads
            + self.slow_headers
            + self.flood_workers
            + self.replay_workers
            + self.oversize_workers
            + 1
        )


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str
    # A correctly signed request someone captured: body and X-Webhook-Signature.
    replay_body: bytes
    replay_signature: str
    bomb: bytes = field(repr=False)


def captured_event(reader_id: str = "hostile-bench-reader") -> bytes:
    """A passScanned event stamped now, for a scan no poll will ever see, at a reader no
    poll has seen: accepted once, it is left to polling (``webhook_deferred_total``) and
    published never, so replaying it adds no record to the scans topic."""
    now_ms = int(time.time() * 1000)
    scan_id = str(UUIDv7Minter().mint(at_ms=now_ms))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_ms / 1000)) + ".000Z"
    scan = {
        "id": scan_id,
        "type": "scan",
        "attributes": {
            "scanType": "nfc",
            "scanValue": "04A1B2",
            "validationType": "internalValidation",
            "status": "successful",
            "statusDetail": None,
            "scannedAt": stamp,
        },
        "relationships": {
            "pass": {"data": None},
            "reader": {"data": {"id": reader_id, "type": "reader"}},
        },
    }
    reader = {
        "id": reader_id,
        "type": "reader",
        "attributes": {"name": "Hostile bench", "readerType": "PassentryReader"},
    }
    event = {
        "data": {
            "id": str(uuid.uuid4()),
            "type": "webhook",
            "attributes": {"timeStamp": stamp, "webhookType": "passScanned"},
            "relationships": {"scan": {"data": {"id": scan_id, "type": "scan"}}},
        },
        "included": [scan, reader],
    }
    return json.dumps(event).encode()


@functools.cache
def gzip_bomb(inflated: int = GIB) -> bytes:
    """A gzip body of zeros that inflates to ``inflated`` bytes (1 GiB: about 1 MB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    parts = [packer.compress(zeros) for _ in range(inflated // len(zeros))]
    parts.append(packer.flush())
    return b"".join(parts)


class HostileClients:
    """The mix against ``target`` from a spawned process, until :meth:`stop`."""

    def __init__(self, target: Target, mix: HostileMix) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._results: multiprocessing.Queue[dict[str, dict[str, int]]] = ctx.Queue()
        self._process = ctx.Process(
            target=_main, args=(target, mix, self._stop, self._results), daemon=True
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self) -> HostileClients:
        self._process.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> dict[str, dict[str, int]]:
        """Outcomes by kind: {"flood": {"401": 5012, "reset": 3}, ...}."""
        self._stop.set()
        try:
            return self._results.get(timeout=timeout_s)
        finally:
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(10)

    def __enter__(self) -> HostileClients:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self._process.is_alive():
            self.stop()


def _main(target: Target, mix: HostileMix, stop: Event, results: Any) -> None:
    outcomes: dict[str, Counter[str]] = {}
    asyncio.run(_run(target, mix, stop, outcomes))
    results.put({kind: dict(counts) for kind, counts in outcomes.items()})


async def _run(
    target: Target, mix: HostileMix, stop: Event, outcomes: dict[str, Counter[str]]
) -> None:
    attack = _Attack(target, mix, outcomes)
    tasks = [
        *(attack.loop("slow_upload", attack.slow_upload) for _ in range(mix.slow_uploads)),
        *(attack.loop("held_upload", attack.held_upload) for _ in range(mix.held_uploads)),
        *(attack.loop("slow_headers", attack.slow_headers) for _ in range(mix.slow_headers)),
        *(
            attack.paced("flood", attack.forged, mix.flood_per_s / mix.flood_workers)
            for _ in range(mix.flood_workers)
        ),
        *(
            attack.paced("replay", attack.replay, mix.replay_per_s / mix.replay_workers)
            for _ in range(mix.replay_workers)
        ),
        attack.paced("bomb", attack.bomb, mix.bombs_per_s),
        *(attack.loop("oversize", attack.oversize) for _ in range(mix.oversize_workers)),
    ]
    running = [asyncio.create_task(t) for t in tasks]
    while not stop.is_set():
        await asyncio.sleep(0.1)
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


class _Attack:
    def __init__(self, target: Target, mix: HostileMix, outcomes: dict[str, Counter[str]]) -> None:
        self.t, self.mix, self.outcomes = target, mix, outcomes
        self.head = f"POST {target.path} HTTP/1.1\r\nHost: bridge\r\n".encode()
        self.forged_body = (
            b'{"data": {"id": "forged", "type": "webhook"}, "pad": "' + b"x" * 2000 + b'"}'
        )

    def count(self, kind: str, outcome: str) -> None:
        self.outcomes.setdefault(kind, Counter())[outcome] += 1

    async def loop(self, kind: str, attempt: Any) -> None:
        """``attempt`` over and over, each on a new connection."""
        while True:
            await self._once(kind, attempt, None)

    async def paced(self, kind: str, attempt: Any, per_s: float) -> None:
        """``attempt`` ``per_s`` times a second, on one connection while the server keeps
        it, a new one otherwise."""
        interval = 1.0 / per_s
        due = time.monotonic()
        conn: list[Any] = []
        while True:
            await self._once(kind, attempt, conn)
            due += interval
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due = max(due, time.monotonic() - 1.0)  # fallen behind: no catch-up burst

    async def _once(self, kind: str, attempt: Any, conn: list[Any] | None) -> None:
        writer = None
        try:
            if conn:
                reader, writer = conn
            else:
                reader, writer = await asyncio.open_connection(self.t.host, self.t.port)
                if conn is not None:
                    conn[:] = [reader, writer]
            outcome, keep = await attempt(reader, writer)
        except (ConnectionResetError, BrokenPipeError):
            outcome, keep = "reset", False
        except (OSError, asyncio.IncompleteReadError):
            outcome, keep = "closed", False
        self.count(kind, outcome)
        if not keep and writer is not None:
            writer.close()
            if conn:
                conn.clear()

    async def slow_upload(self, reader: Any, writer: Any) -> tuple[str, bool]:
        writer.write(
            self.head + b"X-Webhook-Signature: " + b"0" * 64 + b"\r\nContent-Length: 1000\r\n\r\n"
        )
        return await self._trickle(reader, writer, b"x")

    async def slow_headers(self, reader: Any, writer: Any) -> tuple[str, bool]:
        writer.write(self.head)
        return await self._trickle(reader, writer, b"X-Slow: 1\r\n")

    async def _trickle(self, reader: Any, writer: Any, piece: bytes) -> tuple[str, bool]:
        while True:
            await writer.drain()
            try:
                return await asyncio.wait_for(_status(reader), self.mix.trickle_s), False
            except TimeoutError:
                writer.write(piece)

    async def held_upload(self, reader: Any, writer: Any) -> tuple[str, bool]:
        declared = 256 * 1024
        writer.write(
            self.head + b"X-Webhook-Signature: " + b"0" * 64
            + b"\r\nContent-Length: %d\r\n\r\n" % declared + b"x" * (declared - 6 * 1024)
        )  # fmt: skip
        await writer.drain()
        return await _status(reader), False

    async def forged(self, reader: Any, writer: Any) -> tuple[str, bool]:
        body = self.forged_body
        writer.write(
            self.head + b"X-Webhook-Signature: " + b"f" * 64
            + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )  # fmt: skip
        return await _status(reader), False

    async def replay(self, reader: Any, writer: Any) -> tuple[str, bool]:
        body = self.t.replay_body
        writer.write(
            self.head + b"X-Webhook-Signature: " + self.t.replay_signature.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )  # fmt: skip
        status = await _status(reader)
        return status, status == "200"

    async def bomb(self, reader: Any, writer: Any) -> tuple[str, bool]:
        writer.write(
            self.head + b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
            b"X-Webhook-Signature: " + b"0" * 64 + b"\r\n\r\n"
        )
        chunks = (
            b"%x\r\n%s\r\n" % (len(piece), piece)
            for piece in (
                self.t.bomb[at : at + 64 * 1024] for at in range(0, len(self.t.bomb), 64 * 1024)
            )
        )
        return await self._stream(reader, writer, [*chunks, b"0\r\n\r\n"]), False

    async def _stream(self, reader: Any, writer: Any, pieces: Any) -> str:
        """Send ``pieces`` while reading the answer; stop sending once it came."""
        answer = asyncio.ensure_future(_status(reader))
        try:
            for piece in pieces:
                if answer.done():
                    break
                writer.write(piece)
                await writer.drain()
        except OSError:
            pass  # the server stopped reading: its answer tells why
        return await answer

    async def oversize(self, reader: Any, writer: Any) -> tuple[str, bool]:
        writer.write(
            self.head + b"Transfer-Encoding: chunked\r\nX-Webhook-Signature: " + b"0" * 64
            + b"\r\n\r\n"
        )  # fmt: skip
        chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
        pieces = (chunk for _ in range(self.mix.oversize_bytes // (64 * 1024)))
        return await self._stream(reader, writer, pieces), False


async def _status(reader: Any) -> str:
    """The status of the server's next answer (its body read too), or closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return "closed"
    lines = head.decode("latin-1").split("\r\n")
    size = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            size = int(value)
    if size:
        await reader.readexactly(size)
    return lines[0].split()[1]
