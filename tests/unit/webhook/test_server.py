"""The receiver's HTTP server against clients that misbehave, over raw sockets: slow
headers and bodies, too many connections, oversized heads and bodies, keep-alive only for
verified senders, and answers the client still sees when refused before its body is read."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from bridge.webhook.receiver import WebhookReceiver
from bridge.webhook.server import ensure_file_limit
from tests.support import sample
from tests.unit.webhook.webhook_support import ListWriter, event_body, receiver_for, sign

PATH = b"/webhooks/passentry/gates"


@pytest.fixture
def quick(writer: ListWriter) -> Iterator[WebhookReceiver]:
    """Half-second deadlines, a 1 s keep-alive and four connections at most."""
    server = receiver_for(
        writer, header_timeout_s=0.5, body_timeout_s=0.5, keepalive_s=1.0, max_connections=4
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def connect(receiver: WebhookReceiver) -> socket.socket:
    return socket.create_connection(("127.0.0.1", receiver.port), timeout=10)


def request(body: bytes, signature: str | None, *extra: bytes, length: int | None = None) -> bytes:
    head = [b"POST " + PATH + b" HTTP/1.1", b"Host: bridge", b"Content-Type: application/json"]
    if signature is not None:
        head.append(b"X-Webhook-Signature: " + signature.encode())
    head.append(b"Content-Length: %d" % (len(body) if length is None else length))
    head.extend(extra)
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers, body; raises if the connection closes before it.
    Reads byte by byte past the head, so a pipelined next answer stays in the socket."""
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {data!r}")
        data += chunk
    lines = data.decode("latin-1").strip().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    body = b""
    size = int(headers.get("content-length", "0"))
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        if not chunk:
            raise ConnectionError(f"closed inside an answer: {data + body!r}")
        body += chunk
    return status, headers, body


