"""Tracing from the standard ``OTEL_*`` environment variables: off unless an OTLP endpoint is
set, checked before anything starts.

On when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set
(and ``OTEL_SDK_DISABLED`` is not ``true``, ``OTEL_TRACES_EXPORTER`` not ``none``). Export is
OTLP over HTTP (protobuf); the SDK reads the rest itself: ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``..._TIMEOUT``, ``..._COMPRESSION``, ``..._CERTIFICATE``,
``OTEL_BSP_*``, ``OTEL_SPAN_*_LIMIT``. The settings that would make the SDK fall back
silently (an unknown sampler, a ratio that is not a number) or that the bridge does not
support (gRPC) are refused here, with the variable's name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from bridge.errors import ConfigError
from bridge.tracing.hooks import NO_TRACING, Tracing

__all__ = ["check", "tracing_enabled", "tracing_from_env"]

_SAMPLERS = frozenset(
    {
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    }
)


def tracing_enabled(environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(_endpoint(environ))


def tracing_from_env() -> Tracing:
    """Tracing as ``os.environ`` (which the SDK reads too) sets it. Raises ConfigError naming
    the variable that is wrong."""
    if not tracing_enabled(os.environ):
        return NO_TRACING
    check(os.environ)
    from bridge.tracing.otel import OtelTracing  # the SDK is imported only when tracing is on

    return OtelTracing.from_env()


def check(environ: Mapping[str, str]) -> None:
    exporter = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if exporter != "otlp":
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={exporter!r}: the bridge exports traces as 'otlp' (over HTTP)"
            " or not at all ('none')"
        )
    name = (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        if environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        else "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    url = urlsplit(_endpoint(environ))
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(
            f"{name} must be an http:// or https:// URL, got {environ.get(name, '')!r}"
        )
    for var in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(var, "").strip()
        if protocol:
            if protocol != "http/protobuf":
                raise ConfigError(
                    f"{var}={protocol!r}: the bridge exports OTLP over HTTP, 'http/protobuf'"
                )
            break
    sampler = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler and sampler not in _SAMPLERS:
        raise ConfigError(
            f"OTEL_TRACES_SAMPLER={sampler!r}: expected one of {', '.join(sorted(_SAMPLERS))}"
        )
    arg = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if arg and sampler.endswith("traceidratio"):
        try:
            ratio = float(arg)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG={arg!r}: a ratio between 0 and 1")


def _endpoint(environ: Mapping[str, str]) -> str:
    return (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )
