"""Decode the bridge's records back into Avro data, whichever framing they carry.

Single-object encoding names its writer schema by fingerprint: every version we ship is
known, and more can be handed in (a consumer given a newer schema file before it is
rebuilt). The registry wire format names it by schema id: the schema is fetched from the
registry once per id, and the record is read with it as the writer schema, as any
Confluent-compatible consumer does.

Without a reader schema a record comes out in its writer's shape. With one, Avro's schema
resolution turns every version into that one shape: fields the reader does not know are
skipped, fields the writer did not have take the reader's defaults.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fastavro import parse_schema, schemaless_reader

from bridge.avro.framing import SINGLE_OBJECT_MARKER
from bridge.avro.registry import classify
from bridge.avro.schemas import SCAN_SCHEMA_NAME, VersionedSchema, load, versions

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

__all__ = ["RecordDecoder"]

_REGISTRY_MAGIC = b"\x00"


class RecordDecoder:
    """Raises ValueError for a value it cannot decode, saying why."""

    def __init__(
        self,
        registry: SchemaRegistryClient | None = None,
        *,
        reader: dict[str, Any] | None = None,
        writers: Iterable[VersionedSchema] = (),
    ) -> None:
        """``reader``: a parsed schema every record is resolved to (default: none, each
        record in its writer's shape). ``writers``: schemas known by fingerprint besides the
        bundled ones."""
        bundled = [load(SCAN_SCHEMA_NAME, v) for v in versions()]
        self._by_fingerprint = {s.fingerprint: s.parsed for s in [*bundled, *writers]}
        self._registry = registry
        self._reader = reader
        self._by_id: dict[int, Any] = {}

    def decode(self, value: bytes) -> dict[str, Any]:
        if value[:2] == SINGLE_OBJECT_MARKER and len(value) >= 10:
            schema = self._by_fingerprint.get(value[2:10])
            if schema is None:
                raise ValueError(
                    f"unknown schema fingerprint {value[2:10].hex()}: a newer schema wrote it;"
                    " give its .avsc file to the decoder"
                )
            return _read(value[10:], schema, self._reader)
        if value[:1] == _REGISTRY_MAGIC and len(value) >= 5:
            writer = self._registry_schema(int.from_bytes(value[1:5], "big"))
            return _read(value[5:], writer, self._reader)
        raise ValueError("neither Avro single-object encoding nor the registry wire format")

    def _registry_schema(self, schema_id: int) -> Any:
        schema = self._by_id.get(schema_id)
        if schema is not None:
            return schema
        if self._registry is None:
            raise ValueError(
                f"registry wire format (schema id {schema_id}): set SCHEMA_REGISTRY_URL to"
                " decode it"
            )
        try:
            found = self._registry.get_schema(schema_id)
        except Exception as exc:  # the client raises its own and its HTTP library's errors
            raise ValueError(str(classify(exc, f"fetching schema id {schema_id}"))) from exc
        schema = self._by_id[schema_id] = parse_schema(json.loads(found.schema_str or "{}"))
        return schema


def _read(body: bytes, writer: Any, reader: dict[str, Any] | None) -> dict[str, Any]:
    stream = io.BytesIO(body)
    record: dict[str, Any] = schemaless_reader(stream, writer, reader)  # type: ignore[assignment]
    if stream.tell() != len(body):
        # The writer schema does not match the bytes (a wrong id or fingerprint): fastavro
        # stops where the schema ends, so check nothing is left over.
        raise ValueError(f"{len(body) - stream.tell()} bytes left after the record")
    return record
