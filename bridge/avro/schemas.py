"""The versioned Avro schemas in ``schemas/<name>/v<N>.avsc``, parsed once at start-up."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import fastavro
from fastavro.schema import SchemaParseException, fingerprint, to_parsing_canonical_form

__all__ = [
    "SCAN_SCHEMA_NAME",
    "VERSION_FILE",
    "UnknownSchemaVersionError",
    "VersionedSchema",
    "from_text",
    "latest",
    "load",
    "versions",
]

SCAN_SCHEMA_NAME = "passentry_scan"
# A released version's file name, ``v<N>.avsc``.
VERSION_FILE = re.compile(r"^v(\d+)\.avsc$")


@dataclass(frozen=True, slots=True)
class VersionedSchema:
    name: str
    version: int
    text: str
    definition: dict[str, Any]
    parsed: dict[str, Any]
    canonical: str
    # CRC-64-AVRO of the Parsing Canonical Form, little-endian, as single-object encoding
    # puts it on the wire.
    fingerprint: bytes

    @property
    def full_name(self) -> str:
        return f"{self.definition['namespace']}.{self.definition['name']}"


def _folder(name: str) -> Any:
    return resources.files("bridge").joinpath("schemas", name)


def versions(name: str = SCAN_SCHEMA_NAME) -> list[int]:
    found = []
    for entry in _folder(name).iterdir():
        match = VERSION_FILE.match(entry.name)
        if match:
            found.append(int(match.group(1)))
    return sorted(found)


@cache
def load(name: str = SCAN_SCHEMA_NAME, version: int | None = None) -> VersionedSchema:
    """A bundled version (the latest without one). Raises ``UnknownSchemaVersionError``,
    naming the versions there are, for one that is not bundled."""
    known = versions(name)
    if version is None:
        version = known[-1]
    if version not in known:
        raise UnknownSchemaVersionError(
            f"schema {name} has no version {version}; the released ones are"
            f" {', '.join(str(v) for v in known)}"
        )
    text = _folder(name).joinpath(f"v{version}.avsc").read_text(encoding="utf-8")
    return from_text(text, name, version)


class UnknownSchemaVersionError(LookupError):
    """A schema version that is not among the bundled ones."""


def from_text(text: str, name: str = SCAN_SCHEMA_NAME, version: int = 0) -> VersionedSchema:
    """A schema given as JSON text (a file that is not bundled, e.g. a newer version a
    consumer was handed). Raises ValueError if it is not an Avro schema."""
    try:
        definition = json.loads(text)
        parsed: dict[str, Any] = fastavro.parse_schema(definition)  # type: ignore[assignment]
    except (ValueError, TypeError, KeyError, SchemaParseException) as exc:
        raise ValueError(f"not an Avro schema: {exc}") from exc
    canonical = to_parsing_canonical_form(parsed)
    # fastavro gives the fingerprint's bytes, already in the spec's little-endian order,
    # as hex: decode them as they are (reversing them would break Java's decoder).
    crc = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    return VersionedSchema(name, version, text, definition, parsed, canonical, crc)


def latest(name: str = SCAN_SCHEMA_NAME) -> VersionedSchema:
    return load(name, None)
