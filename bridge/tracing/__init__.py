"""Traces of each scan's way through the bridge, exported with OpenTelemetry (OTLP over HTTP)
when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; off, and free, otherwise.

``hooks`` is what the rest of the bridge calls (and tracing off), ``env`` turns the
``OTEL_*`` variables into a :class:`Tracing`, ``otel`` is tracing on (the only module that
imports the SDK), ``semconv`` the pinned names.
"""

from bridge.tracing.env import tracing_from_env
from bridge.tracing.hooks import NO_TRACING, PageSpan, Tracing, WebhookSpan

__all__ = ["NO_TRACING", "PageSpan", "Tracing", "WebhookSpan", "tracing_from_env"]
