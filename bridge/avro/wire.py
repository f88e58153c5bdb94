"""The few Avro binary primitives the per-scan path and the pass's barcode record write by
hand (Avro spec, "Binary Encoding"); ``bridge/avro/_scanbody.c`` writes the same bytes for
the fast path, and the pass record.

fastavro is exact but spends most of its time resolving unions field by field. The scan's
top-level fields are flat and fixed, so writing them directly is several times cheaper; the
round-trip tests decode every byte with fastavro and with Apache's ``avro`` package.
"""

from __future__ import annotations

__all__ = [
    "BRANCH_1",
    "NULL",
    "long_bytes",
    "opt_bool",
    "opt_long",
    "opt_str",
    "str_bytes",
]

# Union branch 0, the null in every ["null", T] union.
NULL = b"\x00"
BRANCH_1 = b"\x02"
_SMALL = [bytes([(n << 1) if n >= 0 else ((-n << 1) - 1)]) for n in range(-64, 64)]


def long_bytes(n: int) -> bytes:
    """A zig-zag varint, as Avro writes ``int`` and ``long``."""
    if -64 <= n < 64:
        return _SMALL[n + 64]
    z = (n << 1) ^ (n >> 63)
    if 1 << 35 <= z < 1 << 42:
        # Six bytes, unrolled: every Unix millisecond from mid-1970 to 2039 (createdAt,
        # scannedAt), two on each scan record.
        return bytes(
            (
                (z & 0x7F) | 0x80,
                ((z >> 7) & 0x7F) | 0x80,
                ((z >> 14) & 0x7F) | 0x80,
                ((z >> 21) & 0x7F) | 0x80,
                ((z >> 28) & 0x7F) | 0x80,
                z >> 35,
            )
        )
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def str_bytes(text: str) -> bytes:
    data = text.encode()
    return long_bytes(len(data)) + data


def opt_str(text: str | None) -> bytes:
    return NULL if text is None else BRANCH_1 + str_bytes(text)


def opt_long(n: int | None) -> bytes:
    return NULL if n is None else BRANCH_1 + long_bytes(n)


def opt_bool(value: bool | None) -> bytes:
    return NULL if value is None else (b"\x02\x01" if value else b"\x02\x00")
