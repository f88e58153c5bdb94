"""The collector's set-up: paused while a command loads; for streaming, start-up frozen and
the thresholds left alone."""

from __future__ import annotations

import gc
import importlib
from types import ModuleType

import click
import pytest

from bridge.cli import cli
from bridge.ops.gc_policy import paused, tune_for_streaming


def test_start_up_is_frozen_and_the_thresholds_stay_the_defaults() -> None:
    thresholds = gc.get_threshold()
    before = gc.get_freeze_count()
    try:
        tune_for_streaming()
        assert gc.get_freeze_count() > before
        assert gc.get_threshold() == thresholds
    finally:
        gc.unfreeze()


def test_paused_stops_collection_inside_and_restores_what_was_set() -> None:
    assert gc.isenabled()
    try:
        with paused():
            assert not gc.isenabled()
            loaded = [[n] for n in range(1000)]
        assert gc.isenabled()
        # What loaded inside is out of every later collection, the young one included.
        assert gc.get_freeze_count() >= len(loaded)
        assert gc.get_count()[0] < len(loaded)
    finally:
        gc.unfreeze()

    # A failed import still turns collection back on.
    with pytest.raises(ImportError), paused():
        raise ImportError("no such module")
    assert gc.isenabled()

    # Whoever had turned it off keeps it off.
    gc.disable()
    try:
        with paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_command_module_loads_with_collection_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    real = importlib.import_module

    def recording(name: str, package: str | None = None) -> ModuleType:
        if name == "bridge.cli.config":
            seen.append(gc.isenabled())
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", recording)
    command = cli.get_command(click.Context(cli), "config")
    assert command is not None
    assert seen == [False]
    assert gc.isenabled()
