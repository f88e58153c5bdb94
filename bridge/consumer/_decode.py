"""Kafka record values to :class:`Scan`, in either encoding the bridge writes.

- Avro single-object encoding (``C3 01`` + the writer schema's 8-byte fingerprint): the
  writer schema is looked up by fingerprint among the schema versions this package ships,
  plus any ``writer_schemas`` handed in.
- The Confluent wire format (``00`` + a 4-byte schema id): the writer schema is fetched from
  the registry once per id.

Each record is then resolved to one reader schema (by default the newest version this
package ships), so consumers see one shape whichever version wrote the record.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.avro.decoder import RecordDecoder
from bridge.avro.schemas import VersionedSchema, from_text, latest
from bridge.consumer._model import Scan, scan_from_avro

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

__all__ = ["ScanDecodeError", "ScanDecoder", "schema_file"]


class ScanDecodeError(ValueError):
    """A value that is not a scan this decoder can read; the message says why."""


def schema_file(path: Path | str) -> VersionedSchema:
    """An ``.avsc`` file as a schema, for ``reader_schema`` or ``writer_schemas``."""
    path = Path(path)
    try:
        return from_text(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScanDecodeError(f"cannot read schema file {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ScanDecodeError(f"{path}: {exc}") from exc


class ScanDecoder:
    def __init__(
        self,
        *,
        registry: SchemaRegistryClient | None = None,
        registry_url: str | None = None,
        reader_schema: VersionedSchema | None = None,
        writer_schemas: Iterable[VersionedSchema] = (),
    ) -> None:
        """``registry`` or ``registry_url``: where registry-framed values' schemas come
        from (none: such values fail to decode). ``reader_schema``: the shape every scan is
        resolved to (default: the newest bundled version)."""
        self._own_registry = None
        if registry is None and registry_url is not None:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            registry = self._own_registry = SchemaRegistryClient({"url": registry_url})
        self._has_registry = registry is not None
        self.reader_schema = reader_schema or latest()
        self._decoder = RecordDecoder(
            registry, reader=self.reader_schema.parsed, writers=writer_schemas
        )

    def __enter__(self) -> ScanDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the registry client this decoder made from ``registry_url``."""
        if self._own_registry is not None:
            self._own_registry.close()
            self._own_registry = None

    def decode(self, value: bytes | None) -> Scan:
        if not value:
            raise ScanDecodeError("empty value: not a scan")
        if value[:1] == b"\x00" and len(value) >= 5 and not self._has_registry:
            schema_id = int.from_bytes(value[1:5], "big")
            raise ScanDecodeError(
                f"registry wire format (schema id {schema_id}): give the decoder a"
                " registry_url to read it"
            )
        try:
            return scan_from_avro(self._decoder.decode(value))
        except (ValueError, KeyError, TypeError, EOFError) as exc:
            # fastavro reports bytes that do not fit the schema as any of these.
            raise ScanDecodeError(f"{type(exc).__name__}: {exc}") from exc
