"""kafka-local: a real single-node Apache Kafka broker (KRaft, broker and controller in one JVM)
from its Maven Central jars, for integration tests. No Docker, no downloaded tarball.

    scripts/kafka-local start    start (or reuse) the broker; LAST stdout line = bootstrap address
    scripts/kafka-local restart  the same broker again (same ports, same data), e.g. after kill -9
    scripts/kafka-local stop     SIGTERM, wait up to KAFKA_LOCAL_STOP_TIMEOUT (30 s), then SIGKILL
    scripts/kafka-local status   print the address and exit 0 if running and answering, else 1
    scripts/kafka-local libs     only resolve the jars; LAST stdout line = their folder (the
                                 Kafka image of scripts/image is built from them)
    scripts/kafka-local acls ... Apache Kafka's kafka-acls.sh (org.apache.kafka.tools.AclCommand),
                                 same arguments; the kafka-tools jar is fetched on first use

The tests drive the same code through ``Broker`` (tests/kafka_broker.py and the secure and
crash fixtures), so the command and the fixtures cannot drift apart.

--secure (before or after the command, or KAFKA_LOCAL_SECURE=1): a production-shaped broker in
its own instance dir (default .local/kafka-secure), so it runs beside the plaintext one:
  - clients connect to a SASL_SSL listener (SCRAM-SHA-512) on 127.0.0.1; the broker's
    certificate (names: DNS:localhost, IP:127.0.0.1) is signed by a CA made at format time;
  - a second SASL_SSL listener on another port presents a certificate of the same CA that
    names only ``wrong-host.invalid``: clients verifying the hostname must refuse it
    (hostname-mismatch tests without leaving loopback);
  - an unrelated CA (tls/wrong-ca.pem) for "CA does not match" tests;
  - SCRAM-SHA-512 users made at format time (kafka-storage format --add-scram) with random
    passwords: ``admin`` (super user), ``bridge`` (no ACLs: grant them) and ``broker`` (the
    broker itself: inter-broker traffic over the SASL_SSL listener, and SASL/PLAIN on the
    controller listener);
  - StandardAuthorizer with allow.everyone.if.no.acl.found=false.
``start`` and ``status`` then print, as the LAST stdout line, one JSON object without secrets:
{"bootstrap_servers", "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
"ssl_ca_location", "super_user": "admin", "wrong_host_bootstrap_servers", "wrong_ca_location",
"client_config", "admin_properties", "env_files": {user: path}}, where client_config is
client.json: the same object plus "users": {name: password} (mode 0600); admin_properties is
a Java client config (kafka-acls --command-config) for admin; and env_files hold the KAFKA_*
settings of the bridge for each user (``set -a; . file; set +a``).

Layout (all git-ignored):
  .local/kafka/libs/    runtime jars, resolved by Maven from kafka/pom.xml
                        (dependency:copy-dependencies) and checked against kafka/jars.sha256.
                        Maven is skipped when libs/.pom.sha256 matches the pom and the sums (a
                        warm start never touches Maven). Shared by all instances.
  .local/kafka/tools/   the kafka-tools jar (pom profile ``tools``), for ``acls``.
  $KAFKA_LOCAL_DIR      one broker instance (default .local/kafka, or .local/kafka-secure):
                        server.properties, data/ (KRaft log dirs), broker.log (log4j, see
                        kafka/log4j2.properties), broker.out (JVM output), format.log,
                        broker.pid, bootstrap ("<host>:<port>"); secure instances also tls/
                        (CA, keystores), secrets/, client.json, admin.properties, *.env

Storage policy: every FRESH start wipes data/ and formats it with a new cluster id on new free
loopback ports, so tests always get an empty broker; a secure one also gets new certificates
and passwords. Data survives only ``restart``, which crash tests use. ``start`` while the broker
runs (pid alive, same instance, answers a Metadata request) just prints its address. A stale
pid file (after kill -9) is ignored and replaced.

Readiness is a real Kafka request (scripts/lib/kafka_wire.py): ApiVersions, then Metadata,
which must list a live broker. On a secure broker the probe first verifies the certificate
against the CA and the hostname and authenticates as admin with SCRAM-SHA-512.

Environment:
  KAFKA_LOCAL_DIR            instance dir (see above); another one for a second broker
  KAFKA_LOCAL_HOST           the address the plaintext broker listens on and advertises
                             (default 127.0.0.1). Another address is for a broker inside a
                             network namespace of its own (through ``scripts/k8s-local exec``,
                             at the node IP, for pods to reach); the controller listener stays
                             on 127.0.0.1. Start, stop and status run in that namespace.
  KAFKA_LOCAL_SECURE         1: same as --secure
  KAFKA_LOCAL_LIBS           jar dir (default <project>/.local/kafka/libs)
  KAFKA_LOCAL_TOOLS          kafka-tools jar dir (default <project>/.local/kafka/tools)
  KAFKA_LOCAL_MAVEN_REPO     passed as -Dmaven.repo.local (default: Maven's own, ~/.m2)
  KAFKA_LOCAL_PROPERTIES     broker settings over the generated ones, on a fresh start:
                             key=value pairs apart by spaces or commas, e.g.
                             "auto.create.topics.enable=true"
  KAFKA_HEAP_OPTS            default "-Xms512m -Xmx512m"
  KAFKA_JVM_PERFORMANCE_OPTS default "-XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError"
  KAFKA_LOCAL_START_TIMEOUT, KAFKA_LOCAL_STOP_TIMEOUT  seconds (120, 30)
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from scripts.lib import jvm_service as svc
from scripts.lib import kraft
from scripts.lib.kafka_wire import Login, probe

__all__ = ["Broker", "main", "overrides", "resolve_libs"]

PROG = "kafka-local"
ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "kafka" / "pom.xml"
# The sha256 of every jar Maven may bring, pinned: what runs is what was reviewed.
JAR_SUMS = ROOT / "kafka" / "jars.sha256"
USERS = ("admin", "bridge")


def say(text: str) -> None:
    svc.say(PROG, text)


# --- the jars -------------------------------------------------------------------------------


def pinned_jars(jar_set: str) -> dict[str, str]:
    """kafka/jars.sha256's jars of one set (``libs``, ``tools``): name -> sha256."""
    pins = {}
    for line in JAR_SUMS.read_text().splitlines():
        digest, _, path = line.partition("  ")
        folder, _, name = path.partition("/")
        if folder == jar_set and re.fullmatch(r"[0-9a-f]{64}", digest):
            pins[name] = digest
    return pins


