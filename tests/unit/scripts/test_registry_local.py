"""scripts/lib/registry_local.py without a JVM: which Java it picks, its arguments, and an
empty instance. (The registry itself runs in the integration sessions, through this code.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from scripts.lib import jvm_service as svc
from scripts.lib import registry_local
from scripts.lib.registry_local import Registry

ROOT = Path(__file__).resolve().parents[3]


def _jdk(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text("#!/bin/sh\nexit 0\n")
    java.chmod(0o755)
    (home / "release").write_text(f'JAVA_VERSION="{version}"\n')
    return java


def test_the_newest_installed_java_that_is_new_enough(tmp_path: Path) -> None:
    jvms = tmp_path / "jvm"
    old = _jdk(jvms, "java-17", "17.0.9")
    _jdk(jvms, "java-21", "21.0.2")
    newest = _jdk(jvms, "temurin-25", "25.0.1")
    env = {"PATH": str(old.parent)}  # `java` on PATH is 17: too old for Apicurio 3
    assert registry_local.pick_java(env, 21, jvms) == newest
    assert registry_local.pick_java({**env, "JAVA_HOME": str(jvms / "java-21")}, 21, jvms) == (
        jvms / "java-21" / "bin" / "java"
    )
    chosen = {"REGISTRY_LOCAL_JAVA": "/opt/my/java", **env}
    assert registry_local.pick_java(chosen, 21, jvms) == Path("/opt/my/java")  # as given


def test_no_java_new_enough_says_what_it_tried(tmp_path: Path) -> None:
    old = _jdk(tmp_path / "jvm", "java-17", "17.0.9")
    with pytest.raises(svc.Failure) as refused:
        registry_local.pick_java({"PATH": str(old.parent)}, 21, tmp_path / "jvm")
    assert f"{old} (17)" in str(refused.value)
    assert "REGISTRY_LOCAL_JAVA" in str(refused.value)


def test_the_pinned_archive_is_the_poms() -> None:
    name, digest = registry_local._pin()
    version = (ROOT / "registry" / "pom.xml").read_text().split("<apicurio.version>")[1]
    assert name == f"apicurio-registry-app-{version.split('<')[0]}-all.tar.gz"
    assert len(digest) == 64


def test_nothing_runs_in_an_empty_instance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = Registry({"REGISTRY_LOCAL_DIR": str(tmp_path / "none")})
    assert registry.status() is None
    registry.stop()
    assert capsys.readouterr().err.count("registry-local: not running") == 2


def test_the_cli_is_this_module() -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "registry-local"), "begin"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "usage: registry-local start|restart|stop|status" in done.stderr


def test_a_bad_java_version_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REGISTRY_LOCAL_MIN_JAVA", "twenty-one")
    assert registry_local.main(["status"]) == 1
    assert "REGISTRY_LOCAL_MIN_JAVA must be a positive number (a Java version)" in (
        capsys.readouterr().err
    )
