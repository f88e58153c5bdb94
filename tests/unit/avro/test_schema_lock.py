"""Released schema versions are immutable: schemas/schemas.lock records their hashes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bridge.avro.lock import LOCK_FILE, bundled_schemas, lock_problems, render_lock


def test_released_schemas_match_the_lock_file() -> None:
    problems = lock_problems(bundled_schemas())
    assert problems == [], "\n".join(problems)


@pytest.fixture
def released(tmp_path: Path) -> Path:
    """A copy of the real schemas folder, lock file included."""
    root = tmp_path / "schemas"
    shutil.copytree(bundled_schemas(), root)
    return root


def test_editing_a_released_version_fails_and_says_to_add_a_new_one(released: Path) -> None:
    v1 = released / "passentry_scan" / "v1.avsc"
    v1.write_text(v1.read_text().replace("UUIDv7: unique", "UUIDv7, unique"))
    (problem,) = lock_problems(released)
    assert "passentry_scan/v1.avsc was edited after it was released" in problem
    assert "add the change as a new version (passentry_scan/v2.avsc)" in problem


def test_deleting_a_released_version_fails(released: Path) -> None:
    (released / "passentry_scan" / "v1.avsc").unlink()
    (problem,) = lock_problems(released)
    assert "passentry_scan/v1.avsc was released" in problem
    assert "restore it" in problem


def test_a_new_version_must_be_recorded_and_recording_keeps_old_entries(released: Path) -> None:
    folder = released / "passentry_scan"
    (folder / "v2.avsc").write_text((folder / "v1.avsc").read_text())
    (problem,) = lock_problems(released)
    assert "passentry_scan/v2.avsc is not in schemas.lock" in problem
    # Recording v2 must not "fix" an edited v1 by rewriting its hash.
    (folder / "v1.avsc").write_text("{}")
    (released / LOCK_FILE).write_text(render_lock(released))
    problems = lock_problems(released)
    assert len(problems) == 1
    assert "v1.avsc was edited" in problems[0]


def test_a_missing_lock_file_fails(released: Path) -> None:
    (released / LOCK_FILE).unlink()
    assert "schemas.lock is missing" in lock_problems(released)[0]