def verify_jars(folder: Path, jar_set: str) -> None:
    """``folder`` holds exactly the jars pinned for ``jar_set``, each with its sha256."""
    pins = pinned_jars(jar_set)
    if not pins:
        raise svc.Failure(f"{JAR_SUMS} pins no {jar_set} jars")
    found = {p.name for p in folder.glob("*.jar")}
    if found != set(pins):
        diff = [f"< {n}" for n in sorted(set(pins) - found)]
        diff += [f"> {n}" for n in sorted(found - set(pins))]
        raise svc.Failure(
            f"the {jar_set} jars Maven resolved are not those {JAR_SUMS} pins"
            " (< pinned, > resolved):\n" + "\n".join(diff)
        )
    for name, digest in sorted(pins.items()):
        if svc.sha256_of(folder / name) != digest:
            raise svc.Failure(f"{name}'s sha256 differs from {JAR_SUMS}: not running it")


def _resolve(dest: Path, jar_set: str, env: Mapping[str, str], *extra: str) -> Path:
    def maven_args(tmp: Path) -> list[str]:
        args = ["-f", str(POM), *extra]
        if env.get("KAFKA_LOCAL_MAVEN_REPO"):
            args.append(f"-Dmaven.repo.local={env['KAFKA_LOCAL_MAVEN_REPO']}")
        return [*args, "dependency:copy-dependencies", f"-Dkafka.libs.dir={tmp}"]

    return svc.maven_fetch(
        dest,
        inputs=[POM.read_bytes(), JAR_SUMS.read_bytes(), " ".join(extra).encode()],
        maven_args=maven_args,
        finish=lambda tmp: verify_jars(tmp, jar_set),
        prog=PROG,
        what=f"the Kafka {jar_set} jars of {POM}",
    )


