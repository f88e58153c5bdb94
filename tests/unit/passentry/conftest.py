"""Fixtures for the PassEntry client and page tests: the documented example page."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import FIXTURES


@pytest.fixture
def example_page_bytes() -> bytes:
    """The example response from PassEntry's GET /api/v1/scans reference page, verbatim."""
    return (FIXTURES / "passentry_get_scans_example.json").read_bytes()


@pytest.fixture
def example_page(example_page_bytes: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(example_page_bytes)
    return doc
