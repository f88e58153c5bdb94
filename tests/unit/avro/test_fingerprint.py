"""The single-object header carries the schema's CRC-64-AVRO fingerprint in the byte order
of the Avro specification and Java's ``SchemaNormalization`` (little-endian), so that any
Avro implementation finds the schema by it."""

from __future__ import annotations

import avro.schema

from bridge.avro.framing import SingleObjectFramer
from bridge.avro.schemas import VersionedSchema


def test_the_wire_fingerprint_is_little_endian_crc64_avro(scan_schema: VersionedSchema) -> None:
    # The avro package's CRC is correct for a given canonical string (its canonical form of
    # logical types is not, so it is handed fastavro's, which matches Java's).
    expected = avro.schema.parse(scan_schema.canonical).fingerprint("CRC-64-AVRO")
    assert expected.hex() == "d8cb8448677ada91"
    assert scan_schema.fingerprint == expected, (
        f"bridge.avro.schemas puts {scan_schema.fingerprint.hex()} on the wire, the byte-reversed"
        f" fingerprint; the spec's little-endian bytes are {expected.hex()}"
    )
    prefix = SingleObjectFramer(scan_schema).framing("t").prefix
    assert prefix == b"\xc3\x01" + expected
