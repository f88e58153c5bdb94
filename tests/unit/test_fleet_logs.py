""" "stopped source" is said once per stop, however many times the process asks its fleet to
stop (the end of ``Fleet.wait`` and the service's shutdown both do): issue 23 saw it twice
before the fleet was rewritten, and this keeps it once."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

import bridge.fleet as fleet_module
from bridge.config import load_config
from bridge.fleet import Fleet
from bridge.ops.health import ProcessHealth
from bridge.ops.metrics import Metrics
from bridge.runner import EXIT_OK, RunOptions


class _Source:
    source_id = "default"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self, grace_s: float) -> int:
        return 0


class _UntilStopped:
    fatal = None

    def __init__(self, *args: Any, stop: threading.Event, **kwargs: Any) -> None:
        self._stop = stop

    def run(self) -> int:
        self._stop.wait(30)
        return EXIT_OK


def test_stopped_source_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fleet_module, "Source", _Source)
    monkeypatch.setattr(fleet_module, "SourceRunner", _UntilStopped)
    fleet = Fleet(load_config(), RunOptions(serve_http=False), Metrics(), ProcessHealth(),
                  restart_fatal=False)  # fmt: skip
    stop = threading.Event()
    fleet.start(["default"])
    stop.set()
    with caplog.at_level(logging.INFO, logger="bridge.fleet"):
        assert fleet.wait(stop) == EXIT_OK  # stops every source
        fleet.stop_all(5)  # and the shutdown asks again
    said = [r.getMessage() for r in caplog.records if r.getMessage() == "stopped source"]
    assert said == ["stopped source"]
