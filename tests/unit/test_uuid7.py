from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import pytest

from bridge.uuid7 import (
    InvalidUUIDv7Error,
    UUIDv7Minter,
    int_millis,
    max_for_millis,
    millis_floor,
    min_for_millis,
    parse_uuid7,
    parse_uuid7_int,
    uuid7_datetime,
    uuid7_millis,
)


def test_parses_the_documented_example_id_and_reads_its_time() -> None:
    value = parse_uuid7("0194d6a9-95b7-72dc-87fc-ecaed8c0b520")
    assert value.version == 7
    assert uuid7_millis(value) == 0x0194D6A995B7
    assert uuid7_datetime(value) == datetime(2025, 2, 5, 15, 10, 25, 719000, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        str(uuid.uuid4()),
        str(uuid.uuid1()),
        "00000000-0000-0000-0000-000000000000",
        "0194d6a9-95b7-72dc-07fc-ecaed8c0b520",  # variant bits 0xx: NCS, not RFC 9562
        "0194d6a995b772dc87fcecaed8c0b520",  # no hyphens: not the canonical form
        "{0194d6a9-95b7-72dc-87fc-ecaed8c0b520}",
        "0194d6a9-95b7-72dc-87fc-ecaed8c0b52g",
        "",
        "south-gate-1",
        "x" * 36,
    ],
)
def test_rejects_other_versions_and_garbage(text: str) -> None:
    with pytest.raises(InvalidUUIDv7Error):
        parse_uuid7(text)


def test_minter_is_monotonic_within_one_millisecond_and_seeded() -> None:
    a = UUIDv7Minter(rng=random.Random(7))
    ids = [a.mint(at_ms=1_700_000_000_000) for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5000
    assert all(parse_uuid7(str(i)) == i for i in ids[:50])
    b = UUIDv7Minter(rng=random.Random(7))
    assert [b.mint(at_ms=1_700_000_000_000) for _ in range(5000)] == ids


def test_skewed_minter_shifts_the_embedded_time() -> None:
    value = UUIDv7Minter(clock_skew_ms=-5000).mint(at_ms=1_700_000_000_000)
    assert uuid7_millis(value) == 1_700_000_000_000 - 5000


def test_bounds_bracket_every_id_of_a_millisecond() -> None:
    ms = 1_700_000_000_123
    value = UUIDv7Minter().mint(at_ms=ms)
    assert min_for_millis(ms) <= value <= max_for_millis(ms)
    assert max_for_millis(ms - 1) < value < min_for_millis(ms + 1)


def test_int_helpers_agree_with_the_uuid_ones() -> None:
    ms = 1_700_000_000_123
    value = UUIDv7Minter().mint(at_ms=ms)
    assert int_millis(value.int) == uuid7_millis(value) == ms
    assert millis_floor(ms) <= min_for_millis(ms).int
    assert max_for_millis(ms - 1).int < millis_floor(ms) <= value.int < millis_floor(ms + 1)


def _reference_int(text: str) -> int | None:
    """What parse_uuid7_int must give: the uuid module's reading of a string that passes
    parse_uuid7's rules, or None where they refuse it."""
    try:
        return parse_uuid7(text).int
    except InvalidUUIDv7Error:
        return None


def _mutations(rng: random.Random, text: str) -> list[str]:
    """``text`` with one character changed, dropped or added, in every position: hex of
    either case, other ASCII, digits of other scripts that ``int()`` reads, a surrogate."""
    odd = ["g", "G", "-", "_", " ", "+", "{", "\u0663", "\uff11", "\ud800", "7", "8", "c"]
    out = []
    for i in range(len(text)):
        out.append(text[:i] + rng.choice("0123456789abcdefABCDEF") + text[i + 1 :])
        out.append(text[:i] + rng.choice(odd) + text[i + 1 :])
        out.append(text[:i] + text[i + 1 :])
        out.append(text[:i] + rng.choice(odd) + text[i:])
    return out


@pytest.mark.parametrize("seed", range(3))
def test_the_native_parse_agrees_with_the_uuid_module_on_every_near_miss(seed: int) -> None:
    rng = random.Random(seed)
    minter = UUIDv7Minter(rng=rng)
    for _ in range(40):
        valid = str(minter.mint())
        for text in [valid, valid.upper(), *_mutations(rng, valid)]:
            expected = _reference_int(text)
            if expected is None:
                with pytest.raises(InvalidUUIDv7Error):
                    parse_uuid7_int(text)
            else:
                assert parse_uuid7_int(text) == expected, text
