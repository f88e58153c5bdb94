"""The version the bridge reports is the one it is packaged as."""

from __future__ import annotations

import tomllib
from pathlib import Path

from bridge import __version__

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_says_the_version_pyproject_gives() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        assert tomllib.load(f)["project"]["version"] == __version__
