"""The compatibility gate: the real schema's versions pass, and the fixture pairs under
tests/fixtures/schemas/ pass or fail in exactly the directions the Avro rules say."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from bridge.avro.compat import (
    Mode,
    check_pair,
    check_versions,
    field_diff,
    load_versions,
    resolution_problems,
    round_trip_problems,
)
from bridge.avro.lock import bundled_schemas
from tests.support import SCHEMA_FIXTURES


def test_every_released_schema_passes_the_full_gate() -> None:
    folders = [p for p in bundled_schemas().iterdir() if p.is_dir()]
    assert folders
    for folder in folders:
        assert check_versions(folder, "FULL") == [], folder.name


def test_the_bridge_schema_round_trips_every_branch_against_itself() -> None:
    (v1,) = load_versions(bundled_schemas() / "passentry_scan").values()
    # pass/reader/barcode are 2-branch unions: samples cover both null and non-null.
    assert round_trip_problems(v1, v1) == []
    assert resolution_problems(v1, v1) == []


# case -> the modes it passes; it must fail every other mode.
CASES: dict[str, set[Mode]] = {
    "add_optional_field": {"BACKWARD", "FORWARD", "FULL"},
    "add_field_without_default": {"FORWARD"},
    "string_to_int": set(),
    "remove_field_without_default": {"BACKWARD"},
    "remove_enum_symbol": {"FORWARD"},
    "int_to_long": {"BACKWARD"},
}
MODES: list[Mode] = ["BACKWARD", "FORWARD", "FULL"]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("mode", MODES)
def test_fixture_pairs_pass_exactly_the_modes_avro_allows(case: str, mode: Mode) -> None:
    problems = check_versions(SCHEMA_FIXTURES / case, mode)
    if mode in CASES[case]:
        assert problems == []
    else:
        assert problems, f"{case} should fail {mode}"
        assert all(p.startswith(f"{case} v1 -> v2: ") for p in problems)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("add_field_without_default", "email: the new schema has this field without a default"),
        ("add_field_without_default", "a field added without a default"),
        ("string_to_int", "holder: type changed incompatibly: old type string cannot be read"),
        ("remove_field_without_default", "holder: the old schema has this field without a"),
        ("remove_field_without_default", "a field removed that had no default"),
        ("remove_enum_symbol", "tier: enum symbol(s) ['GOLD'] of the old schema are missing"),
        ("int_to_long", "seats: type changed incompatibly: new type long cannot be read as old"),
    ],
)
def test_failures_say_which_field_and_why(case: str, expected: str) -> None:
    assert any(expected in p for p in check_versions(SCHEMA_FIXTURES / case, "FULL")), expected


@pytest.mark.parametrize(
    ("case", "direction"),
    [
        ("add_field_without_default", "BACKWARD"),
        ("string_to_int", "BACKWARD"),
        ("remove_field_without_default", "FORWARD"),
        ("remove_enum_symbol", "BACKWARD"),
        ("int_to_long", "FORWARD"),
    ],
)
def test_the_data_round_trip_agrees_with_the_structural_rules(case: str, direction: str) -> None:
    v = load_versions(SCHEMA_FIXTURES / case)
    writer, reader = (v[1], v[2]) if direction == "BACKWARD" else (v[2], v[1])
    assert resolution_problems(writer, reader)
    # fastavro itself refuses to read at least one representative record.
    assert round_trip_problems(writer, reader)
    assert resolution_problems(reader, reader) == round_trip_problems(reader, reader) == []


def test_an_enum_default_makes_a_removed_symbol_readable() -> None:
    v = load_versions(SCHEMA_FIXTURES / "remove_enum_symbol")
    new = copy.deepcopy(v[2])
    new["fields"][3]["type"]["default"] = "BRONZE"
    assert check_pair(v[1], new, "BACKWARD") == []


def test_a_changed_logical_type_is_reported_although_the_bytes_resolve() -> None:
    old = {"type": "record", "name": "R", "fields": [
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}  # fmt: skip
    new = copy.deepcopy(old)
    new["fields"][0]["type"]["logicalType"] = "timestamp-micros"
    problems = check_pair(old, new, "BACKWARD")
    assert problems
    assert "logicalType changed from timestamp-millis to timestamp-micros" in problems[0]


def test_a_gap_in_version_numbers_is_reported(tmp_path: Path) -> None:
    source = SCHEMA_FIXTURES / "add_optional_field"
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "v1.avsc").write_bytes((source / "v1.avsc").read_bytes())
    (tmp_path / "x" / "v3.avsc").write_bytes((source / "v2.avsc").read_bytes())
    assert "versions [1, 3] are not 1..N without gaps" in check_versions(tmp_path / "x")[0]


def test_field_diff_lists_added_removed_and_changed_fields() -> None:
    added = load_versions(SCHEMA_FIXTURES / "add_optional_field")
    assert field_diff(added[1], added[2]) == ["+ email  [null, string] = null"]
    removed = load_versions(SCHEMA_FIXTURES / "remove_field_without_default")
    assert field_diff(removed[1], removed[2]) == ["- holder  string"]
    enum = load_versions(SCHEMA_FIXTURES / "remove_enum_symbol")
    assert field_diff(enum[1], enum[2]) == [
        "~ tier  enum Tier{BRONZE,SILVER,GOLD} -> enum Tier{BRONZE,SILVER}"
    ]
