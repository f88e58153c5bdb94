"""Integration-test fixtures beside the broker ones in tests/conftest.py: after each test, the
bridge processes and supervisors it started (tests/integration/eos_harness.py) and left
running, because it failed half way, are stopped, so they write nothing into later tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.eos_harness import stop_everything


@pytest.fixture(autouse=True)
def _no_bridge_left_running() -> Iterator[None]:
    yield
    stop_everything()
