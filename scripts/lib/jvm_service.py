"""What the test beds' Java services share: their pid files, an instance lock, a detached
launch, readiness waits, a stop that escalates, free loopback ports, and artifacts fetched
once by Maven and checked against pinned sha256 sums.

Standard library only: scripts/kafka-local, scripts/kafka-cluster and scripts/registry-local
run with the system's python3, before any virtualenv exists. The tests import the same code.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

__all__ = [
    "Failure",
    "Ready",
    "Service",
    "alive",
    "free_ports",
    "java_major",
    "launch",
    "locked",
    "maven_fetch",
    "positive",
    "read_pid",
    "running",
    "runs_as",
    "say",
    "setting",
    "sha256_of",
    "start_answering",
    "stop",
    "stop_instance",
    "tail",
    "wait_gone",
    "wait_ready",
]


class Failure(Exception):
    """Ends a command with its message and exit status 1."""


def say(prog: str, text: str) -> None:
    print(f"{prog}: {text}", file=sys.stderr, flush=True)


def setting(env: Mapping[str, str], name: str, default: str) -> str:
    """An environment setting; unset or empty means the default (as bash's ``${X:-d}``)."""
    return env.get(name) or default


def positive(env: Mapping[str, str], name: str, default: float, unit: str) -> float:
    """A numeric setting; anything but a positive number is refused, naming it."""
    text = setting(env, name, str(default))
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise Failure(f"{name} must be a positive number ({unit}), not {text!r}")
    return value


# --- processes ------------------------------------------------------------------------------


def read_pid(path: Path) -> int | None:
    """The pid a pid file holds, if it holds one."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def state_code(pid: int) -> str | None:
    """The one-letter state in ``/proc/<pid>/stat`` (``R``, ``S``, ``T`` stopped by a
    signal, ``Z`` zombie, ...), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may itself hold spaces and parentheses.
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int | None) -> bool:
    """Runs (or is stopped by a signal); a zombie has ended."""
    return pid is not None and state_code(pid) not in (None, "Z", "X")


def runs_as(pid: int | None, pattern: str) -> bool:
    """``pid`` is alive and its command line contains ``pattern``: a pid file can outlive its
    process, and the pid be reused by another."""
    if not alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return pattern in cmdline


def launch(command: Sequence[str], *, cwd: Path, output: Path) -> int:
    """Start ``command`` in a session of its own (it outlives the caller), its stdout and
    stderr appended to ``output``; its pid."""
    with open(output, "ab") as out:
        proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # Reaped when it ends, should the caller still run then (a test session): no zombie, and
    # no Popen left unwaited for.
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return proc.pid


class Ready(enum.Enum):
    YES = "ready"
    EXITED = "exited"
    TIMED_OUT = "timed out"


def wait_ready(pid: int, timeout_s: float, probe: Callable[[], bool]) -> Ready:
    """Until ``probe()`` answers true, ``pid`` ends, or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return Ready.EXITED
        if probe():
            return Ready.YES
        time.sleep(0.25)
    return Ready.TIMED_OUT


def start_answering(
    command: Sequence[str],
    *,
    instance: Path,
    output: Path,
    pid_file: Path,
    address: str,
    address_file: Path,
    answers: Callable[[], bool],
    timeout_s: float,
    prog: str,
    what: str,
) -> int:
    """``launch`` an instance's service, record its pid and ``address`` in the instance, and
    wait until ``answers()``; its pid. A service that exits first, or does not answer in
    time (it is killed), leaves no pid or address behind and raises ``Failure`` saying
    which; the caller adds its logs."""
    pid = launch(command, cwd=instance, output=output)
    pid_file.write_text(f"{pid}\n")
    address_file.write_text(address + "\n")
    ready = wait_ready(pid, timeout_s, answers)
    if ready is Ready.YES:
        return pid
    if ready is Ready.TIMED_OUT:
        stop(pid, 0, prog, what)
    pid_file.unlink(missing_ok=True)
    address_file.unlink(missing_ok=True)
    if ready is Ready.EXITED:
        raise Failure(f"the {what} JVM exited during startup")
    raise Failure(f"no answer on {address} within {timeout_s:.0f}s ({what} killed)")


def wait_gone(pid: int, timeout_s: float) -> bool:
    """Whether ``pid`` ended within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop(pid: int, timeout_s: float, prog: str, what: str) -> None:
    """SIGTERM, then SIGKILL when ``pid`` outlives ``timeout_s``; returns once it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)  # a SIGSTOPped process cannot act on SIGTERM
        os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, timeout_s):
        return
    say(prog, f"{what} pid {pid} still alive after {timeout_s:.0f}s; sending SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_gone(pid, 60.0)


def stop_instance(
    instance: Path,
    pid: Callable[[], int | None],
    leftovers: Sequence[Path],
    *,
    timeout_s: float,
    prog: str,
    what: str,
) -> None:
    """``stop`` an instance dir's service (``pid()`` finds it), in turn with the instance's
    other commands when its lock comes free in time, and remove what only a running service
    has (its pid file, its address)."""
    if not instance.is_dir():
        say(prog, "not running")
        return
    with contextlib.ExitStack() as turn:
        try:
            turn.enter_context(locked(instance / ".lock", timeout_s))
        except Failure:
            say(prog, "lock busy; stopping anyway")
        found = pid()
        if found is not None:
            stop(found, timeout_s, prog, what)
        for path in leftovers:
            path.unlink(missing_ok=True)
        say(prog, "not running" if found is None else f"stopped (pid {found})")


class Service(Protocol):
    """An instance dir's service: kafka-local's ``Broker``, registry-local's ``Registry``."""

    def pid(self) -> int | None: ...
    def start(self) -> str: ...
    def stop(self) -> None: ...


