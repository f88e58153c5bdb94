"""The receiver's HTTP/1.1 server: asyncio streams and the h11 parser, written for clients
that may be hostile, since anyone on the internet can reach it.

Every resource a client can hold is bounded, and none is held for long:

- connections: at most ``max_connections`` open; the next is answered 503 and closed;
- time: the first request's headers must arrive within ``header_timeout_s`` of the
  connection, a later one's within ``header_timeout_s`` of its first byte, and a body within
  ``body_timeout_s`` of its headers (408 and close); an idle connection is kept
  ``keepalive_s`` after an answer, and only when the handler says the request earned it;
- bytes: headers up to 16-32 KiB (431), a body up to ``max_body_bytes`` (413, before a byte
  of it is read when Content-Length says so, or as soon as a chunked body passes it). The
  body is kept exactly as received: nothing is decompressed here.

A request the handler refuses from its head alone (``Handler.screen``) is answered without
reading its body; the connection is then half-closed and what the client still sends is
read and dropped for a moment, so the client sees the answer rather than a reset. No
``Server`` header is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import socket
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

import h11

from bridge.errors import ConfigError, ListenError

__all__ = ["Answer", "Handler", "HttpServer", "RequestHead", "ServerLimits", "ensure_file_limit"]

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
_READ_BYTES = 64 * 1024
# After an early refusal: how long, and how much, of a body still arriving is read and
# dropped before the connection is closed. Enough for any body a real client sends; an
# attacker's bigger one is cut off (with a reset) instead of costing more reads.
_LINGER_S = 1.0
_LINGER_BYTES = 256 * 1024
# File descriptors left for everything but webhook connections: the Kafka clients (a few
# sockets per broker for each of several clients per source), the status server, files.
_RESERVED_FDS = 256


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_connections: int
    header_timeout_s: float
    body_timeout_s: float
    keepalive_s: float
    max_body_bytes: int


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    # The path without its query string.
    path: str
    # Lower-case names; a repeated header's values joined with ", ".
    headers: dict[str, str]
    remote: str | None


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    errors: tuple[str, ...] = ()
    # Keep the connection for the client's next request (only for a verified sender).
    keep_alive: bool = False

    def body(self) -> bytes:
        if self.errors:
            return json.dumps({"errors": list(self.errors)}).encode()
        return b'{"status":"ok"}'


class Handler(Protocol):
    def screen(self, head: RequestHead) -> Answer | None:
        """An answer from the head alone (the body is then never read), or None."""

    async def handle(self, head: RequestHead, body: bytes) -> Answer: ...


class HttpServer:
    """Serves ``handler`` on ``host:port``; ``report(outcome)`` counts what the server itself
    answers: too_many_connections, timeout, too_large, bad_request."""

    def __init__(
        self,
        host: str,
        port: int,
        limits: ServerLimits,
        handler: Handler,
        report: Callable[[str], None],
    ) -> None:
        self._host, self._port = host, port
        self._limits = limits
        self._handler = handler
        self._report = report
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        # Those whose request is with the handler (read, verified, maybe waiting on Kafka).
        self._answering: set[asyncio.Task[None]] = set()

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def start(self) -> int:
        """Listen; the port bound (the OS's choice when 0 was asked for)."""
        self._server = await asyncio.start_server(
            self._connection, self._host, self._port, limit=_READ_BYTES
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop listening, drop idle and unfinished requests at once, and give the ones being
        answered ``grace_s`` to finish (an event on its way to Kafka gets its answer)."""
        if self._server is not None:
            self._server.close()
        for task in self._connections - self._answering:
            task.cancel()
        if self._answering:
            await asyncio.wait(self._answering, timeout=grace_s)
        for task in self._connections:
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or len(self._connections) >= self._limits.max_connections:
            self._report("too_many_connections")
            writer.write(_raw(503, "too many connections; retry"))
            writer.close()
            return
        self._connections.add(task)
        try:
            await self._serve(reader, writer, task)
        except (ConnectionError, TimeoutError, h11.LocalProtocolError):
            pass  # the client went, or stalled while we answered: nothing more to say
        except asyncio.CancelledError:
            # close() ends the connection: the task ends as if it had finished (asyncio's
            # stream server would log a cancelled one as an error).
            pass
        except Exception:
            log.exception("webhook connection failed; closed")
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, task: asyncio.Task[None]
    ) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        peer = writer.get_extra_info("peername")
        remote = str(peer[0]) if isinstance(peer, tuple) else None
        # The first request's headers are due from the connection's start: a client that
        # connects and sends nothing is a slow client too.
        idle_s: float | None = None
        while True:
            head = await self._read_head(conn, reader, writer, idle_s, remote)
            if head is None:
                return
            early = self._screen(head)
            if early is not None:
                await self._send(conn, writer, early, close=True)
                await _linger(reader, writer)
                return
            body = await self._read_body(conn, reader, writer)
            if isinstance(body, Answer):
                await self._send(conn, writer, body, close=True)
                if body.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
                    await _linger(reader, writer)
                return
            if body is None:
                return
            self._answering.add(task)
            try:
                answer = await self._handler.handle(head, body)
            finally:
                self._answering.discard(task)
            keep = answer.keep_alive and self._limits.keepalive_s > 0
            await self._send(conn, writer, answer, close=not keep)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
            idle_s = self._limits.keepalive_s

    def _screen(self, head: RequestHead) -> Answer | None:
        length = head.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._limits.max_body_bytes:
            self._report("too_large")
            return Answer(413, (f"body above {self._limits.max_body_bytes} bytes",))
        return self._handler.screen(head)

    async def _read_head(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        idle_s: float | None,
        remote: str | None,
    ) -> RequestHead | None:
        """The next request's head; None when the connection is over (closed by the client,
        idle past the keep-alive, too slow, or not HTTP, each answered as it deserves)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._limits.header_timeout_s
        try:
            event = conn.next_event()
            if event is h11.NEED_DATA and idle_s is not None:
                # Between requests: the keep-alive, then the header deadline from the
                # first byte of the next request.
                try:
                    async with asyncio.timeout(idle_s):
                        data = await reader.read(MAX_HEAD_BYTES)
                except TimeoutError:
                    return None
                conn.receive_data(data)
                deadline = loop.time() + self._limits.header_timeout_s
                event = conn.next_event()
            async with asyncio.timeout_at(deadline):
                while event is h11.NEED_DATA:
                    # h11 measures an unfinished head only between reads: small reads
                    # keep a long one from slipping through in one piece.
                    conn.receive_data(await reader.read(MAX_HEAD_BYTES))
                    event = conn.next_event()
        except TimeoutError:
            self._report("timeout")
            writer.write(_raw(408, "request headers too slow"))
            return None
        except h11.RemoteProtocolError as exc:
            if reader.at_eof():
                return None  # the client left half way: nobody to answer
            self._report("bad_request")
            writer.write(_raw(exc.error_status_hint, "not a valid HTTP/1.1 request"))
            return None
        if not isinstance(event, h11.Request):
            return None  # ConnectionClosed, or a PAUSED connection
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        target = event.target.decode("latin-1")
        return RequestHead(event.method.decode("latin-1"), target.split("?", 1)[0], headers, remote)

    async def _read_body(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes | Answer | None:
        """The whole body, or the answer that refuses it, or None if the client left."""
        if conn.they_are_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        body = bytearray()
        limit = self._limits.max_body_bytes
        try:
            async with asyncio.timeout(self._limits.body_timeout_s):
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await reader.read(_READ_BYTES))
                    elif isinstance(event, h11.Data):
                        if len(body) + len(event.data) > limit:
                            self._report("too_large")
                            return Answer(413, (f"body above {limit} bytes",))
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        return bytes(body)
                    else:
                        return None
        except TimeoutError:
            self._report("timeout")
            return Answer(408, ("request body too slow",))
        except h11.RemoteProtocolError:
            if reader.at_eof():
                return None  # the client left half way: nobody to answer
            self._report("bad_request")
            return Answer(400, ("not a valid HTTP/1.1 body",))

    async def _send(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, answer: Answer, *, close: bool
    ) -> None:
        body = answer.body()
        headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
        if close:
            headers.append(("connection", "close"))
        reason = HTTPStatus(answer.status).phrase.encode()
        head = conn.send(h11.Response(status_code=answer.status, headers=headers, reason=reason))
        data = conn.send(h11.Data(data=body))
        end = conn.send(h11.EndOfMessage())
        # One write, one send(2): under a flood, each answer's syscalls add up.
        writer.write(b"".join(part for part in (head, data, end) if part))
        # A client that does not read its answer holds the connection no longer than this.
        async with asyncio.timeout(self._limits.body_timeout_s):
            await writer.drain()


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then drop what the client still sends for a moment: closing with unread
    bytes would reset the connection, and the client might lose the answer with it."""
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()
    dropped = 0
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(_LINGER_S):
            while dropped < _LINGER_BYTES:
                data = await reader.read(_READ_BYTES)
                if not data:
                    return
                dropped += len(data)


def _raw(status: int, error: str) -> bytes:
    """A closing answer written without h11, for when no request was parsed."""
    body = json.dumps({"errors": [error]}).encode()
    phrase = HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


def ensure_file_limit(max_connections: int) -> None:
    """Make sure the process may open ``max_connections`` sockets and still have room for
    the rest, raising its soft limit towards the hard one if need be. Raises ConfigError."""
    needed = max_connections + _RESERVED_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard == resource.RLIM_INFINITY or hard >= needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return
    raise ConfigError(
        f"BRIDGE_WEBHOOK_MAX_CONNECTIONS: {max_connections} connections and the"
        f" {_RESERVED_FDS} file descriptors kept for Kafka and the rest need {needed}, but"
        f" this process may open only {hard} (ulimit -n): lower it or raise the limit"
    )


def ensure_port_free(host: str, port: int, setting: str) -> None:
    """Fail before any Kafka client is made when the port cannot be had, naming the setting.
    The real bind still reports a port taken in between; asyncio binds with SO_REUSEADDR
    too, so this asks the same question. Raises ListenError."""
    if port == 0:
        return
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise ListenError(setting, host, port, exc) from None
