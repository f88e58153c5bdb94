"""The wheel is what ships (the image installs it): build it, install it into a fresh venv,
and run the console script from there, away from the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    # A clean environment, so nothing leaks in from the project's venv or PYTHONPATH.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}", pytrace=False
        )
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, venv bin dir)"""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        cwd=tmp,
    )
    (wheel,) = dist.glob("passentry_bridge-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], cwd=tmp)
    return wheel, venv / "bin"


def _version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def test_wheel_holds_the_package_only(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert top == {"bridge", f"passentry_bridge-{_version()}.dist-info"}, top
    assert "bridge/py.typed" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "passentry-bridge = bridge.cli:main" in text


def test_version(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, bin_dir = installed
    out = _run([str(bin_dir / "passentry-bridge"), "--version"], cwd=tmp_path).stdout
    assert _version() in out
    assert "passentry-bridge" in out


def test_check_command_help(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, bin_dir = installed
    out = _run([str(bin_dir / "passentry-bridge"), "check", "--help"], cwd=tmp_path).stdout
    assert "Usage: passentry-bridge check" in out


def test_run_command_help(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, bin_dir = installed
    out = _run([str(bin_dir / "passentry-bridge"), "run", "--help"], cwd=tmp_path).stdout
    assert "Usage: passentry-bridge run" in out