def resolve_libs(env: Mapping[str, str] = os.environ) -> Path:
    """The broker's jars, fetched on first use (shared by every instance and the cluster)."""
    libs = svc.setting(env, "KAFKA_LOCAL_LIBS", str(ROOT / ".local/kafka/libs"))
    return _resolve(Path(libs), "libs", env)


def _resolve_tools(env: Mapping[str, str]) -> Path:
    dest = Path(svc.setting(env, "KAFKA_LOCAL_TOOLS", str(ROOT / ".local/kafka/tools")))
    return _resolve(dest, "tools", env, "-P", "tools", "-DincludeArtifactIds=kafka-tools")


def _require_java() -> None:
    if shutil.which("java") is None:
        raise svc.Failure("java not found (Kafka 4.x needs Java 17+)")


# --- one broker -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeouts:
    start_s: float
    stop_s: float


def overrides(text: str) -> dict[str, str]:
    """``KAFKA_LOCAL_PROPERTIES``: ``key=value`` pairs, apart by spaces or commas, set over
    the broker's generated settings (a test of how the bridge behaves against a broker
    configured otherwise, such as one that creates the topics clients ask about)."""
    found = {}
    for pair in text.replace(",", " ").split():
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise svc.Failure(f"KAFKA_LOCAL_PROPERTIES: {pair!r} is not key=value")
        found[key] = value
    return found


