"""An httpx transport that makes its HTTP/1.1 exchanges with libcurl (pycurl).

The scans client asks for page after page, and httpx's own transport (httpcore and h11,
pure Python) spent more CPU on each 88 KB page than decoding its 100 scans did: its parser
runs for every header and every read, on a thread that must take the GIL back from the
publishing thread each time. libcurl does the whole exchange in C with the GIL released,
and the bridge's fetch threads spend about half the CPU a page (bench/README.md).

Only the transport changes. The requests are still ``httpx.Request`` objects and the
answers ``httpx.Response`` objects, which decode gzip themselves as before; failures are
httpx's ``TransportError`` and ``TimeoutException`` classes, so the client's handling and
its tests (which pass an ``httpx.MockTransport``) stay as they are. What httpx's transport
took from the environment, this one takes too: the CA settings (``SSL_CERT_FILE``,
``SSL_CERT_DIR``, else certifi's bundle) and the proxy (``HTTPS_PROXY``, ``HTTP_PROXY``,
``ALL_PROXY``, minus ``NO_PROXY``), both decided once, by the same rules.
"""

from __future__ import annotations

import io
import math
import os
import threading
from dataclasses import dataclass

import certifi
import httpx
import pycurl

__all__ = ["CurlTransport"]

# libcurl's error codes (curl/curl.h), by the httpx failure they are.
_TIMED_OUT = {28}
_CONNECT = {5, 6, 7, 35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 83, 90, 91}
_PROTOCOL = {1, 3, 8, 16, 61, 92}
_WRITE = {55}
# 18 (partial file), 52 (got nothing), 56 (recv error) and the rest: a failed read.


class CurlTransport(httpx.BaseTransport):
    """Requests on libcurl handles that every transport of the process with the same proxy
    and CA settings shares: each handle keeps its connections alive, so a source that takes
    over from another, or a second source on the same API, reuses them (and the CA bundle
    libcurl read for them) instead of starting over."""

    def __init__(self, proxy: httpx.Proxy | None = None) -> None:
        # "": not the environment's. httpx.Proxy keeps a URL's user and password apart.
        self._proxy = "" if proxy is None else str(proxy.url)
        proxy_auth = None if proxy is None else proxy.auth
        # As httpx chooses: SSL_CERT_FILE, else SSL_CERT_DIR alone, else certifi's bundle.
        cert_file, cert_dir = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
        ca_file = cert_file or (None if cert_dir else certifi.where())
        self._handles = _handles(
            _Settings(self._proxy, proxy_auth, ca_file, None if cert_file else cert_dir)
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = io.BytesIO()
        lines: list[bytes] = []
        curl = self._handles.take()
        try:
            curl.setopt(pycurl.URL, str(request.url))
            curl.setopt(pycurl.HTTPHEADER, _header_lines(request))
            curl.setopt(pycurl.WRITEFUNCTION, body.write)
            curl.setopt(pycurl.HEADERFUNCTION, lines.append)
            _set_method(curl, request)
            _set_timeouts(curl, request.extensions.get("timeout", {}))
            curl.perform()
        except pycurl.error as exc:
            raise _failure(exc, request, self._proxy) from None
        finally:
            self._handles.give(curl)
        status, reason, headers = _last_head(lines)
        return httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(body.getvalue()),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
            request=request,
        )

    def close(self) -> None:
        """Nothing to close: the handles, and their connections, serve the next transport."""


@dataclass(frozen=True)
class _Settings:
    proxy: str
    proxy_auth: tuple[str, str] | None
    ca_file: str | None
    ca_dir: str | None


