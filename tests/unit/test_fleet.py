"""The fleet's contract with the process: a source's end decides the exit code."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import bridge.fleet as fleet_module
from bridge.config import load_config
from bridge.fleet import Fleet
from bridge.ops.health import ProcessHealth
from bridge.ops.metrics import Metrics
from bridge.runner import EXIT_FATAL, EXIT_OK, RunOptions


class _Source:
    source_id = "default"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.closed = False

    def close(self, grace_s: float) -> int:
        return 0


class _Runner:
    outcome: int | Exception = EXIT_OK

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def run(self) -> int:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def _run_fleet() -> tuple[int, ProcessHealth]:
    config = load_config()
    health = ProcessHealth()
    fleet = Fleet(config, RunOptions(serve_http=False), Metrics(), health, restart_fatal=False)
    fleet.start(source.id for source in config.sources)
    return fleet.wait(threading.Event()), health


def test_a_source_that_finishes_ends_the_process_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet_module, "Source", _Source)
    monkeypatch.setattr(fleet_module, "SourceRunner", _Runner)
    code, _ = _run_fleet()
    assert code == EXIT_OK


def test_an_unexpected_exception_in_the_loop_is_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Crashing(_Runner):
        outcome = RuntimeError("a bug")

    monkeypatch.setattr(fleet_module, "Source", _Source)
    monkeypatch.setattr(fleet_module, "SourceRunner", Crashing)
    code, health = _run_fleet()
    assert code == EXIT_FATAL
    probe = health.readiness()
    assert not probe.ok
    assert any("internal error: RuntimeError('a bug')" in reason for reason in probe.reasons)


def test_an_unexpected_exception_building_a_source_is_fatal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(*args: Any, **kwargs: Any) -> _Source:
        raise KeyError("missing")

    monkeypatch.setattr(fleet_module, "Source", explode)
    code, health = _run_fleet()
    assert code == EXIT_FATAL
    assert not health.readiness().ok