class Broker:
    """One instance dir: its settings, its JVM and its answers."""

    def __init__(self, env: Mapping[str, str] = os.environ, *, secure: bool = False) -> None:
        self.env = env
        self.secure = secure or env.get("KAFKA_LOCAL_SECURE") == "1"
        default = ROOT / ".local" / ("kafka-secure" if self.secure else "kafka")
        self.dir = Path(env.get("KAFKA_LOCAL_DIR") or default).absolute()
        self.host = svc.setting(env, "KAFKA_LOCAL_HOST", "127.0.0.1")
        self.heap = svc.setting(env, "KAFKA_HEAP_OPTS", "-Xms512m -Xmx512m").split()
        self.jvm = svc.setting(
            env, "KAFKA_JVM_PERFORMANCE_OPTS", "-XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError"
        ).split()
        self.timeouts = Timeouts(
            start_s=svc.positive(env, "KAFKA_LOCAL_START_TIMEOUT", 120, "seconds"),
            stop_s=svc.positive(env, "KAFKA_LOCAL_STOP_TIMEOUT", 30, "seconds"),
        )
        self.overrides = overrides(env.get("KAFKA_LOCAL_PROPERTIES", ""))

    # files of the instance

    @property
    def pid_file(self) -> Path:
        return self.dir / "broker.pid"

    @property
    def client_json(self) -> Path:
        return self.dir / "client.json"

    def is_secure_instance(self) -> bool:
        """What the instance on disk is (its client.json marks a secure one)."""
        return self.client_json.is_file() and self.client_json.stat().st_size > 0

    def pid(self) -> int | None:
        """The pid of this instance's broker JVM, if it runs."""
        pid = svc.read_pid(self.pid_file)
        return pid if svc.runs_as(pid, kraft.server_marker(self.dir)) else None

    def address(self) -> str:
        return (self.dir / "bootstrap").read_text().strip()

    def answers(self, address: str) -> bool:
        try:
            secure = self.is_secure_instance()
            login = Login.from_client_json(str(self.client_json)) if secure else None
        except (OSError, ValueError, KeyError):
            return False  # client.json half written: not this instance's answer yet
        return probe(address, login, client_id=PROG)

    def summary(self) -> str:
        """What ``start`` and ``status`` print last: the address, or a secure instance's client
        summary (without the passwords)."""
        if not self.is_secure_instance():
            return self.address()
        client = json.loads(self.client_json.read_text())
        del client["users"]
        client["client_config"] = str(self.client_json)
        return json.dumps(client)

    # commands

    def start(self) -> str:
        _require_java()
        if self.secure and self.host != "127.0.0.1":
            raise svc.Failure(
                "KAFKA_LOCAL_HOST is for the plaintext broker; the secure one listens on 127.0.0.1"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        with svc.locked(self.dir / ".lock", self.timeouts.start_s):
            pid = self.pid()
            if pid is not None:
                return self._reuse(pid)
            stale = svc.read_pid(self.pid_file)
            if stale is not None:
                say(f"removing stale pid file (pid {stale} is not running)")
            for name in ("broker.pid", "bootstrap", "broker.log", "broker.out", "client.json"):
                (self.dir / name).unlink(missing_ok=True)
            shutil.rmtree(self.dir / "data", ignore_errors=True)
            libs = resolve_libs(self.env)
            if self.secure:
                self.dir.chmod(0o700)  # passwords, keystores, format.log with SCRAM keys
                address, scram = self._write_secure()
            else:
                address, scram = self._write_plain(), []
            self._format(libs, scram)
            return self._launch(libs, address)

    def restart(self) -> str:
        """The same broker again: same ports, same data (a running one is stopped first)."""
        properties = self.dir / "server.properties"
        if not properties.is_file() or not (self.dir / "data").is_dir():
            raise svc.Failure(f"nothing to restart in {self.dir}; use start")
        found = re.search(r"^listeners=[A-Z]+://([^,\n]+)", properties.read_text(), re.M)
        if found is None:
            raise svc.Failure(f"{properties} names no listener")
        if self.pid() is not None:
            self.stop()
        with svc.locked(self.dir / ".lock", self.timeouts.start_s):
            return self._launch(resolve_libs(self.env), found.group(1))

    def stop(self) -> None:
        svc.stop_instance(
            self.dir,
            self.pid,
            [self.pid_file, self.dir / "bootstrap"],
            timeout_s=self.timeouts.stop_s,
            prog=PROG,
            what="broker",
        )

    def status(self) -> str | None:
        """The summary when the broker runs and answers; None (and why, on stderr) if not."""
        pid = self.pid()
        if pid is None or not (self.dir / "bootstrap").is_file():
            say("not running")
            return None
        if not self.answers(self.address()):
            say(f"pid {pid} is alive but does not answer on {self.address()}")
            return None
        return self.summary()

    # steps

    def _reuse(self, pid: int) -> str:
        if self.is_secure_instance() and not self.secure:
            raise svc.Failure(f"{self.dir} runs a secure broker (pid {pid}); use --secure")
        if not self.is_secure_instance() and self.secure:
            raise svc.Failure(
                f"{self.dir} runs a plaintext broker (pid {pid}); stop it first,"
                " or use another KAFKA_LOCAL_DIR"
            )
        address = self.address()
        ready = svc.wait_ready(pid, self.timeouts.start_s, lambda: self.answers(address))
        if ready is not svc.Ready.YES:
            self._fail(f"broker pid {pid} is running but does not answer on {address}; run stop")
        say(f"already running (pid {pid})")
        return self.summary()

    def _write_plain(self) -> str:
        port, controller = svc.free_ports(2, self.host)
        address = f"{self.host}:{port}"
        self._write_properties(
            [
                kraft.Listener("PLAINTEXT", "PLAINTEXT", address, address),
                kraft.Listener("CONTROLLER", "PLAINTEXT", f"127.0.0.1:{controller}"),
            ],
            inter_broker="PLAINTEXT",
            controller_port=controller,
            extra={},
        )
        return address

    def _write_properties(
        self,
        listeners: list[kraft.Listener],
        *,
        inter_broker: str,
        controller_port: int,
        extra: Mapping[str, str],
    ) -> None:
        settings = kraft.node_settings(
            node_id=1,
            listeners=listeners,
            inter_broker=inter_broker,
            quorum={"controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}"},
            replicas=1,
            log_dirs=self.dir / "data",
        )
        header = "generated by scripts/kafka-local; rewritten on every fresh start"
        text = kraft.render({**settings, **extra, **self.overrides}, header)
        path = self.dir / "server.properties"
        path.touch(mode=0o600)
        path.chmod(0o600)  # a secure instance's holds the broker's password
        path.write_text(text)

    def _secret(self, name: str) -> str:
        """A user's (or the keystore's) password, made up on first use."""
        path = self.dir / "secrets" / name
        if not path.is_file() or path.stat().st_size == 0:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(24) + "\n")
        return path.read_text().strip()

    def _write_secure(self) -> tuple[str, list[str]]:
        """server.properties, TLS material and client files of a secure instance; its address
        and the storage tool's --add-scram arguments."""
        port, wrong_port, controller = svc.free_ports(3)
        shutil.rmtree(self.dir / "secrets", ignore_errors=True)
        store = self._secret("keystore")
        broker = self._secret("broker")
        make_tls(self.dir / "tls", store)
        tls = self.dir / "tls"
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
        plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
        security = {
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": "User:admin;User:broker",
            # Clients: SASL_SSL with SCRAM-SHA-512; the broker talks to itself the same way.
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.client.scram-sha-512.sasl.jaas.config": (
                f'{scram} required username="broker" password="{broker}";'
            ),
            "listener.name.wronghost.scram-sha-512.sasl.jaas.config": f"{scram} required;",
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(tls / "broker.p12"),
            "ssl.keystore.password": store,
            "ssl.key.password": store,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(tls / "ca.pem"),
            "ssl.endpoint.identification.algorithm": "https",
            # Same CA, but the certificate names only wrong-host.invalid.
            "listener.name.wronghost.ssl.keystore.location": str(tls / "wrong-host.p12"),
            # The controller: SASL/PLAIN, since KRaft controllers cannot use SCRAM (its
            # credentials live in the metadata log they serve). Loopback only.
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": (
                f'{plain} required username="broker" password="{broker}" user_broker="{broker}";'
            ),
        }
        self._write_properties(
            [
                kraft.Listener("CLIENT", "SASL_SSL", f"127.0.0.1:{port}", f"127.0.0.1:{port}"),
                kraft.Listener(
                    "WRONGHOST", "SASL_SSL", f"127.0.0.1:{wrong_port}", f"127.0.0.1:{wrong_port}"
                ),
                kraft.Listener("CONTROLLER", "SASL_PLAINTEXT", f"127.0.0.1:{controller}"),
            ],
            inter_broker="CLIENT",
            controller_port=controller,
            extra=security,
        )
        users = {user: self._secret(user) for user in USERS}
        self._write_client_files(port, wrong_port, users)
        scram_args = []
        for user in (*USERS, "broker"):
            password = broker if user == "broker" else users[user]
            scram_args += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
        return f"127.0.0.1:{port}", scram_args

    def _write_client_files(self, port: int, wrong_port: int, users: dict[str, str]) -> None:
        ca = str(self.dir / "tls" / "ca.pem")
        client = {
            "bootstrap_servers": f"127.0.0.1:{port}",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "ssl_ca_location": ca,
            "super_user": "admin",
            "users": users,
            "wrong_host_bootstrap_servers": f"127.0.0.1:{wrong_port}",
            "wrong_ca_location": str(self.dir / "tls" / "wrong-ca.pem"),
            "admin_properties": str(self.dir / "admin.properties"),
            "env_files": {u: str(self.dir / f"{u}.env") for u in users},
        }
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
        files = {
            "admin.properties": (
                "security.protocol=SASL_SSL\n"
                "sasl.mechanism=SCRAM-SHA-512\n"
                f'sasl.jaas.config={scram} required username="admin"'
                f' password="{users["admin"]}";\n'
                "ssl.truststore.type=PEM\n"
                f"ssl.truststore.location={ca}\n"
            ),
            **{
                f"{user}.env": (
                    f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{port}\n"
                    "KAFKA_SECURITY_PROTOCOL=SASL_SSL\n"
                    "KAFKA_SASL_MECHANISM=SCRAM-SHA-512\n"
                    f"KAFKA_SASL_USERNAME={user}\n"
                    f"KAFKA_SASL_PASSWORD={password}\n"
                    f"KAFKA_SSL_CA_LOCATION={ca}\n"
                )
                for user, password in users.items()
            },
            # last: its presence marks the instance secure
            "client.json": json.dumps(client, indent=2) + "\n",
        }
        for name, text in files.items():
            path = self.dir / name
            path.touch(mode=0o600)
            path.chmod(0o600)
            path.write_text(text)

    def _format(self, libs: Path, scram: list[str]) -> None:
        command = kraft.format_command(
            libs, kraft.cluster_id(), self.dir / "server.properties", ["--standalone", *scram]
        )
        log = self.dir / "format.log"
        with open(log, "wb") as out:
            done = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, check=False
            )
        if done.returncode != 0:
            sys.stderr.write(log.read_text(errors="replace"))
            self._fail(f"kafka.tools.StorageTool format failed (see {log})")

    def _launch(self, libs: Path, address: str) -> str:
        """Start the JVM on the instance's settings and data; wait until it answers."""
        command = kraft.server_command(libs, [*self.heap, *self.jvm], self.dir)
        try:
            pid = svc.start_answering(
                command,
                instance=self.dir,
                output=self.dir / "broker.out",
                pid_file=self.pid_file,
                address=address,
                address_file=self.dir / "bootstrap",
                answers=lambda: self.answers(address),
                timeout_s=self.timeouts.start_s,
                prog=PROG,
                what="broker",
            )
        except svc.Failure as exc:
            self._fail(str(exc))
        say(f"broker pid {pid} ready at {address} (log: {self.dir}/broker.log)")
        if self.is_secure_instance():
            say(
                f"SASL_SSL + SCRAM-SHA-512; CA {self.dir}/tls/ca.pem; users and passwords in"
                f" {self.client_json}; bridge settings: {self.dir}/bridge.env;"
                f" kafka-acls --command-config {self.dir}/admin.properties"
            )
        return self.summary()

    def _fail(self, why: str) -> NoReturn:
        """Raise ``Failure`` with the ends of the broker's logs, for a start that failed."""
        parts = [f"start failed: {why}"]
        for name, lines in (("broker.log", 30), ("broker.out", 30)):
            text = svc.tail(self.dir / name, lines)
            if text:
                parts.append(f"--- {self.dir / name}\n{text}")
        raise svc.Failure("\n".join(parts))


