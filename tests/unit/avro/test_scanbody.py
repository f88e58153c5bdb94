"""The native scan writer against the Python primitives of ``bridge.avro.wire``, field by
field, over random and edge values: the per-scan path writes the same record with those."""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bridge.avro._scanbody import write, write_pass
from bridge.avro.encoder import to_millis
from bridge.avro.wire import long_bytes, opt_long, opt_str, str_bytes

EDGE_LONGS = [0, 1, -1, 63, -64, 64, -65, 2**31, -(2**31), 2**35, 2**42, 2**63 - 1, -(2**63)]
EDGE_TIMES = [
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(1900, 2, 28, 23, 59, 59, 1, tzinfo=UTC),
    datetime(2000, 2, 29, 12, tzinfo=UTC),
    datetime(2100, 3, 1, tzinfo=UTC),
]
TEXTS = ["", "a", "gate-1", "\u00fcn\u00efc\u00f8d\u00e9", "\U0001f3ab" * 40, "x" * 200]


def python_body(args: tuple) -> bytes:  # type: ignore[type-arg]
    (prefix, scan_id, created, scanned, scan_type, value, validation, status, detail,
     reader_id, pass_id, source, pass_bytes, reader_bytes) = args  # fmt: skip
    if isinstance(scanned, datetime):
        scanned = to_millis(scanned)
    return b"".join(
        (
            prefix,
            str_bytes(scan_id),
            long_bytes(created),
            opt_long(scanned),
            str_bytes(scan_type),
            opt_str(value),
            str_bytes(validation),
            str_bytes(status),
            opt_str(detail),
            str_bytes(reader_id),
            opt_str(pass_id),
            source,
            pass_bytes,
            reader_bytes,
        )
    )


def random_args(rng: random.Random) -> tuple:  # type: ignore[type-arg]
    def text() -> str:
        return rng.choice([*TEXTS, "".join(chr(rng.randrange(32, 0x3000)) for _ in range(9))])

    def maybe_text() -> str | None:
        return None if rng.random() < 0.3 else text()

    scanned: datetime | int | None = rng.choice(
        [
            None,
            rng.choice(EDGE_LONGS),
            rng.choice(EDGE_TIMES),
            datetime(1, 1, 1, tzinfo=UTC)
            + timedelta(microseconds=rng.randrange(315_537_897_600_000_000)),
        ]
    )
    return (
        rng.choice([b"", b"\x00\x00\x00\x00\x07"]),
        text(),
        rng.choice([*EDGE_LONGS, rng.randrange(-(2**63), 2**63)]),
        scanned,
        text(),
        maybe_text(),
        text(),
        text(),
        maybe_text(),
        text(),
        maybe_text(),
        str_bytes(text()),
        rng.choice([b"\x00", b"\x02" + bytes(rng.randrange(256) for _ in range(40))]),
        rng.choice([b"\x00", b"\x02abc"]),
    )


@pytest.mark.parametrize("seed", range(5))
def test_the_native_writer_writes_what_the_python_primitives_write(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(2000):
        args = random_args(rng)
        assert write(*args) == python_body(args), args


def test_every_edge_time_is_floored_to_its_millisecond_as_to_millis_does() -> None:
    for moment in EDGE_TIMES:
        args = (b"", "id", 1, moment, "nfc", None, "v", "s", None, "r", None, b"", b"\x00", b"")
        assert write(*args) == python_body(args)
        tail = b"\x06nfc\x00\x02v\x02s\x00\x02r\x00\x00"
        assert write(*args) == b"\x04id\x02" + opt_long(to_millis(moment)) + tail


@pytest.mark.parametrize(
    ("position", "value", "error"),
    [
        (1, "\ud800", UnicodeEncodeError),  # a lone surrogate: the scan is dead-lettered
        (5, "ok\udfff", UnicodeEncodeError),
        (2, 2**63, OverflowError),
        (3, 2**64, OverflowError),
        (3, datetime(2026, 1, 1), TypeError),  # naive: the caller converts it first
        (3, datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2))), TypeError),
        (3, "2026-01-01", TypeError),
        (1, None, TypeError),
        (4, b"nfc", TypeError),
        (11, "source", TypeError),
    ],
)
def test_a_value_it_cannot_write_raises_what_the_fast_path_hands_to_the_per_scan_path(
    position: int, value: object, error: type[Exception]
) -> None:
    args: list[object] = [b"", "id", 1, None, "nfc", None, "v", "s", None, "r", None, b"", b"", b""]
    args[position] = value
    with pytest.raises(error):
        write(*args)  # type: ignore[arg-type]


def test_it_takes_its_fourteen_arguments_and_no_other_count() -> None:
    with pytest.raises(TypeError, match="takes 14 arguments"):
        write(b"")  # type: ignore[call-arg]


# write_pass: its bytes are compared with fastavro's in test_encoder.py (every pass field,
# hostile values included); here, what it refuses and what it calls.
PASS_ARGS: list[object] = [
    "pass-1", None, "storeCard", "active", None, None, None, None, None, b"\x00",
    {"fullName": "Ada"}, None, None, None, None, str, to_millis,
]  # fmt: skip


@pytest.mark.parametrize(
    ("position", "value"),
    [
        (0, None),  # the id is not optional
        (1, b"ext"),
        (9, None),  # the barcode comes encoded
        (10, ["fullName", "Ada"]),
        (10, {1: "Ada"}),
        (11, "2026-01-01"),
    ],
)
def test_a_pass_value_it_cannot_write_raises_type_error(position: int, value: object) -> None:
    args = list(PASS_ARGS)
    args[position] = value
    with pytest.raises(TypeError):
        write_pass(*args)  # type: ignore[arg-type]


def test_a_pass_time_outside_utc_and_a_content_value_not_a_string_go_to_the_callables() -> None:
    local = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    asked: list[object] = []

    def millis(t: datetime) -> int:
        asked.append(t)
        return 42

    def stringify(v: object) -> str:
        asked.append(v)
        return "[1]"

    class Name(str):
        pass

    args = list(PASS_ARGS)
    args[10] = {"seats": [1], "name": Name("Ada")}  # a str of a subclass is still a str
    args[11:13] = [local, datetime(2026, 1, 1, tzinfo=UTC)]
    args[15:17] = [stringify, millis]
    written = write_pass(*args)  # type: ignore[arg-type]
    assert asked == [local, [1]]  # the UTC time and the str value are written as they are
    map_bytes = b"\x04" + str_bytes("seats") + str_bytes("[1]") + str_bytes("name")
    assert map_bytes + str_bytes("Ada") + b"\x00" + opt_long(42) in written

    args[16] = lambda t: "noon"
    with pytest.raises(TypeError, match="must return int"):
        write_pass(*args)  # type: ignore[arg-type]


def test_write_pass_keeps_no_reference_to_what_it_reads() -> None:
    value = "".join(["A", "da"])  # a str of its own, not an interned constant
    content = {"a": value, "b": [1, 2]}
    args = list(PASS_ARGS)
    args[10] = content
    before = sys.getrefcount(value), sys.getrefcount(content["b"])
    for _ in range(1000):
        write_pass(*args)  # type: ignore[arg-type]
    assert (sys.getrefcount(value), sys.getrefcount(content["b"])) == before


def test_write_pass_takes_its_seventeen_arguments_and_no_other_count() -> None:
    with pytest.raises(TypeError, match="takes 17 arguments"):
        write_pass("pass-1")  # type: ignore[call-arg]