def closed(sock: socket.socket) -> bool:
    """The server closed the connection (EOF, or a reset) within the socket's timeout."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def outcome(receiver: WebhookReceiver, name: str) -> float:
    return sample(receiver._metrics, "passentry_bridge_webhook_requests_total", outcome=name)


def wait_until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_headers_that_never_finish_are_408_and_closed(quick: WebhookReceiver) -> None:
    with connect(quick) as sock:
        started = time.monotonic()
        sock.sendall(b"POST " + PATH + b" HTTP/1.1\r\nHost: bri")
        status, headers, _ = read_answer(sock)
        assert status == 408
        assert headers["connection"] == "close"
        assert closed(sock)
        assert 0.4 < time.monotonic() - started < 5
    assert outcome(quick, "timeout") == 1


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(
    quick: WebhookReceiver,
) -> None:
    with connect(quick) as sock:
        status, _, _ = read_answer(sock)
        assert status == 408
        assert closed(sock)


def test_trickled_headers_do_not_extend_the_deadline(quick: WebhookReceiver) -> None:
    with connect(quick) as sock:
        started = time.monotonic()
        for _ in range(30):
            try:
                sock.sendall(b"X-Slow: 1\r\n" if _ else b"POST " + PATH + b" HTTP/1.1\r\n")
            except OSError:
                break
            time.sleep(0.1)  # the slow client's own pace, not a wait for the server
        status, _, _ = read_answer(sock)
        assert status == 408
        assert time.monotonic() - started < 3


def test_a_body_that_never_finishes_is_408(quick: WebhookReceiver, writer: ListWriter) -> None:
    body = event_body()
    with connect(quick) as sock:
        sock.sendall(request(body[:10], sign(body), length=len(body)))
        status, headers, answer = read_answer(sock)
        assert status == 408
        assert b"too slow" in answer
        assert headers["connection"] == "close"
    assert writer.events == []


def test_connections_beyond_the_cap_are_503_and_freed_slots_serve_again(
    quick: WebhookReceiver, writer: ListWriter
) -> None:
    held = [connect(quick) for _ in range(4)]
    try:
        wait_until(lambda: quick._server.open_connections == 4)
        with connect(quick) as extra:
            status, headers, _ = read_answer(extra)
            assert status == 503
            assert headers["connection"] == "close"
        assert outcome(quick, "too_many_connections") == 1
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: quick._server.open_connections == 0)
    body = event_body()
    with connect(quick) as sock:
        sock.sendall(request(body, sign(body)))
        assert read_answer(sock)[0] == 200


def test_a_verified_sender_keeps_its_connection_until_the_keepalive(
    quick: WebhookReceiver, writer: ListWriter
) -> None:
    with connect(quick) as sock:
        for _ in range(3):
            body = event_body()
            sock.sendall(request(body, sign(body)))
            status, headers, _ = read_answer(sock)
            assert status == 200
            assert "connection" not in headers
        started = time.monotonic()
        assert closed(sock)  # idle past the 1 s keep-alive
        assert 0.8 < time.monotonic() - started < 5
    assert len(writer.events) == 3


def test_pipelined_requests_are_answered_in_order(
    quick: WebhookReceiver, writer: ListWriter
) -> None:
    bodies = [event_body() for _ in range(3)]
    with connect(quick) as sock:
        sock.sendall(b"".join(request(b, sign(b)) for b in bodies))
        assert [read_answer(sock)[0] for _ in bodies] == [200, 200, 200]
    assert [b for _, b in writer.events] == bodies


@pytest.mark.parametrize("signature", [None, "0" * 64])
def test_a_refused_request_closes_its_connection(
    quick: WebhookReceiver, signature: str | None
) -> None:
    body = event_body()
    with connect(quick) as sock:
        sock.sendall(request(body, signature))
        status, headers, _ = read_answer(sock)
        assert status == 401
        assert headers["connection"] == "close"
        assert closed(sock)


def test_a_declared_oversized_body_is_refused_before_it_is_sent(quick: WebhookReceiver) -> None:
    with connect(quick) as sock:
        sock.sendall(request(b"", "0" * 64, length=10 * 1024 * 1024))
        status, headers, _ = read_answer(sock)
        assert status == 413
        assert headers["connection"] == "close"


def test_a_chunked_body_is_cut_off_past_the_limit(
    quick: WebhookReceiver, writer: ListWriter
) -> None:
    head = (
        b"POST " + PATH + b" HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n"
        b"X-Webhook-Signature: " + b"0" * 64 + b"\r\n\r\n"
    )
    chunk = b"%x\r\n" % 65536 + b"x" * 65536 + b"\r\n"
    with connect(quick) as sock:
        sock.sendall(head)
        for _ in range(8):  # 512 KiB, twice the limit
            sock.sendall(chunk)
        status, _, _ = read_answer(sock)
        assert status == 413
    assert writer.events == []
    assert outcome(quick, "too_large") == 1


def test_a_chunked_signed_event_is_accepted(quick: WebhookReceiver, writer: ListWriter) -> None:
    body = event_body()
    half = len(body) // 2
    head = (
        b"POST " + PATH + b" HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n"
        b"X-Webhook-Signature: " + sign(body).encode() + b"\r\n\r\n"
    )
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]))
    with connect(quick) as sock:
        sock.sendall(head + chunks + b"0\r\n\r\n")
        assert read_answer(sock)[0] == 200
    assert writer.events == [("gates", body)]


def test_a_head_past_32_kib_is_431(quick: WebhookReceiver) -> None:
    with connect(quick) as sock:
        sock.sendall(request(b"{}", None, b"X-Pad: " + b"p" * 40_000))
        assert read_answer(sock)[0] == 431


def test_garbage_is_400(quick: WebhookReceiver) -> None:
    with connect(quick) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n")
        assert read_answer(sock)[0] == 400
    assert outcome(quick, "bad_request") == 1


def test_a_gzip_bomb_is_refused_from_its_head_and_its_sender_still_sees_the_415(
    quick: WebhookReceiver, writer: ListWriter
) -> None:
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    bomb = packer.compress(b"\0" * (64 * 1024 * 1024)) + packer.flush()
    head = (
        b"POST " + PATH + b" HTTP/1.1\r\nHost: b\r\nContent-Encoding: gzip\r\n"
        b"Transfer-Encoding: chunked\r\nX-Webhook-Signature: " + sign(bomb).encode() + b"\r\n\r\n"
    )
    with connect(quick) as sock:
        sock.sendall(head + b"%x\r\n" % len(bomb) + bomb + b"\r\n0\r\n\r\n")
        status, headers, _ = read_answer(sock)
        assert status == 415
        assert headers["connection"] == "close"
    assert writer.events == []


def test_the_file_limit_must_hold_the_connection_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    from bridge.errors import ConfigError

    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 1024))
    with pytest.raises(ConfigError, match="BRIDGE_WEBHOOK_MAX_CONNECTIONS: 5000"):
        ensure_file_limit(5000)
    ensure_file_limit(512)  # 512 + the reserve fit in 1024
    raised: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 65536))
    monkeypatch.setattr(resource, "setrlimit", lambda _, limits: raised.append(limits))
    ensure_file_limit(5000)
    assert raised == [(5256, 65536)]
