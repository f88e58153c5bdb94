"""W3C Trace Context headers (``traceparent``, ``tracestate``) as the bridge carries them.

A webhook's incoming context goes into the inbox record, and from there into the records
its scans become; a polled page's context into its scans' records. The values are checked
here, once, where they enter: a header that is not a valid ``traceparent`` is dropped (and
its ``tracestate`` with it), as the W3C recommendation says a receiver must, so nothing a
client sends ends up in Kafka unless it is a well-formed context.

This module imports nothing of the bridge and nothing of OpenTelemetry: with tracing off
the receiver still carries a caller's context into the inbox, and an owner with tracing
on continues it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["TRACEPARENT", "TRACESTATE", "TraceHeaders"]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

# version-traceid-parentid-flags; a future version may append fields after a dash.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
# The recommendation's limit: 32 list members, and a vendor may drop a longer one whole.
_TRACESTATE_MAX = 512


@dataclass(frozen=True, slots=True)
class TraceHeaders:
    """A valid trace context: a ``traceparent`` and, optionally, its ``tracestate``."""

    traceparent: str
    tracestate: str | None = None

    @property
    def trace_id(self) -> str:
        return self.traceparent[3:35]

    @property
    def span_id(self) -> str:
        return self.traceparent[36:52]

    @property
    def sampled(self) -> bool:
        return bool(int(self.traceparent[53:55], 16) & 1)

    @classmethod
    def parse(cls, traceparent: str | None, tracestate: str | None = None) -> TraceHeaders | None:
        """The context these header values name, or None when ``traceparent`` is missing or
        not valid (then ``tracestate`` is ignored too)."""
        if traceparent is None:
            return None
        value = traceparent.strip().lower()
        match = _TRACEPARENT.fullmatch(value)
        if match is None:
            return None
        version, trace_id, span_id, _, rest = match.groups()
        if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
            return None
        if version == "00" and rest is not None:
            return None
        state = tracestate.strip() if tracestate is not None else ""
        if not state or len(state) > _TRACESTATE_MAX or not state.isascii():
            state = ""
        # A later version's extra fields are not ours to pass on: version 00 is what we write.
        return cls(value[:55] if version == "00" else f"00{value[2:55]}", state or None)

    @classmethod
    def from_http(cls, headers: Mapping[str, str]) -> TraceHeaders | None:
        """From an HTTP request's headers, names lower-cased (any case on the wire)."""
        return cls.parse(headers.get(TRACEPARENT), headers.get(TRACESTATE))

    @classmethod
    def from_kafka(cls, headers: Iterable[tuple[str, bytes | str | None]]) -> TraceHeaders | None:
        """From a Kafka record's headers."""
        parent = state = None
        for key, value in headers:
            if key == TRACEPARENT:
                parent = _text(value)
            elif key == TRACESTATE:
                state = _text(value)
        return cls.parse(parent, state)

    def kafka_headers(self) -> list[tuple[str, str | bytes | None]]:
        if self.tracestate is None:
            return [(TRACEPARENT, self.traceparent)]
        return [(TRACEPARENT, self.traceparent), (TRACESTATE, self.tracestate)]


def _text(value: bytes | str | None) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return value
