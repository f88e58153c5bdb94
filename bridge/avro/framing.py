"""What goes before an Avro body on the wire, chosen per topic.

The framing is the seam between encodings: Avro single-object encoding (``C3 01`` + the
schema's CRC-64-AVRO fingerprint) by default, the schema-registry wire format (``00`` + a
4-byte schema id, ``bridge.avro.registry``) when a registry is configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bridge.avro.schemas import VersionedSchema
from bridge.cloudevents import fingerprint_uri, scan_type

__all__ = ["SINGLE_OBJECT_MARKER", "Framer", "Framing", "SingleObjectFramer"]

SINGLE_OBJECT_MARKER = b"\xc3\x01"


@dataclass(frozen=True, slots=True)
class Framing:
    """What goes before the Avro body, and how consumers are told about it."""

    prefix: bytes
    content_type: str
    schema_version: str
    # The CloudEvents ``type`` and ``dataschema``: what the record is, and where a consumer
    # finds its writer schema.
    event_type: str
    dataschema: str


class Framer(Protocol):
    """Chooses the framing for a topic. A registry-backed framer may raise a
    RetriableError while the registry is unreachable; the cycle then retries."""

    def framing(self, topic: str) -> Framing: ...


class SingleObjectFramer:
    """Avro single-object encoding: the same self-describing prefix on every topic."""

    def __init__(self, schema: VersionedSchema) -> None:
        self._framing = Framing(
            prefix=SINGLE_OBJECT_MARKER + schema.fingerprint,
            content_type="application/avro; encoding=single-object",
            schema_version=str(schema.version),
            event_type=scan_type(schema.full_name),
            dataschema=fingerprint_uri(schema.fingerprint),
        )

    def framing(self, topic: str) -> Framing:
        return self._framing