# --- TLS material ---------------------------------------------------------------------------

_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = ${ENV::SAN}
"""


def make_tls(tls: Path, store_password: str) -> None:
    """With openssl: a CA, a broker certificate naming localhost and 127.0.0.1, one naming
    another host, and an unrelated CA. EC P-256 keys are quick to make. The broker reads
    PKCS#12 keystores and the CA as a PEM truststore."""
    shutil.rmtree(tls, ignore_errors=True)
    tls.mkdir(mode=0o700, parents=True)
    cnf = tls / "openssl.cnf"
    cnf.write_text(_OPENSSL_CNF)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]

    def openssl(*args: str, san: str = "DNS:unused") -> None:
        # The [leaf] section needs SAN set even where it is not used.
        env = {**os.environ, "SAN": san}
        done = subprocess.run(["openssl", *args], env=env, capture_output=True, check=False)
        if done.returncode != 0:
            raise svc.Failure(f"openssl {args[0]} failed: {done.stderr.decode(errors='replace')}")

    for ca in ("ca", "wrong-ca"):
        openssl(
            "req", "-x509", "-config", str(cnf), "-extensions", "ca", *key,
            "-keyout", str(tls / f"{ca}.key"), "-out", str(tls / f"{ca}.pem"), "-days", "365",
            "-subj", f"/O=kafka-local/CN=kafka-local {ca} {secrets.token_hex(4)}",
        )  # fmt: skip
    (tls / "wrong-ca.key").unlink()  # nobody signs with it: it only has to be another CA
    leaves = {"broker": "DNS:localhost,IP:127.0.0.1", "wrong-host": "DNS:wrong-host.invalid"}
    for name, san in leaves.items():
        openssl(
            "req", "-new", "-config", str(cnf), *key, "-keyout", str(tls / f"{name}.key"),
            "-out", str(tls / f"{name}.csr"), "-subj", f"/O=kafka-local/CN={name}",
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", str(tls / f"{name}.csr"), "-CA", str(tls / "ca.pem"),
            "-CAkey", str(tls / "ca.key"), "-set_serial", f"0x{secrets.token_hex(12)}",
            "-days", "365", "-extfile", str(cnf), "-extensions", "leaf",
            "-out", str(tls / f"{name}.pem"),
            san=san,
        )  # fmt: skip
        openssl(
            "pkcs12", "-export", "-in", str(tls / f"{name}.pem"),
            "-inkey", str(tls / f"{name}.key"), "-certfile", str(tls / "ca.pem"),
            "-name", name, "-out", str(tls / f"{name}.p12"),
            "-passout", f"pass:{store_password}",
        )  # fmt: skip
        (tls / f"{name}.csr").unlink()
        (tls / f"{name}.key").unlink()
    (tls / "ca.key").unlink()  # the instance is made anew on the next fresh start anyway


