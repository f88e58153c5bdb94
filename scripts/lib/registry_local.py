"""registry-local: a real, Confluent-compatible schema registry (Apicurio Registry 3.x, in-memory
storage) from its Maven Central distribution, for integration tests. No Docker, no tarball
from anywhere but Maven Central.

    scripts/registry-local start    start (or reuse) the registry; LAST stdout line = the base
                                    URL for Confluent clients: http://127.0.0.1:<port>/apis/ccompat/v7
    scripts/registry-local restart  stop, then start (storage is in memory: a restart is empty)
    scripts/registry-local stop     SIGTERM, wait up to REGISTRY_LOCAL_STOP_TIMEOUT (30 s), then
                                    SIGKILL
    scripts/registry-local status   print the URL and exit 0 if running and answering, else 1

The tests drive the same code through ``Registry`` (tests/integration/registry_fixtures.py).

Layout (all git-ignored):
  .local/registry/app/  the packaged Quarkus application (quarkus-run.jar, lib/, app/,
                        quarkus/), fetched by Maven (the ``all`` tar.gz of
                        io.apicurio:apicurio-registry-app, version in registry/pom.xml),
                        checked against registry/app.sha256, then unpacked. Maven is skipped
                        when app/.pom.sha256 matches (a warm start never touches Maven).
                        Shared by all instances.
  $REGISTRY_LOCAL_DIR   one registry instance (default .local/registry):
                        config/application.properties (a copy of registry/application.properties;
                        Quarkus reads it from the working directory), registry.log (the
                        Quarkus log), registry.pid, url

Storage policy: in-memory H2, so every start is an empty registry, on new free loopback ports
(HTTP and the Quarkus management interface). ``start`` while the registry runs (pid alive, same
instance, answers) just prints its URL. A stale pid file is replaced.

Readiness is a real request: GET <url>/subjects must answer 200 with a JSON list.

Java: Apicurio 3.1+ needs Java 21+ (class file 65). The first runtime of at least
REGISTRY_LOCAL_MIN_JAVA (default 21) is used, from: REGISTRY_LOCAL_JAVA (a java binary, used as
is), $JAVA_HOME/bin/java, ``java`` on PATH, then the newest /usr/lib/jvm/*/bin/java.

Environment:
  REGISTRY_LOCAL_DIR            instance dir (default <project>/.local/registry)
  REGISTRY_LOCAL_APP            app dir (default <project>/.local/registry/app)
  REGISTRY_LOCAL_MAVEN_REPO     passed as -Dmaven.repo.local (default: Maven's own, ~/.m2)
  REGISTRY_LOCAL_JAVA, REGISTRY_LOCAL_MIN_JAVA   see above
  REGISTRY_LOCAL_JAVA_OPTS      default "-Xms128m -Xmx512m -XX:+UseSerialGC
                                -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError"
  REGISTRY_LOCAL_CDS            0 (default) or 1: on Java 19+, 1 adds -XX:+AutoCreateSharedArchive
                                with the archive in the app dir (cds-java<N>.jsa, ~80 MB, dumped
                                when a registry exits: the first stop takes ~10 s longer); later
                                starts are then ~1-2 s faster. Off by default: a fresh checkout
                                (CI) starts once and would only pay for the dump.
  REGISTRY_LOCAL_START_TIMEOUT, REGISTRY_LOCAL_STOP_TIMEOUT  seconds (180, 30)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from scripts.lib import jvm_service as svc

__all__ = ["Registry", "main", "pick_java"]

PROG = "registry-local"
ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "registry" / "pom.xml"
# The sha256 of the archive Maven brings, pinned: what runs is what was reviewed.
APP_SUM = ROOT / "registry" / "app.sha256"
PROPERTIES = ROOT / "registry" / "application.properties"
API_PATH = "/apis/ccompat/v7"
DEFAULT_JAVA_OPTS = (
    "-Xms128m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError"
)


def say(text: str) -> None:
    svc.say(PROG, text)


def pick_java(env: Mapping[str, str], minimum: int, jvms: Path = Path("/usr/lib/jvm")) -> Path:
    """The first Java runtime of at least ``minimum``, in the order the docstring gives."""
    if env.get("REGISTRY_LOCAL_JAVA"):
        return Path(env["REGISTRY_LOCAL_JAVA"])
    candidates = []
    if env.get("JAVA_HOME"):
        candidates.append(Path(env["JAVA_HOME"]) / "bin" / "java")
    on_path = shutil.which("java", path=env.get("PATH"))
    if on_path:
        candidates.append(Path(on_path))
    installed = [(svc.java_major(p), p) for p in sorted(jvms.glob("*/bin/java"))]
    candidates += [p for major, p in sorted(installed, key=lambda x: -(x[0] or 0)) if major]
    seen = []
    for candidate in candidates:
        major = svc.java_major(candidate)
        if major is None:
            continue
        if major >= minimum:
            return candidate
        seen.append(f"{candidate} ({major})")
    raise svc.Failure(
        f"no Java {minimum}+ runtime found (Apicurio Registry 3.1+ needs Java 21). Tried: "
        + (", ".join(seen) or "nothing")
        + "\ninstall one (e.g. a Temurin 21+ JDK under /usr/lib/jvm)"
        " or set REGISTRY_LOCAL_JAVA=/path/to/java"
    )


def resolve_app(env: Mapping[str, str]) -> Path:
    """The registry's application, fetched, checked and unpacked on first use."""
    dest = Path(env.get("REGISTRY_LOCAL_APP") or ROOT / ".local/registry/app")

    def maven_args(tmp: Path) -> list[str]:
        args = ["-f", str(POM)]
        if env.get("REGISTRY_LOCAL_MAVEN_REPO"):
            args.append(f"-Dmaven.repo.local={env['REGISTRY_LOCAL_MAVEN_REPO']}")
        return [*args, "dependency:copy", f"-Dregistry.app.dir={tmp}.download"]

    def unpack(tmp: Path) -> None:
        download = Path(f"{tmp}.download")
        try:
            name, digest = _pin()
            archive = download / name
            if not archive.is_file() or svc.sha256_of(archive) != digest:
                raise svc.Failure(
                    f"the registry archive Maven brought is not the one {APP_SUM} pins:"
                    " not running it"
                )
            tmp.mkdir()
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
        finally:
            shutil.rmtree(download, ignore_errors=True)
        if not (tmp / "quarkus-run.jar").is_file():
            raise svc.Failure(f"no quarkus-run.jar in the unpacked registry ({POM})")

    return svc.maven_fetch(
        dest,
        inputs=[POM.read_bytes(), APP_SUM.read_bytes()],
        maven_args=maven_args,
        finish=unpack,
        prog=PROG,
        what=f"Apicurio Registry of {POM}",
    )


