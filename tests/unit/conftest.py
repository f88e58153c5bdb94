"""Fixtures for every unit test: a fresh metrics registry per test."""

from __future__ import annotations

import pytest

from bridge.ops.metrics import Metrics


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()
