from __future__ import annotations

import ipaddress
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bridge.passentry.http import ApiHttp, environment_proxy

# What PassEntryClient gives: httpx.Client adds its own User-Agent when none is given.
_HEADERS = {"Authorization": "Bearer tok", "Accept": "application/json", "User-Agent": "ua/1"}
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def make(
    transport: httpx.BaseTransport | None = None, base: str = "https://api.example.test/"
) -> ApiHttp:
    return ApiHttp(
        base,
        _HEADERS,
        httpx.Timeout(7.0, connect=2.0),
        transport=transport,
    )


def test_asks_what_httpx_client_would() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b'{"data": []}')

    params = {"createdAfter": "2025-01-01T00:00:00.000+01:00", "page": "2", "q": "a b/c"}
    response = make(httpx.MockTransport(answer)).request("GET", "/api/v1/scans", params)
    assert response.content == b'{"data": []}'
    assert response.request is seen[0]
    # The same request line and headers, in the same order, as the client sent before.
    client = httpx.Client(
        base_url="https://api.example.test/",
        headers=_HEADERS,
    )
    before = client.build_request("GET", "/api/v1/scans", params=params)
    assert seen[0].url == before.url
    assert seen[0].headers.raw == before.headers.raw
    assert seen[0].headers["accept-encoding"] == "gzip, deflate"
    assert seen[0].extensions["timeout"] == {"connect": 2.0, "read": 7.0, "write": 7.0, "pool": 7.0}


def test_a_body_and_its_headers_join_the_defaults() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, content=b"{}")

    make(httpx.MockTransport(answer)).request(
        "POST", "/api/v1/x", {}, content=b'{"a":1}', headers={"Content-Type": "application/json"}
    )
    assert seen[0].url == "https://api.example.test/api/v1/x"
    assert seen[0].content == b'{"a":1}'
    assert seen[0].headers["content-type"] == "application/json"
    assert seen[0].headers["authorization"] == "Bearer tok"


def test_gzip_answers_are_decoded() -> None:
    import gzip

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=gzip.compress(b'{"data": []}'), headers={"Content-Encoding": "gzip"}
        )

    assert make(httpx.MockTransport(answer)).request("GET", "/", {}).content == b'{"data": []}'


@pytest.mark.parametrize(
    ("env", "url", "expected"),
    [
        ({}, "https://api.example.test", None),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://api.example.test", "http://proxy:3128"),
        ({"https_proxy": "http://proxy:3128"}, "http://api.example.test", None),
        (
            {"HTTP_PROXY": "http://p:1", "ALL_PROXY": "http://all:2"},
            "https://a.test",
            "http://all:2",
        ),
        (
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.test"},
            "https://api.example.test",
            None,
        ),
        (
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "other.test"},
            "https://api.example.test",
            "http://p:1",
        ),
    ],
)
def test_environment_proxy(
    no_proxy_env: pytest.MonkeyPatch, env: dict[str, str], url: str, expected: str | None
) -> None:
    for name, value in env.items():
        no_proxy_env.setenv(name, value)
    proxy = environment_proxy(url)
    assert (None if proxy is None else str(proxy.url)) == expected


class _ForwardProxy(BaseHTTPRequestHandler):
    """A plain-HTTP forward proxy that answers for every origin itself."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.requestline)
        body = b'{"data": [], "via": "proxy"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def forward_proxy() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ForwardProxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_requests_go_through_the_environments_proxy(
    no_proxy_env: pytest.MonkeyPatch, forward_proxy: str
) -> None:
    # The origin does not exist: only the proxy can answer.
    no_proxy_env.setenv("HTTP_PROXY", forward_proxy)
    http = make(base="http://passentry.invalid")
    try:
        response = http.request("GET", "/api/v1/scans", {"page": "1"})
    finally:
        http.close()
    assert response.status_code == 200
    assert response.content == b'{"data": [], "via": "proxy"}'
    assert _ForwardProxy.seen[-1] == "GET http://passentry.invalid/api/v1/scans?page=1 HTTP/1.1"


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey]
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
    )
    if subject == issuer[0]:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    else:
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    return builder.sign(issuer[1], hashes.SHA256())


@pytest.fixture
def https_origin(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on 127.0.0.1 whose certificate a CA of its own signed; the CA's
    PEM file beside it."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test CA", ca_key, ("test CA", ca_key))
    cert = _certificate("127.0.0.1", key, ("test CA", ca_key))
    ca_file, chain = tmp_path / "ca.pem", tmp_path / "server.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ForwardProxy)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", ca_file
    server.shutdown()
    server.server_close()


def test_tls_trusts_ssl_cert_file_or_ssl_cert_dir_and_otherwise_certifi(
    no_proxy_env: pytest.MonkeyPatch, https_origin: tuple[str, Path], tmp_path: Path
) -> None:
    url, ca_file = https_origin
    no_proxy_env.delenv("SSL_CERT_DIR", raising=False)
    no_proxy_env.delenv("SSL_CERT_FILE", raising=False)

    def status() -> int:
        http = make(base=url)
        try:
            return http.request("GET", "/api/v1/scans", {}).status_code
        finally:
            http.close()

    # certifi's bundle does not hold the test CA: the certificate is refused.
    with pytest.raises(httpx.ConnectError, match="unable to get local issuer certificate"):
        status()

    no_proxy_env.setenv("SSL_CERT_FILE", str(ca_file))
    assert status() == 200

    # A directory of CA files named by their subject hash, as `openssl rehash` leaves it.
    no_proxy_env.delenv("SSL_CERT_FILE")
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    subject_hash = subprocess.run(
        ["openssl", "x509", "-noout", "-subject_hash", "-in", str(ca_file)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (cert_dir / f"{subject_hash}.0").write_bytes(ca_file.read_bytes())
    no_proxy_env.setenv("SSL_CERT_DIR", str(cert_dir))
    assert status() == 200