def _pin() -> tuple[str, str]:
    """registry/app.sha256's one line: (file name, sha256)."""
    digest, _, name = APP_SUM.read_text().strip().partition("  ")
    return name, digest


def answers(url: str) -> bool:
    """The Confluent "list subjects" call answers 200 with a JSON list."""
    try:
        with urllib.request.urlopen(url + "/subjects", timeout=3) as reply:
            return reply.status == 200 and isinstance(json.load(reply), list)
    except (OSError, ValueError):
        return False


class Registry:
    """One instance dir: its JVM and its URL."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        self.env = env
        self.dir = Path(env.get("REGISTRY_LOCAL_DIR") or ROOT / ".local/registry").absolute()
        self.java_opts = svc.setting(env, "REGISTRY_LOCAL_JAVA_OPTS", DEFAULT_JAVA_OPTS).split()
        self.min_java = int(svc.positive(env, "REGISTRY_LOCAL_MIN_JAVA", 21, "a Java version"))
        self.start_s = svc.positive(env, "REGISTRY_LOCAL_START_TIMEOUT", 180, "seconds")
        self.stop_s = svc.positive(env, "REGISTRY_LOCAL_STOP_TIMEOUT", 30, "seconds")

    @property
    def pid_file(self) -> Path:
        return self.dir / "registry.pid"

    def pid(self) -> int | None:
        pid = svc.read_pid(self.pid_file)
        return pid if svc.runs_as(pid, f"-Dregistry.local.instance={self.dir} ") else None

    def url(self) -> str:
        return (self.dir / "url").read_text().strip()

    def start(self) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        with svc.locked(self.dir / ".lock", self.start_s):
            pid = self.pid()
            if pid is not None:
                url = self.url()
                if svc.wait_ready(pid, self.start_s, lambda: answers(url)) is not svc.Ready.YES:
                    self._fail(f"registry pid {pid} is running but does not answer on {url}")
                say(f"already running (pid {pid})")
                return url
            stale = svc.read_pid(self.pid_file)
            if stale is not None:
                say(f"removing stale pid file (pid {stale} is not running)")
            for name in ("registry.pid", "url", "registry.log"):
                (self.dir / name).unlink(missing_ok=True)
            java = pick_java(self.env, self.min_java)
            app = resolve_app(self.env)
            return self._launch(java, app)

    def stop(self) -> None:
        svc.stop_instance(
            self.dir,
            self.pid,
            [self.pid_file, self.dir / "url"],
            timeout_s=self.stop_s,
            prog=PROG,
            what="registry",
        )

    def status(self) -> str | None:
        pid = self.pid()
        if pid is None or not (self.dir / "url").is_file():
            say("not running")
            return None
        if not answers(self.url()):
            say(f"pid {pid} is alive but does not answer on {self.url()}")
            return None
        return self.url()

    def _launch(self, java: Path, app: Path) -> str:
        cds = []
        major = svc.java_major(java) or 0
        if self.env.get("REGISTRY_LOCAL_CDS") == "1" and major >= 19:
            archive = f"-XX:SharedArchiveFile={app}/cds-java{major}.jsa"
            cds = ["-XX:+AutoCreateSharedArchive", archive]
        port, management = svc.free_ports(2)
        url = f"http://127.0.0.1:{port}{API_PATH}"
        (self.dir / "config").mkdir(exist_ok=True)
        shutil.copyfile(PROPERTIES, self.dir / "config" / "application.properties")
        command = [
            str(java), *self.java_opts, *cds, "-Djava.awt.headless=true",
            # names the instance in the command line (the trailing space ends the dir)
            f"-Dregistry.local.instance={self.dir}",
            "-Djava.util.logging.manager=org.jboss.logmanager.LogManager",
            "-Dquarkus.http.host=127.0.0.1", f"-Dquarkus.http.port={port}",
            "-Dquarkus.management.host=127.0.0.1", f"-Dquarkus.management.port={management}",
            "-jar", str(app / "quarkus-run.jar"),
        ]  # fmt: skip
        try:
            pid = svc.start_answering(
                command,
                instance=self.dir,
                output=self.dir / "registry.log",
                pid_file=self.pid_file,
                address=url,
                address_file=self.dir / "url",
                answers=lambda: answers(url),
                timeout_s=self.start_s,
                prog=PROG,
                what="registry",
            )
        except svc.Failure as exc:
            self._fail(f"{exc} (java: {java})")
        say(f"registry pid {pid} ready at {url} (log: {self.dir}/registry.log)")
        return url

    def _fail(self, why: str) -> NoReturn:
        log = self.dir / "registry.log"
        raise svc.Failure(f"start failed: {why}\n--- {log}\n{svc.tail(log, 40)}")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("start", "restart", "stop", "status"):
        print(f"usage: {PROG} start|restart|stop|status", file=sys.stderr)
        return 2
    try:
        registry = Registry(os.environ)
        if argv[0] in ("stop", "restart"):
            registry.stop()
        if argv[0] in ("start", "restart"):
            print(registry.start())
        elif argv[0] == "status":
            url = registry.status()
            if url is None:
                return 1
            print(url)
    except svc.Failure as exc:
        say(str(exc))
        return 1
    return 0
