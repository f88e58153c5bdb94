"""Run the simulator for tests: in a background thread, or as a child process.

``SimulatorServer`` runs the aiohttp app on its own event loop in a daemon thread, bound to
a free port on 127.0.0.1, so a synchronous test can talk to it with httpx and reach into
``.store`` and ``.faults`` directly. ``SimulatorProcess`` starts ``passentry-bridge
simulate`` as a child process, for tests that must keep the simulator alive while they
kill the bridge (or the other way round); it reads the URL the command prints.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from types import TracebackType
from typing import IO, Self

from aiohttp import web

from passentry_simulator.app import Simulator, SimulatorConfig, build_app
from passentry_simulator.faults import Faults
from passentry_simulator.store import Store

__all__ = ["SimulatorProcess", "SimulatorServer"]


class SimulatorServer:
    """The simulator on a background thread. ``with SimulatorServer(cfg) as sim: sim.url``."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        faults: Faults | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 0.5,
    ) -> None:
        # Built here, on the caller's thread, so the backlog exists before start() returns
        # and a test may inspect the store before any request.
        self.sim = Simulator.create(config if config is not None else SimulatorConfig(), faults)
        self._host, self._port = host, port
        # In-flight requests (a hang fault) get this long before stop() cancels them.
        self._shutdown_timeout = shutdown_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (paths start with ``/api/v1/``)."""
        return f"http://{self._host}:{self._port}"

    @property
    def token(self) -> str:
        return self.sim.config.token

    @property
    def store(self) -> Store:
        return self.sim.store

    @property
    def faults(self) -> Faults:
        return self.sim.faults

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        self._thread = threading.Thread(target=self._run, name="passentry-simulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise RuntimeError("simulator failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(), which re-raises it
            self._error = exc
        finally:
            self._ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        runner = web.AppRunner(
            build_app(self.sim), access_log=None, shutdown_timeout=self._shutdown_timeout
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
            self._port = runner.addresses[0][1]
            self._ready.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()


class SimulatorProcess:
    """``passentry-bridge simulate`` as a child process; extra CLI flags go in ``args``.

    ``--port 0`` and ``--token`` are always passed; ``url`` is read from the first line the
    command prints. ``stop()`` sends SIGTERM and returns the exit code; ``kill()`` SIGKILLs.
    """

    def __init__(
        self,
        *args: str,
        token: str = "sim-token",  # noqa: S107 - the simulator's well-known test token
        startup_timeout: float = 30.0,
        stderr: IO[str] | int | None = None,
    ) -> None:
        self.token = token
        self.url = ""
        self._args = [*args, "--port", "0", "--token", token]
        self._startup_timeout = startup_timeout
        self._stderr = stderr
        self._proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("simulator process not started")
        return self._proc.pid

    def start(self) -> Self:
        cmd = [sys.executable, "-c", "from bridge.cli import main; main()", "simulate"]
        self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and command
            [*cmd, *self._args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.url = self._read_url(self._proc)
        return self

    def _read_url(self, proc: subprocess.Popen[str]) -> str:
        if proc.stdout is None:  # cannot happen with stdout=PIPE; narrows the type
            raise RuntimeError("simulator stdout is not a pipe")
        deadline = time.monotonic() + self._startup_timeout
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if sel.select(timeout=0.1):
                    line = proc.stdout.readline().strip()
                    if line:
                        return line
                    break  # EOF: the command died before printing its URL
                if proc.poll() is not None:
                    break
        self.kill()
        raise RuntimeError(f"simulator did not print its URL (exit code {proc.poll()})")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then wait; returns the exit code (0 on a clean shutdown)."""
        if self._proc is None:
            return 0
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        self._close()
        return code

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._close()

    def _close(self) -> None:
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
