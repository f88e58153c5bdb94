"""The fleet's contract with the process: a source's end decides the exit code."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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


def test_a_source_assigned_again_while_still_stopping_runs_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its first run is stuck past the stop's timeout (a call on a broker that went away);
    assigned back meanwhile, the source runs again once that run has ended."""
    release = threading.Event()
    runs: list[threading.Event] = []

    class Stuck(_Runner):
        def __init__(self, *args: Any, stop: threading.Event, **kwargs: Any) -> None:
            self.stop = stop
            runs.append(stop)

        def run(self) -> int:
            self.stop.wait()
            if len(runs) == 1:
                release.wait()  # ignores the stop for a while
            return EXIT_OK

    monkeypatch.setattr(fleet_module, "Source", _Source)
    monkeypatch.setattr(fleet_module, "SourceRunner", Stuck)
    config = load_config()
    fleet = Fleet(config, RunOptions(serve_http=False), Metrics(), ProcessHealth(),
                  restart_fatal=True)  # fmt: skip
    ids = [source.id for source in config.sources]
    fleet.start(ids)
    _wait_until(lambda: len(runs) == 1)
    fleet.stop(ids, timeout_s=0.1)
    assert fleet.running() == set(ids)  # still letting go
    fleet.start(ids)
    assert len(runs) == 1
    release.set()
    _wait_until(lambda: len(runs) == 2 and fleet.running() == set(ids))
    fleet.stop_all(5)
    assert fleet.running() == set()


def test_a_source_stopped_again_before_its_restart_stays_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    runs: list[threading.Event] = []

    class Stuck(_Runner):
        def __init__(self, *args: Any, stop: threading.Event, **kwargs: Any) -> None:
            runs.append(stop)
            self.stop = stop

        def run(self) -> int:
            self.stop.wait()
            release.wait()
            return EXIT_OK

    monkeypatch.setattr(fleet_module, "Source", _Source)
    monkeypatch.setattr(fleet_module, "SourceRunner", Stuck)
    config = load_config()
    fleet = Fleet(config, RunOptions(serve_http=False), Metrics(), ProcessHealth(),
                  restart_fatal=True)  # fmt: skip
    ids = [source.id for source in config.sources]
    fleet.start(ids)
    _wait_until(lambda: len(runs) == 1)
    fleet.stop(ids, timeout_s=0.1)
    fleet.start(ids)
    fleet.stop(ids, timeout_s=0.1)  # revoked again before the first run ended
    release.set()
    _wait_until(lambda: fleet.running() == set())
    assert len(runs) == 1


def _wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