@contextlib.contextmanager
def running(service: Service) -> Iterator[str]:
    """The service, started or reused (what ``start`` prints); stopped at the end only if it
    was not running before, so a developer's own broker outlives a test session."""
    already = service.pid() is not None
    answer = service.start()
    try:
        yield answer
    finally:
        if not already:
            service.stop()


def tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def locked(path: Path, timeout_s: float) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``, so two commands on one instance take turns. The
    lock file is opened close-on-exec: a service launched under it does not inherit it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Failure(f"timed out waiting for {path}") from None
                time.sleep(0.2)
        yield


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` TCP ports free on ``host``, and on 127.0.0.1 too when ``host`` is another address
    (a service may bind both)."""
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            s = socket.socket()
            socks.append(s)
            s.bind((host, 0))
            port = int(s.getsockname()[1])
            if host != "127.0.0.1":
                loopback = socket.socket()
                socks.append(loopback)
                try:
                    loopback.bind(("127.0.0.1", port))
                except OSError:
                    continue
            ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


# --- Java -----------------------------------------------------------------------------------

_RELEASE = re.compile(r'^JAVA_VERSION="([^"]+)"', re.MULTILINE)
_VERSION_OUTPUT = re.compile(r'version "([^"]+)"')


def java_major(binary: Path) -> int | None:
    """The major version of a java binary: from its home's ``release`` file when there is one
    (no JVM start), else from ``java -version``."""
    real = binary.resolve()
    if not os.access(real, os.X_OK):
        return None
    version = None
    with contextlib.suppress(OSError):
        found = _RELEASE.search((real.parent.parent / "release").read_text())
        version = found.group(1) if found else None
    if version is None:
        try:
            out = subprocess.run(
                [str(real), "-version"], capture_output=True, text=True, timeout=30, check=False
            ).stderr
        except (OSError, subprocess.TimeoutExpired):
            return None
        found = _VERSION_OUTPUT.search(out)
        version = found.group(1) if found else None
    if version is None:
        return None
    version = version.removeprefix("1.")  # 1.8.0 is Java 8
    digits = re.match(r"\d+", version)
    return int(digits.group()) if digits else None


# --- artifacts ------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def maven_fetch(
    dest: Path,
    *,
    inputs: Sequence[bytes],
    maven_args: Callable[[Path], list[str]],
    finish: Callable[[Path], None],
    prog: str,
    what: str,
    lock_timeout_s: float = 900.0,
) -> Path:
    """``dest``, made once by Maven and kept while ``inputs`` (the pom, the pinned sums, the
    arguments) are unchanged: ``dest/.pom.sha256`` holds their digest, so a warm start never
    runs Maven. ``maven_args(tmp)`` are mvn's arguments writing into ``tmp``; ``finish(tmp)``
    checks (and unpacks) what came and raises ``Failure`` to refuse it. Processes fetching
    at once take turns; the second finds the first's result."""
    want = hashlib.sha256(b"\0".join(inputs)).hexdigest()
    stamp = dest / ".pom.sha256"

    def current() -> bool:
        with contextlib.suppress(OSError):
            return stamp.read_text().strip() == want
        return False

    if current():
        return dest
    with locked(dest.with_name(dest.name + ".lock"), lock_timeout_s):
        if current():
            return dest  # another process fetched it meanwhile
        if shutil.which("mvn") is None:
            raise Failure(f"mvn not found (needed once to fetch {what})")
        say(prog, f"resolving {what} with Maven into {dest} ...")
        tmp = dest.with_name(f"{dest.name}.tmp.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        command = ["mvn", "-q", "-B", "-Dstyle.color=never", *maven_args(tmp)]
        done = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False
        )
        # Maven 3.8 prints ANSI resets even with -B
        sys.stderr.write(re.sub(r"\x1b\[[0-9;]*m", "", done.stdout.decode(errors="replace")))
        try:
            if done.returncode != 0:
                raise Failure(f"Maven could not resolve {what}")
            finish(tmp)
            (tmp / ".pom.sha256").write_text(want + "\n")
            shutil.rmtree(dest, ignore_errors=True)
            tmp.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