# --- the command ----------------------------------------------------------------------------


def _acls(args: list[str], env: Mapping[str, str]) -> None:
    """kafka-acls.sh: the broker's jars plus the kafka-tools jar; the tool's log lines (WARN and
    up) go to stderr, as with the distribution's tools-log4j2 config."""
    _require_java()
    libs, tools = resolve_libs(env), _resolve_tools(env)
    command = [
        "java", *kraft.TOOL_JVM_OPTS, "-Dlog4j2.level=WARN", "-cp", f"{libs}/*:{tools}/*",
        "org.apache.kafka.tools.AclCommand", *args,
    ]  # fmt: skip
    sys.stdout.flush()
    os.execvp("java", command)


def main(argv: list[str]) -> int:
    # --secure may come before or after the command (but belongs to acls' own arguments after
    # `acls`).
    secure = False
    command = None
    rest: list[str] = []
    for arg in argv:
        if arg == "--secure" and (command is None or command != "acls"):
            secure = True
        elif command is None:
            command = arg
        else:
            rest.append(arg)
    usage = f"usage: {PROG} [--secure] start|restart|stop|status|libs, or {PROG} acls <arguments>"
    if command not in ("start", "restart", "stop", "status", "libs", "acls") or (
        rest and command != "acls"
    ):
        print(usage, file=sys.stderr)
        return 2
    try:
        broker = Broker(os.environ, secure=secure)
        if command == "start":
            print(broker.start())
        elif command == "restart":
            print(broker.restart())
        elif command == "stop":
            broker.stop()
        elif command == "status":
            found = broker.status()
            if found is None:
                return 1
            print(found)
        elif command == "libs":
            print(resolve_libs(os.environ))
        else:
            _acls(rest, os.environ)
    except svc.Failure as exc:
        say(str(exc))
        return 1
    return 0
