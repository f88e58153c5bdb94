"""/metrics, /healthz, /readyz and /status on a small threaded HTTP server."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from bridge.errors import ListenError
from bridge.ops.exposition import TextExposition
from bridge.ops.health import Probe, ProcessHealth
from bridge.ops.metrics import Metrics

__all__ = ["StatusServer"]


class StatusServer:
    def __init__(self, host: str, port: int, metrics: Metrics, health: ProcessHealth) -> None:
        exposition = TextExposition(metrics.registry)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    metrics.ready.set(1 if health.readiness().ok else 0)
                    self._send(200, exposition.render(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._verdict(health.liveness())
                elif path == "/readyz":
                    self._verdict(health.readiness())
                elif path == "/status":
                    # For `passentry-bridge status`: what this process knows of its sources.
                    sources = {sid: asdict(r) for sid, r in health.reports().items()}
                    body = json.dumps({"sources": sources}).encode()
                    self._send(200, body, "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _verdict(self, verdict: Probe) -> None:
                body = {"status": "ok" if verdict.ok else "fail", "reasons": list(verdict.reasons)}
                self._send(
                    200 if verdict.ok else 503, json.dumps(body).encode(), "application/json"
                )

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # probes every few seconds would drown the real log

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ListenError("BRIDGE_HTTP_PORT", host, port, exc) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.ident is not None:
            # shutdown() waits for serve_forever: only once it ran.
            self._server.shutdown()
        self._server.server_close()
