"""A real Jaeger (v1.75, ``cmd/jaeger``: OTLP receiver, in-memory storage and the query API in
one process) for the tracing test, built by scripts/build-jaeger and asked through its HTTP
query API, as a person would with ``curl``."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.eos_harness import ROOT
from tests.integration.harness import wait_for
from tests.support import free_port

# A cold build on 2 busy cores: CI starts it in the background first (.ci/run).
BUILD_TIMEOUT_S = 1500

_CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:{health}
  jaeger_query:
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


@dataclass(frozen=True)
class Jaeger:
    # Where the bridge exports (OTEL_EXPORTER_OTLP_ENDPOINT) and where traces are asked for.
    otlp_url: str
    query_url: str

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """``GET /api/traces/{id}``: the trace as Jaeger returns it, None while unknown."""
        response = httpx.get(f"{self.query_url}/api/traces/{trace_id}", timeout=10)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        data = response.json()["data"]
        return data[0] if data else None

    def find(self, service: str, operation: str) -> list[dict[str, Any]]:
        """``GET /api/traces?service=...&operation=...``: the traces holding such a span."""
        response = httpx.get(
            f"{self.query_url}/api/traces",
            params={"service": service, "operation": operation, "limit": "1000",
                    "lookback": "1h"},
            timeout=10,
        )  # fmt: skip
        response.raise_for_status()
        return list(response.json()["data"] or [])

    def wait_trace(
        self, trace_id: str, holds: Callable[[dict[str, Any]], bool], timeout_s: float = 60
    ) -> dict[str, Any]:
        """The trace, once ``holds(trace)``: spans arrive in batches."""
        found: dict[str, Any] = {}

        def ready() -> bool:
            trace = self.trace(trace_id)
            if trace is None or not holds(trace):
                return False
            found.update(trace)
            return True

        wait_for(ready, timeout_s, f"trace {trace_id} in Jaeger")
        return found


def build_jaeger() -> Path:
    """The binary, built (or found cached) by scripts/build-jaeger."""
    if shutil.which("go") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("go is not installed: it builds Jaeger (scripts/build-jaeger)")
        pytest.skip("go is not installed: it builds Jaeger (scripts/build-jaeger)")
    proc = subprocess.run(
        [str(ROOT / "scripts" / "build-jaeger")],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"scripts/build-jaeger failed:\n{proc.stderr[-3000:]}"
    return Path(proc.stdout.strip().splitlines()[-1])


def start_jaeger(binary: Path, workdir: Path) -> tuple[subprocess.Popen[bytes], Jaeger]:
    ports = {n: free_port() for n in ("health", "query", "query_grpc", "otlp")}
    config = workdir / "jaeger.yaml"
    config.write_text(_CONFIG.format(**ports))
    log = open(workdir / "jaeger.log", "wb")  # noqa: SIM115 - the process writes it until stopped
    proc = subprocess.Popen(
        [str(binary), "--config", str(config)],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    log.close()
    health = f"http://127.0.0.1:{ports['health']}/status"

    def healthy() -> bool:
        if proc.poll() is not None:
            log_text = (workdir / "jaeger.log").read_text()
            raise AssertionError(f"jaeger exited ({proc.returncode}):\n{log_text[-3000:]}")
        try:
            return httpx.get(health, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    started = time.monotonic()
    wait_for(healthy, 60, "jaeger to be healthy")
    jaeger = Jaeger(f"http://127.0.0.1:{ports['otlp']}", f"http://127.0.0.1:{ports['query']}")
    # The query API answers once storage is up: the first request may come a moment later.
    wait_for(lambda: _answers(jaeger), max(5.0, 60 - (time.monotonic() - started)),
             "jaeger's query API")  # fmt: skip
    return proc, jaeger


def _answers(jaeger: Jaeger) -> bool:
    try:
        return httpx.get(f"{jaeger.query_url}/api/services", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def span_named(trace: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [s for s in trace["spans"] if s["operationName"] == name]


def refs(span: dict[str, Any], kind: str) -> list[tuple[str, str]]:
    """(trace id, span id) of the span's references of ``kind``: CHILD_OF is its parent,
    FOLLOWS_FROM its links."""
    return [(r["traceID"], r["spanID"]) for r in span.get("references", [])
            if r["refType"] == kind]  # fmt: skip
