"""Child processes for the benchmarks: the local Kafka, the simulator, the programs measured.

Every child runs in its own process group, so stopping it also stops anything it started,
and :class:`Child` is a context manager: SIGTERM to the group, then SIGKILL after a grace
period, on every way out (a failure, Ctrl-C, SIGTERM to the harness). CPU time and RSS are
read from ``/proc/<pid>`` while a child runs, and from ``os.wait4`` when it exits.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

__all__ = [
    "REPO",
    "Child",
    "Kafka",
    "Simulator",
    "cpu_seconds",
    "free_port",
    "rss_mb",
    "scrape_metrics",
    "stat_cpu",
]

REPO = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")


def stat_cpu(path: str) -> tuple[str, float, float]:
    """A ``/proc/<pid>/stat`` or ``/proc/<pid>/task/<tid>/stat`` file's name, user and
    system CPU seconds (a process's include its ended threads, not its children)."""
    with open(path) as f:
        stat = f.read()
    # The name is in parentheses and may hold spaces or parentheses of its own.
    fields = stat[stat.rindex(")") + 2 :].split()
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    return name, int(fields[11]) / _TICKS, int(fields[12]) / _TICKS


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (its own threads, not its children)."""
    _, user, system = stat_cpu(f"/proc/{pid}/stat")
    return user + system


def rss_mb(pid: int) -> float:
    """Resident set size (VmRSS) of a running process, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape_metrics(port: int, client: httpx.Client) -> dict[str, float]:
    """``/metrics`` of a bridge, each sample name summed over its labels."""
    text = client.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0]
        with contextlib.suppress(ValueError):
            out[name] = out.get(name, 0.0) + float(value)
    return out


@dataclass(frozen=True, slots=True)
class Exit:
    code: int
    cpu_s: float  # user + system of the whole run, from wait4
    max_rss_mb: float


class Child:
    """One child process in its own session (process group); stopped on ``__exit__``."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        log_dir: Path,
        capture_stdout: bool = False,
    ) -> None:
        self.name = name
        self._argv = argv
        self._env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log_path = log_dir / f"{name}.log"
        self._capture = capture_stdout
        self._log: IO[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.exit: Exit | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} not started")
        return self.proc.pid

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self._argv,
            cwd=REPO,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if self._capture else self._log,
            stderr=self._log,
            start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.exit is None and self.proc is not None and self.proc.poll() is None

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> float:
        return rss_mb(self.pid)

    def wait(self, timeout: float) -> Exit:
        """Reap the child with ``os.wait4``, which also gives its CPU time; raise on timeout."""
        if self.exit is not None:
            return self.exit
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} still running after {timeout:.0f}s")
            time.sleep(0.02)
        code = os.waitstatus_to_exitcode(status)
        assert self.proc is not None
        self.proc.returncode = code  # reaped here, so Popen must not wait for it again
        self.exit = Exit(code, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)
        return self.exit

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the process group; SIGKILL if it is still there after ``grace_s``."""
        if self.proc is None:
            return
        if self.exit is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.wait(grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.wait(5.0)
        with contextlib.suppress(ProcessLookupError):  # anything the child left behind
            os.killpg(self.pid, signal.SIGKILL)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def read_line(self, timeout: float) -> str:
        """The next stdout line (``capture_stdout=True``); raises if none comes in time."""
        assert self.proc is not None
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if sel.select(timeout=0.2):
                    line = self.proc.stdout.readline().decode().strip()
                    if line:
                        return line
                    break
                if self.proc.poll() is not None:
                    break
        raise RuntimeError(f"{self.name} printed nothing (see {self.log_path})")


class Simulator(Child):
    """``passentry-bridge simulate --port 0 ...``; ``url`` is the first line it prints."""

    def __init__(self, args: list[str], *, log_dir: Path, name: str = "simulator") -> None:
        argv = [str(Path(sys.executable).parent / "passentry-bridge"), "simulate", "--port", "0"]
        super().__init__(name, [*argv, *args], log_dir=log_dir, capture_stdout=True)
        self.url = ""
        self._http = httpx.Client(timeout=10)

    def start(self) -> Self:
        super().start()
        try:
            self.url = self.read_line(timeout=600)  # a 1M backlog takes ~40 s to build
        except BaseException:
            self.stop()
            raise
        return self

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = self._http.get(f"{self.url}/_sim/stats").json()
        return body

    def requests(self) -> tuple[int, int]:
        """(requests, 429 answers) to ``GET /api/v1/scans`` so far."""
        stats = self.stats()
        key = "GET /api/v1/scans"
        return stats["requests"].get(key, 0), stats["rateLimited"].get(key, 0)

    def stop(self, grace_s: float = 10.0) -> None:
        self._http.close()
        super().stop(grace_s)


class Kafka:
    """The local broker: reuse a running one, or start one and stop it again on exit."""

    def __init__(self) -> None:
        self.bootstrap = ""
        self._started = False
        self._script = str(REPO / "scripts" / "kafka-local")

    def __enter__(self) -> Self:
        status = subprocess.run([self._script, "status"], capture_output=True, text=True)
        if status.returncode == 0:
            self.bootstrap = status.stdout.strip().splitlines()[-1]
            print(f"bench: reusing the running Kafka at {self.bootstrap}", file=sys.stderr)
        else:
            self._started = True  # from here on, stop it on the way out whatever happens
            out = subprocess.run([self._script, "start"], capture_output=True, text=True)
            if out.returncode != 0:
                sys.stderr.write(out.stderr)
                raise RuntimeError("scripts/kafka-local start failed")
            self.bootstrap = out.stdout.strip().splitlines()[-1]
            print(f"bench: started Kafka at {self.bootstrap}", file=sys.stderr)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._started:
            subprocess.run([self._script, "stop"], capture_output=True)
            print("bench: stopped the Kafka it started", file=sys.stderr)

    def create_topics(self, names: list[str], partitions: int = 6) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names])
        for future in futures.values():
            future.result(timeout=30)
