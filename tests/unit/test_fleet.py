"""The fleet's contract with the process: a source's end decides the exit code."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import bridge.fleet as fleet_module
from bridge.config import load_config
from bridge.errors import ApiAuthError, BridgeError, KafkaFatalError
from bridge.fleet import Fleet
from bridge.ops.health import ProcessHealth
from bridge.ops.metrics import Metrics
from bridge.runner import EXIT_FATAL, EXIT_OK, RunOptions
from tests.support import sample


class _Source:
    source_id = "default"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.closed = False

    def close(self, grace_s: float) -> int:
        return 0


class _Runner:
    outcome: int | Exception = EXIT_OK
    fatal: BridgeError | None = None

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


def _stuck_fleet(
    monkeypatch: pytest.MonkeyPatch, release: threading.Event, runs: list[threading.Event],
    fenced: list[str], metrics: Metrics | None = None, health: ProcessHealth | None = None,
) -> tuple[Fleet, list[str]]:  # fmt: skip
    """A fleet whose first run of each source ignores its stop until ``release`` (a call
    stuck on a broker that went away); later runs stop when told."""

    class Stuck(_Runner):
        def __init__(self, *args: Any, stop: threading.Event, **kwargs: Any) -> None:
            self.stop = stop
            runs.append(stop)

        def run(self) -> int:
            self.stop.wait()
            if len(runs) == 1:
                release.wait()
            return EXIT_OK

    monkeypatch.setattr(fleet_module, "Source", _Source)
    monkeypatch.setattr(fleet_module, "SourceRunner", Stuck)
    config = load_config()

    def fence(txn_id: str) -> bool:
        fenced.append(txn_id)
        return True

    fleet = Fleet(config, RunOptions(serve_http=False), metrics or Metrics(),
                  health or ProcessHealth(), restart_fatal=True, fencer=fence)  # fmt: skip
    return fleet, [source.id for source in config.sources]


def test_a_source_stuck_past_the_stop_timeout_is_fenced_not_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release, runs, fenced = threading.Event(), [], []
    fleet, ids = _stuck_fleet(monkeypatch, release, runs, fenced)
    fleet.start(ids)
    _wait_until(lambda: len(runs) == 1)
    started = time.monotonic()
    fleet.stop(ids, timeout_s=0.1)
    assert time.monotonic() - started < 5
    assert fenced == ["passentry-bridge.default"]
    assert fleet.running() == set()  # let go: the stuck call can no longer commit
    release.set()


def test_a_source_assigned_again_while_its_stuck_run_ends_runs_again_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stuck run was fenced when it was stopped: the source need not wait for it, and
    the old run's end leaves the new run's readiness and metrics alone."""
    release, runs, fenced = threading.Event(), [], []
    metrics, health = Metrics(), ProcessHealth()
    fleet, ids = _stuck_fleet(monkeypatch, release, runs, fenced, metrics, health)
    fleet.start(ids)
    _wait_until(lambda: len(runs) == 1)
    fleet.stop(ids, timeout_s=0.1)
    fleet.start(ids)
    _wait_until(lambda: len(runs) == 2 and fleet.running() == set(ids))
    release.set()  # the first run's call returns; it ends
    time.sleep(0.2)
    assert fleet.running() == set(ids)
    assert health.source("default") is not None
    assert sample(metrics, "passentry_bridge_source_active", source_id="default") == 1
    fleet.stop_all(5)
    assert fleet.running() == set()
    assert sample(metrics, "passentry_bridge_source_active", source_id="default") == 0
    assert fenced == ["passentry-bridge.default"]  # the second run stopped in time


def test_a_source_released_to_another_member_is_not_fenced_nor_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release, runs, fenced = threading.Event(), [], []
    fleet, ids = _stuck_fleet(monkeypatch, release, runs, fenced)
    fleet.start(ids)
    _wait_until(lambda: len(runs) == 1)
    started = time.monotonic()
    fleet.hold(ids)
    fleet.release(ids)
    assert time.monotonic() - started < 1
    assert runs[0].is_set()  # told to stop
    assert fenced == []
    release.set()
    _wait_until(lambda: fleet.running() == set())


def _beating_fleet(
    monkeypatch: pytest.MonkeyPatch, runs: list[threading.Event], beating: threading.Event
) -> tuple[Fleet, list[str]]:
    """A fleet whose runs beat their health while ``beating`` is set (a loop that moves) and
    stop when told; a run that stops beating is one stuck in a call."""

    class Beating(_Runner):
        def __init__(self, *args: Any, stop: threading.Event, health: Any, **kwargs: Any) -> None:
            self.stop, self.health = stop, health
            runs.append(stop)

        def run(self) -> int:
            while not self.stop.wait(0.02):
                if beating.is_set():
                    self.health.beat()
            return EXIT_OK

    monkeypatch.setattr(fleet_module, "Source", _Source)
    monkeypatch.setattr(fleet_module, "SourceRunner", Beating)
    config = load_config()
    fleet = Fleet(config, RunOptions(serve_http=False), Metrics(), ProcessHealth(),
                  restart_fatal=True, fencer=lambda txn_id: True)  # fmt: skip
    return fleet, [source.id for source in config.sources]


