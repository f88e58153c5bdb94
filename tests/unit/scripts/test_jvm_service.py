"""scripts/lib/jvm_service.py: what kafka-local, kafka-cluster and registry-local share."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.lib import jvm_service as svc


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)  # marker-7f3"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_pid_file_counts_only_while_its_process_runs_as_itself(
    tmp_path: Path, child: subprocess.Popen[bytes]
) -> None:
    pid_file = tmp_path / "x.pid"
    assert svc.read_pid(pid_file) is None
    pid_file.write_text(f"{child.pid}\n")
    assert svc.read_pid(pid_file) == child.pid
    assert svc.runs_as(child.pid, "marker-7f3")
    assert not svc.runs_as(child.pid, "another instance's marker")  # a reused pid
    child.kill()
    child.wait()
    assert not svc.alive(child.pid)
    assert not svc.runs_as(child.pid, "marker-7f3")  # a stale pid file
    pid_file.write_text("garbage")
    assert svc.read_pid(pid_file) is None


def test_state_code_tells_stopped_zombie_and_gone(tmp_path: Path) -> None:
    # A command name with a space and a parenthesis: the state follows the last ")".
    odd = tmp_path / "odd) name"
    odd.symlink_to(sys.executable)
    proc = subprocess.Popen([str(odd), "-c", "import time; time.sleep(60)"])
    try:
        assert svc.state_code(proc.pid) in ("R", "S")
        os.kill(proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while svc.state_code(proc.pid) != "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert svc.state_code(proc.pid) == "T"
        assert svc.alive(proc.pid)  # stopped by a signal still counts
        proc.kill()
        deadline = time.monotonic() + 10
        while svc.state_code(proc.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert svc.state_code(proc.pid) == "Z"  # not reaped yet
        assert not svc.alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert svc.state_code(proc.pid) is None
    assert not svc.alive(proc.pid)


def test_a_launched_service_outlives_its_starter_and_logs_to_its_file(tmp_path: Path) -> None:
    out = tmp_path / "service.out"
    out.write_text("before\n")
    pid = svc.launch(
        [sys.executable, "-c", "print('hello', flush=True); import time; time.sleep(60)"],
        cwd=tmp_path,
        output=out,
    )
    try:
        assert os.getsid(pid) == pid  # a session of its own: a terminal's ^C does not reach it
        deadline = time.monotonic() + 30
        while "hello" not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert out.read_text() == "before\nhello\n"  # appended
    finally:
        svc.stop(pid, 5, "test", "service")
    assert not svc.alive(pid)


def test_wait_ready_tells_ready_exited_and_timed_out(child: subprocess.Popen[bytes]) -> None:
    assert svc.wait_ready(child.pid, 5, lambda: True) is svc.Ready.YES
    assert svc.wait_ready(child.pid, 0.3, lambda: False) is svc.Ready.TIMED_OUT
    child.kill()
    child.wait()
    assert svc.wait_ready(child.pid, 5, lambda: False) is svc.Ready.EXITED


def test_stop_kills_what_ignores_sigterm(capsys: pytest.CaptureFixture[str]) -> None:
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            " print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    assert stubborn.stdout is not None
    stubborn.stdout.readline()
    stubborn.stdout.close()
    threading.Thread(target=stubborn.wait, daemon=True).start()  # reaps it: no zombie
    svc.stop(stubborn.pid, 0.5, "test", "service")
    assert not svc.alive(stubborn.pid)
    assert stubborn.wait(timeout=10) == -signal.SIGKILL
    assert "still alive after 0s; sending SIGKILL" in capsys.readouterr().err


def test_one_command_at_a_time_per_instance(tmp_path: Path) -> None:
    lock = tmp_path / "inst" / ".lock"
    with (
        svc.locked(lock, 1),
        pytest.raises(svc.Failure, match="timed out waiting for"),
        svc.locked(lock, 0.3),
    ):
        pass
    with svc.locked(lock, 0.3):  # free again
        pass


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = svc.free_ports(4)
    assert len(set(ports)) == 4
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_java_major_reads_the_release_file_or_asks_the_binary(tmp_path: Path) -> None:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text("#!/bin/sh\necho 'openjdk version \"1.8.0_392\"' >&2\n")
    java.chmod(0o755)
    assert svc.java_major(java) == 8
    (home / "release").write_text('IMPLEMENTOR="x"\nJAVA_VERSION="25.0.1"\n')
    assert svc.java_major(java) == 25
    assert svc.java_major(tmp_path / "missing") is None


def _fake_mvn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``mvn`` that writes one jar into the folder its last argument names, and counts its
    runs (a unit test's stand-in; the test beds' own starts run the real Maven)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    runs = tmp_path / "runs"
    mvn = bin_dir / "mvn"
    mvn.write_text(
        "#!/bin/sh\n"
        f'echo run >> "{runs}"\n'
        'for last; do :; done\ndest=${last#-Ddest=}\nmkdir -p "$dest"\n'
        'printf "\\033[0mjar" > "$dest/a.jar"\necho "\\033[1mresolved\\033[0m"\n'
    )
    mvn.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return runs


def test_maven_runs_once_per_pom_and_its_result_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = _fake_mvn(tmp_path, monkeypatch)
    dest = tmp_path / "libs"
    checked: list[Path] = []

    def fetch(pom: bytes) -> Path:
        return svc.maven_fetch(
            dest,
            inputs=[pom],
            maven_args=lambda tmp: [f"-Ddest={tmp}"],
            finish=checked.append,
            prog="test",
            what="jars",
        )

    assert fetch(b"pom 1") == dest
    assert (dest / "a.jar").read_bytes() == b"\x1b[0mjar"
    assert "resolved" in capsys.readouterr().err  # Maven's output, without its colours
    assert fetch(b"pom 1") == dest
    assert runs.read_text().count("run") == 1  # a warm start never runs Maven
    fetch(b"pom 2")
    assert runs.read_text().count("run") == 2
    assert len(checked) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "libs", "libs.lock", "runs"]


def test_a_refused_fetch_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_mvn(tmp_path, monkeypatch)
    dest = tmp_path / "libs"

    def refuse(tmp: Path) -> None:
        raise svc.Failure(f"{tmp.name}: not the pinned jars")

    with pytest.raises(svc.Failure, match="not the pinned jars"):
        svc.maven_fetch(
            dest,
            inputs=[b"pom"],
            maven_args=lambda tmp: [f"-Ddest={tmp}"],
            finish=refuse,
            prog="test",
            what="jars",
        )
    assert not dest.exists()
    assert not list(tmp_path.glob("libs.tmp.*"))


class _Service:
    def __init__(self, pid: int | None) -> None:
        self._pid = pid
        self.calls: list[str] = []

    def pid(self) -> int | None:
        return self._pid

    def start(self) -> str:
        self.calls.append("start")
        return "127.0.0.1:9092"

    def stop(self) -> None:
        self.calls.append("stop")


def test_a_session_stops_only_the_service_it_started() -> None:
    mine = _Service(pid=None)
    with svc.running(mine) as address:
        assert address == "127.0.0.1:9092"
        assert mine.calls == ["start"]
    assert mine.calls == ["start", "stop"]
    developers = _Service(pid=4242)  # already running: reused and left running
    with svc.running(developers):
        pass
    assert developers.calls == ["start"]


def test_a_service_that_exits_or_never_answers_leaves_nothing_behind(tmp_path: Path) -> None:
    pid_file, address_file = tmp_path / "x.pid", tmp_path / "address"

    def start(code: str, answers: bool, timeout_s: float) -> int:
        return svc.start_answering(
            [sys.executable, "-c", code],
            instance=tmp_path,
            output=tmp_path / "x.out",
            pid_file=pid_file,
            address="127.0.0.1:1",
            address_file=address_file,
            answers=lambda: answers,
            timeout_s=timeout_s,
            prog="test",
            what="service",
        )

    with pytest.raises(svc.Failure, match="the service JVM exited during startup"):
        start("pass", answers=False, timeout_s=10)
    assert not pid_file.exists()
    assert not address_file.exists()
    with pytest.raises(svc.Failure, match=r"no answer on 127\.0\.0\.1:1 within 0s"):
        start("import time; time.sleep(60)", answers=False, timeout_s=0.3)
    assert not pid_file.exists()
    assert not address_file.exists()
    pid = start("import time; time.sleep(60)", answers=True, timeout_s=10)
    try:
        assert svc.read_pid(pid_file) == pid
        assert address_file.read_text() == "127.0.0.1:1\n"
    finally:
        svc.stop(pid, 5, "test", "service")