class _Handles:
    """Idle handles of one setting; a request takes one (or a new one) and gives it back,
    so there are as many as requests ever ran at once."""

    def __init__(self, settings: _Settings) -> None:
        self._settings = settings
        self._idle: list[pycurl.Curl] = []
        self._lock = threading.Lock()

    def take(self) -> pycurl.Curl:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._new()

    def give(self, curl: pycurl.Curl) -> None:
        with self._lock:
            self._idle.append(curl)

    def __len__(self) -> int:
        return len(self._idle)

    def _new(self) -> pycurl.Curl:
        settings = self._settings
        curl = pycurl.Curl()
        # Threads: no SIGALRM for DNS timeouts.
        curl.setopt(pycurl.NOSIGNAL, 1)
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        # The body as sent: httpx.Response decodes gzip by Content-Encoding.
        curl.setopt(pycurl.HTTP_CONTENT_DECODING, 0)
        curl.setopt(pycurl.PROXY, settings.proxy)
        if settings.proxy_auth is not None:
            curl.setopt(pycurl.PROXYUSERNAME, settings.proxy_auth[0])
            curl.setopt(pycurl.PROXYPASSWORD, settings.proxy_auth[1])
        if settings.ca_file is None:
            curl.unsetopt(pycurl.CAINFO)  # no bundle: the directory alone
        else:
            curl.setopt(pycurl.CAINFO, settings.ca_file)
        if settings.ca_dir is not None:
            curl.setopt(pycurl.CAPATH, settings.ca_dir)
        # A page arrives in a few large writes, not many 16 KB ones.
        curl.setopt(pycurl.BUFFERSIZE, 256 * 1024)
        return curl


_pools: dict[_Settings, _Handles] = {}
_pools_lock = threading.Lock()


def _handles(settings: _Settings) -> _Handles:
    with _pools_lock:
        pool = _pools.get(settings)
        if pool is None:
            pool = _pools[settings] = _Handles(settings)
        return pool


def _header_lines(request: httpx.Request) -> list[bytes]:
    """Every header as httpx built it, Host and Accept included (they replace libcurl's
    own). Empty ones stop libcurl adding "Expect: 100-continue" and a form Content-Type."""
    lines = [name + b": " + value for name, value in request.headers.raw]
    lines.append(b"Expect:")
    if "content-type" not in request.headers:
        lines.append(b"Content-Type:")
    return lines


def _set_method(curl: pycurl.Curl, request: httpx.Request) -> None:
    content = request.read()
    if content:
        curl.setopt(pycurl.POSTFIELDS, content)
    else:
        curl.setopt(pycurl.HTTPGET, 1)  # no body, and none left from the last request
    # None: the method the body implies (GET, or POST with one).
    custom = None if request.method == ("POST" if content else "GET") else request.method
    curl.setopt(pycurl.CUSTOMREQUEST, custom)


def _set_timeouts(curl: pycurl.Curl, timeout: dict[str, float | None]) -> None:
    connect, read = timeout.get("connect"), timeout.get("read")
    curl.setopt(pycurl.CONNECTTIMEOUT_MS, 0 if connect is None else max(1, int(connect * 1000)))
    # A read timeout is a time without a byte: libcurl's low-speed limit of 1 byte/s.
    curl.setopt(pycurl.LOW_SPEED_LIMIT, 0 if read is None else 1)
    curl.setopt(pycurl.LOW_SPEED_TIME, 0 if read is None else max(1, math.ceil(read)))


def _last_head(lines: list[bytes]) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The status, reason and headers of the last response head (a proxy's CONNECT answer
    and any 1xx come before it)."""
    status, reason = 0, b""
    headers: list[tuple[bytes, bytes]] = []
    for line in lines:
        line = line.rstrip(b"\r\n")
        if line.startswith(b"HTTP/"):
            parts = line.split(b" ", 2)
            status = int(parts[1])
            reason = parts[2] if len(parts) > 2 else b""
            headers = []
        elif b":" in line:
            name, _, value = line.partition(b":")
            headers.append((name.strip(), value.strip()))
    return status, reason, headers


def _failure(exc: pycurl.error, request: httpx.Request, proxy: str) -> httpx.TransportError:
    code, message = exc.args[0], str(exc.args[1]) if len(exc.args) > 1 else ""
    text = f"{message} (libcurl error {code})"
    if proxy:  # a dead proxy looks like a dead API: say which way the request went
        text += f", through the proxy {proxy} that the environment names"
    if code in _TIMED_OUT:
        # libcurl says which phase ran out: "Connection timed out", "Resolving timed out".
        if "onnect" in message or "esolv" in message:
            return httpx.ConnectTimeout(text, request=request)
        return httpx.ReadTimeout(text, request=request)
    if code in _CONNECT:
        return httpx.ConnectError(text, request=request)
    if code in _PROTOCOL:
        return httpx.RemoteProtocolError(text, request=request)
    if code in _WRITE:
        return httpx.WriteError(text, request=request)
    return httpx.ReadError(text, request=request)