def test_a_held_source_that_moves_is_taken_back_without_a_restart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs: list[threading.Event] = []
    beating = threading.Event()
    beating.set()
    fleet, ids = _beating_fleet(monkeypatch, runs, beating)
    fleet.start(ids)
    _wait_until(lambda: len(runs) == 1)
    fleet.hold(ids)
    assert fleet.running() == set(ids)
    time.sleep(0.1)  # its loop beats meanwhile
    fleet.start(ids)  # assigned again after the rejoin
    time.sleep(0.2)
    assert len(runs) == 1  # the same run, never stopped
    assert not runs[0].is_set()
    fleet.stop_all(5)


def test_a_held_source_stuck_in_a_call_is_started_afresh_when_assigned_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs: list[threading.Event] = []
    beating = threading.Event()
    beating.set()
    fleet, ids = _beating_fleet(monkeypatch, runs, beating)
    fleet.start(ids)
    _wait_until(lambda: len(runs) == 1)
    time.sleep(0.1)
    beating.clear()  # a call that does not return: the loop stops beating
    time.sleep(0.1)
    fleet.hold(ids)
    time.sleep(0.1)
    fleet.start(ids)
    assert runs[0].is_set()  # the stuck run was told to stop, and left behind
    _wait_until(lambda: len(runs) == 2 and fleet.running() == set(ids))
    assert not runs[1].is_set()
    fleet.stop_all(5)


def test_a_held_source_that_fails_is_not_started_again_until_assigned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fenced while held: the member that fenced it owns it now."""
    runs: list[threading.Event] = []
    go_on = threading.Event()

    class Fenced(_Runner):
        def __init__(self, *args: Any, stop: threading.Event, **kwargs: Any) -> None:
            self.stop = stop
            self.fatal: BridgeError | None = None
            runs.append(stop)

        def run(self) -> int:
            if len(runs) > 1:
                self.stop.wait()
                return EXIT_OK
            go_on.wait(10)
            self.fatal = KafkaFatalError("fenced", fenced=True)
            return EXIT_FATAL

    monkeypatch.setattr(fleet_module, "Source", _Source)
    monkeypatch.setattr(fleet_module, "SourceRunner", Fenced)
    config = load_config()
    ids = [source.id for source in config.sources]
    fleet = Fleet(config, RunOptions(serve_http=False), Metrics(), ProcessHealth(),
                  restart_fatal=True, fencer=lambda txn_id: True)  # fmt: skip
    fleet.start(ids)
    _wait_until(lambda: len(runs) == 1)
    fleet.hold(ids)
    go_on.set()
    _wait_until(lambda: fleet.running() == set())
    time.sleep(0.2)
    assert len(runs) == 1  # no restart after the fenced pause
    fleet.start(ids)
    _wait_until(lambda: len(runs) == 2 and fleet.running() == set(ids))
    fleet.stop_all(5)


def test_a_fenced_source_runs_again_soon_and_another_fatal_one_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pauses: list[float] = []

    class Fatal(_Runner):
        def __init__(self, *args: Any, stop: threading.Event, **kwargs: Any) -> None:
            self.stop = stop
            self.fatal: BridgeError | None = None

        def run(self) -> int:
            if len(pauses) >= 2:
                return EXIT_OK
            self.fatal = (
                KafkaFatalError("fenced", fenced=True) if not pauses else ApiAuthError("401")
            )
            if not pauses:
                # Record how long the fleet waits before the next run, without waiting.
                wait = self.stop.wait
                self.stop.wait = lambda t=None: pauses.append(t) or wait(0)  # type: ignore[method-assign]
            return EXIT_FATAL

    monkeypatch.setattr(fleet_module, "Source", _Source)
    monkeypatch.setattr(fleet_module, "SourceRunner", Fatal)
    config = load_config()
    fleet = Fleet(config, RunOptions(serve_http=False), Metrics(), ProcessHealth(),
                  restart_fatal=True, fencer=lambda txn_id: True)  # fmt: skip
    fleet.start(source.id for source in config.sources)
    _wait_until(lambda: len(pauses) == 2)
    fleet.stop_all(5)
    fenced_pause, other_pause = pauses
    assert 3.0 <= fenced_pause <= 4.5
    assert 30.0 <= other_pause <= 45.0


def _wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
