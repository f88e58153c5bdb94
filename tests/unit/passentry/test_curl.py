"""libcurl's transport against a real HTTP server on 127.0.0.1: what goes on the wire, what
comes back as an httpx.Response, connections kept alive, and failures as httpx's."""

from __future__ import annotations

import base64
import gzip
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pycurl
import pytest

from bridge.passentry.curl import CurlTransport, _failure, _last_head
from bridge.passentry.http import ApiHttp

_HEADERS = {"Authorization": "Bearer tok", "Accept": "application/json", "User-Agent": "ua/1"}


class _Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    seen: ClassVar[list[dict[str, Any]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append(
            {
                "line": self.requestline,
                "headers": list(self.headers.items()),
                "body": body,
                "port": self.client_address[1],
            }
        )
        if self.path.startswith("/slow"):
            time.sleep(2.5)
        if self.path.startswith("/cut"):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"only this")
            self.close_connection = True
            return
        payload = b'{"data": [], "n": %d}' % len(self.seen)
        gzipped = self.path.startswith("/gzip")
        if gzipped:
            payload = gzip.compress(payload)
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Rate-Limit-Remaining", "7")
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def origin() -> Iterator[str]:
    _Origin.seen.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def make(base: str, read_s: float = 7.0) -> ApiHttp:
    return ApiHttp(base, _HEADERS, httpx.Timeout(read_s, connect=2.0))


def test_the_request_on_the_wire_is_the_one_httpx_built(origin: str, no_proxy: None) -> None:
    http = make(origin)
    try:
        response = http.request("GET", "/api/v1/scans", {"page": "2", "q": "a b/c"})
    finally:
        http.close()
    seen = _Origin.seen[-1]
    assert seen["line"] == "GET /api/v1/scans?page=2&q=a+b%2Fc HTTP/1.1"
    # Exactly httpx's headers: libcurl adds none of its own (it writes Connection last).
    assert sorted(seen["headers"]) == sorted(
        (name.decode(), value.decode()) for name, value in response.request.headers.raw
    )
    assert len(seen["headers"]) == 6
    assert response.status_code == 200
    assert response.reason_phrase == "OK"
    assert response.http_version == "HTTP/1.1"
    assert response.headers["x-rate-limit-remaining"] == "7"
    assert response.content == b'{"data": [], "n": 1}'


def test_a_post_sends_its_body_and_no_expect_header(origin: str, no_proxy: None) -> None:
    http = make(origin)
    try:
        body = b'{"url": "https://hooks.example/x"}' * 100  # above libcurl's 1 KB for Expect
        posted = http.request(
            "POST", "/api/v1/webhook-subscriptions", {}, content=body,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        deleted = http.request("DELETE", "/api/v1/webhook-subscriptions/7", {})
        got = http.request("GET", "/api/v1/scans", {})
    finally:
        http.close()
    post, delete, get = _Origin.seen
    assert posted.status_code == 201
    assert post["line"].startswith("POST ")
    assert post["body"] == body
    assert ("Content-Type", "application/json") in post["headers"]
    assert not [h for h in post["headers"] if h[0].lower() == "expect"]
    # Nothing libcurl would add for a request without a body either.
    assert sorted(h[0] for h in delete["headers"]) == sorted(
        ["Host", "Accept-Encoding", "Connection", "Authorization", "Accept", "User-Agent"]
    )
    assert (deleted.status_code, delete["line"]) == (
        200, "DELETE /api/v1/webhook-subscriptions/7 HTTP/1.1",
    )  # fmt: skip
    # The handle that posted asks with GET again, with no body.
    assert (got.status_code, get["line"], get["body"]) == (200, "GET /api/v1/scans HTTP/1.1", b"")


def test_gzip_is_decoded_by_httpx_as_before(origin: str, no_proxy: None) -> None:
    http = make(origin)
    try:
        response = http.request("GET", "/gzip", {})
    finally:
        http.close()
    assert response.headers["content-encoding"] == "gzip"
    assert response.content == b'{"data": [], "n": 1}'


def test_connections_are_kept_alive_across_threads(origin: str, no_proxy: None) -> None:
    http = make(origin)
    bodies: list[bytes] = []

    def fetch() -> None:
        for _ in range(10):
            bodies.append(http.request("GET", "/api/v1/scans", {}).content)

    try:
        threads = [threading.Thread(target=fetch) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        http.close()
    assert len(bodies) == 40
    assert all(body.startswith(b'{"data": []') for body in bodies)
    # Forty requests on at most four connections, one per request at a time.
    assert len({seen["port"] for seen in _Origin.seen}) <= 4


class _AuthProxy(BaseHTTPRequestHandler):
    """A forward proxy that answers for every origin, once the client has logged in."""

    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        login = self.headers.get("Proxy-Authorization")
        self.seen.append(login)
        expected = "Basic " + base64.b64encode(b"us@er:p:ss").decode()
        self.send_response(200 if login == expected else 407)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_proxy_urls_user_and_password_log_in_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AuthProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for name in ("https_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
            monkeypatch.delenv(name.upper(), raising=False)
        port = server.server_address[1]
        monkeypatch.setenv("HTTP_PROXY", f"http://us%40er:p%3Ass@127.0.0.1:{port}")
        http = make("http://passentry.invalid")
        assert http.request("GET", "/api/v1/scans", {}).status_code == 200
        assert _AuthProxy.seen[-1] is not None
        # Without them, the proxy refuses.
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        assert make("http://passentry.invalid").request("GET", "/", {}).status_code == 407
    finally:
        server.shutdown()
        server.server_close()
    # A proxy that is gone: the error names it, and not its password.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        gone = f"127.0.0.1:{closed.getsockname()[1]}"
    monkeypatch.setenv("HTTP_PROXY", f"http://us%40er:p%3Ass@{gone}")
    with pytest.raises(httpx.ConnectError) as failed:
        make("http://passentry.invalid").request("GET", "/", {})
    assert f"through the proxy http://{gone} that the environment names" in str(failed.value)
    assert "p:ss" not in str(failed.value)
    assert "p%3Ass" not in str(failed.value)


def test_failures_are_httpxs(origin: str, no_proxy: None) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    refused = make(refused_url)
    with pytest.raises(httpx.ConnectError, match="libcurl error 7"):
        refused.request("GET", "/api/v1/scans", {})
    refused.close()

    http = make(origin, read_s=1.0)
    try:
        with pytest.raises(httpx.ReadTimeout, match="libcurl error 28"):
            http.request("GET", "/slow", {})
        with pytest.raises(httpx.ReadError, match="libcurl error 18"):
            http.request("GET", "/cut", {})
        # The handle serves the next request after both.
        assert http.request("GET", "/api/v1/scans", {}).status_code == 200
    finally:
        http.close()


@pytest.mark.parametrize(
    ("code", "message", "error"),
    [
        (28, "Connection timed out after 2001 milliseconds", httpx.ConnectTimeout),
        (28, "Resolving timed out after 2000 milliseconds", httpx.ConnectTimeout),
        (
            28,
            "Operation too slow. Less than 1 bytes/sec transferred the last 7 seconds",
            httpx.ReadTimeout,
        ),
        (6, "Could not resolve host: api.passentry.invalid", httpx.ConnectError),
        (5, "Could not resolve proxy: proxy.invalid", httpx.ConnectError),
        (60, "SSL certificate problem", httpx.ConnectError),
        (52, "Empty reply from server", httpx.ReadError),
        (8, "Weird server reply", httpx.RemoteProtocolError),
        (55, "Send failure: Broken pipe", httpx.WriteError),
    ],
)
def test_each_libcurl_error_is_the_httpx_error_the_client_handles(
    code: int, message: str, error: type[httpx.TransportError]
) -> None:
    request = httpx.Request("GET", "https://api.passentry.invalid/api/v1/scans")
    failure = _failure(pycurl.error(code, message), request, "")
    assert type(failure) is error
    assert str(failure) == f"{message} (libcurl error {code})"
    assert failure.request is request
    via = _failure(pycurl.error(code, message), request, "http://proxy:3128")
    assert str(via).endswith(", through the proxy http://proxy:3128 that the environment names")


def test_the_last_head_counts_after_a_proxys_connect_and_a_100() -> None:
    lines = [
        b"HTTP/1.1 200 Connection established\r\n",
        b"Proxy-Agent: test\r\n",
        b"\r\n",
        b"HTTP/1.1 100 Continue\r\n",
        b"\r\n",
        b"HTTP/1.1 429 Too Many Requests\r\n",
        b"x-rate-limit-retry-after: 0.5\r\n",
        b"Content-Type: application/json\r\n",
        b"\r\n",
    ]
    assert _last_head(lines) == (
        429,
        b"Too Many Requests",
        [(b"x-rate-limit-retry-after", b"0.5"), (b"Content-Type", b"application/json")],
    )


def test_transports_of_one_setting_share_their_handles(
    origin: str, no_proxy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = CurlTransport()
    before = len(first._handles)  # the process's: earlier tests left some
    http = ApiHttp(origin, _HEADERS, httpx.Timeout(5.0), transport=first)
    threads = [
        threading.Thread(target=http.request, args=("GET", "/api/v1/scans", {})) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    http.close()
    idle = len(first._handles)
    assert max(before, 1) <= idle <= before + 3
    # A client made later (a source taken over, say) reuses them and their connections.
    later = ApiHttp(origin, _HEADERS, httpx.Timeout(5.0), transport=CurlTransport())
    assert later.request("GET", "/api/v1/scans", {}).status_code == 200
    assert len(first._handles) == idle
    assert _Origin.seen[-1]["port"] in {seen["port"] for seen in _Origin.seen[:-1]}
    # Other CA settings: handles of their own.
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
    assert CurlTransport()._handles is not first._handles
