"""Fixtures for the tests that build the image and run it.

``engine`` (session): docker where a Docker engine answers, else podman (``scripts/image
engine`` installs it with apt when it can). Where no container tool can be had the tests
are skipped, but fail under ``CI=true`` or ``IMAGE_TESTS_REQUIRED=1``: CI never goes green
by skipping them.
``bridge_image`` (session): the image built from this checkout by ``scripts/image build``
(what ``make image`` runs; layers are cached, so it is quick when nothing changed), with
the version and revision these tests pass as build args.
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from collections.abc import Iterator

import pytest

from tests.image.engine import ROOT, SCRIPT, BuiltImage, Engine

IMAGE_DIR = ROOT / "tests" / "image"
BUILD_TIMEOUT_S = 900


def _required() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("IMAGE_TESTS_REQUIRED") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if IMAGE_DIR in item.path.parents:
            item.add_marker(pytest.mark.image)
            # The first test also pays for the build: a cold one (debootstrap, packages)
            # takes minutes on a busy 2-core machine. Each command has its own timeout.
            item.add_marker(pytest.mark.timeout(BUILD_TIMEOUT_S))


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    proc = subprocess.run(
        [str(SCRIPT), "engine"], capture_output=True, text=True, timeout=300, check=False
    )
    if proc.returncode == 3:
        message = f"no container tool here: {proc.stderr.strip()}"
        if _required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    if proc.returncode != 0:
        pytest.fail(f"scripts/image engine failed:\n{proc.stderr}", pytrace=False)
    found = Engine(proc.stdout.strip().splitlines()[-1])
    found.remove_orphans()
    try:
        yield found
    finally:
        found.remove_mine()


def _git_head() -> str:
    proc = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


@pytest.fixture(scope="session")
def bridge_image(engine: Engine) -> BuiltImage:
    with (ROOT / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    revision = _git_head()
    env = {
        **engine.env,
        "CONTAINER_ENGINE": engine.name,
        "IMAGE_VERSION": version,
        "IMAGE_REVISION": revision,
    }
    proc = subprocess.run(
        [str(SCRIPT), "build"],
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S - 60,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/image build failed:\n{proc.stderr[-5000:]}", pytrace=False)
    ref = proc.stdout.strip().splitlines()[-1]
    return BuiltImage(ref, version, revision, engine.inspect_image(ref))
