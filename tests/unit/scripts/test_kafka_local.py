"""scripts/lib/kafka_local.py without a JVM: its arguments, pinned jars and the files a fresh
broker starts from. (The broker itself runs in every integration session, through this code.)"""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
from pathlib import Path

import pytest

from scripts.lib import jvm_service as svc
from scripts.lib import kafka_local
from scripts.lib.kafka_local import Broker

ROOT = Path(__file__).resolve().parents[3]


def test_every_pinned_set_is_in_the_sums_file() -> None:
    libs = kafka_local.pinned_jars("libs")
    assert any(name.startswith("kafka_2.13-") for name in libs)
    tools = kafka_local.pinned_jars("tools")
    assert len(tools) == 1
    assert next(iter(tools)).startswith("kafka-tools-")
    assert kafka_local.pinned_jars("nothing") == {}


def _pins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jars: dict[str, bytes]) -> Path:
    sums = tmp_path / "jars.sha256"
    sums.write_text(
        "".join(f"{hashlib.sha256(b).hexdigest()}  libs/{n}\n" for n, b in jars.items())
    )
    monkeypatch.setattr(kafka_local, "JAR_SUMS", sums)
    folder = tmp_path / "resolved"
    folder.mkdir()
    return folder


def test_resolved_jars_must_be_exactly_the_pinned_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _pins(tmp_path, monkeypatch, {"a.jar": b"a", "b.jar": b"b"})
    (folder / "a.jar").write_bytes(b"a")
    (folder / "c.jar").write_bytes(b"c")
    with pytest.raises(svc.Failure) as refused:
        kafka_local.verify_jars(folder, "libs")
    assert "< b.jar" in str(refused.value)
    assert "> c.jar" in str(refused.value)
    (folder / "c.jar").unlink()
    (folder / "b.jar").write_bytes(b"tampered")
    with pytest.raises(svc.Failure, match=r"b\.jar's sha256 differs"):
        kafka_local.verify_jars(folder, "libs")
    (folder / "b.jar").write_bytes(b"b")
    kafka_local.verify_jars(folder, "libs")


@pytest.mark.parametrize(
    ("argv", "command", "secure", "rest"),
    [
        (["start"], "start", False, []),
        (["--secure", "start"], "start", True, []),
        (["status", "--secure"], "status", True, []),
        (["acls", "--list", "--secure"], "acls", False, ["--list", "--secure"]),
    ],
)
def test_secure_may_come_before_or_after_the_command(
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    command: str,
    secure: bool,
    rest: list[str],
) -> None:
    seen: dict[str, object] = {}

    def record(self: Broker, *args: object) -> str:
        seen.update(command=command, secure=self.secure)
        return "summary"

    for name in ("start", "status"):
        monkeypatch.setattr(Broker, name, record)
    monkeypatch.setattr(kafka_local, "_acls", lambda args, env: seen.update(rest=args))
    monkeypatch.delenv("KAFKA_LOCAL_SECURE", raising=False)
    assert kafka_local.main(argv) == 0
    if command == "acls":
        assert seen == {"rest": rest}  # acls' own arguments, --secure included
    else:
        assert seen == {"command": command, "secure": secure}


@pytest.mark.parametrize("argv", [[], ["begin"], ["start", "extra"]])
def test_a_wrong_command_gets_the_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert kafka_local.main(argv) == 2
    assert "usage: kafka-local [--secure] start|restart|stop|status|libs" in capsys.readouterr().err


def test_the_cli_is_this_module() -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "kafka-local")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "usage: kafka-local" in done.stderr


def test_nothing_runs_in_an_empty_instance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = Broker({"KAFKA_LOCAL_DIR": str(tmp_path / "none")})
    assert broker.status() is None
    broker.stop()
    assert capsys.readouterr().err.count("kafka-local: not running") == 2
    with pytest.raises(svc.Failure, match="nothing to restart"):
        broker.restart()


def test_the_secure_broker_listens_on_loopback_only(tmp_path: Path) -> None:
    env = {"KAFKA_LOCAL_DIR": str(tmp_path), "KAFKA_LOCAL_HOST": "10.0.0.2"}
    with pytest.raises(svc.Failure, match="KAFKA_LOCAL_HOST is for the plaintext broker"):
        Broker(env, secure=True).start()


def test_a_plaintext_broker_advertises_its_host(tmp_path: Path) -> None:
    broker = Broker({"KAFKA_LOCAL_DIR": str(tmp_path)})
    address = broker._write_plain()
    text = (tmp_path / "server.properties").read_text()
    assert f"listeners=PLAINTEXT://{address},CONTROLLER://127.0.0.1:" in text
    assert f"advertised.listeners=PLAINTEXT://{address}\n" in text
    assert f"log.dirs={tmp_path}/data\n" in text


def test_properties_set_over_the_generated_ones(tmp_path: Path) -> None:
    env = {
        "KAFKA_LOCAL_DIR": str(tmp_path),
        "KAFKA_LOCAL_PROPERTIES": "auto.create.topics.enable=true, num.partitions=7",
    }
    Broker(env)._write_plain()
    text = (tmp_path / "server.properties").read_text()
    assert "auto.create.topics.enable=true\n" in text
    assert "auto.create.topics.enable=false" not in text
    assert "num.partitions=7\n" in text
    assert "num.partitions=3" not in text


@pytest.mark.parametrize("bad", ["auto.create.topics.enable", "=true", "num.partitions="])
def test_a_property_that_is_not_key_value_is_refused(bad: str, tmp_path: Path) -> None:
    env = {"KAFKA_LOCAL_DIR": str(tmp_path), "KAFKA_LOCAL_PROPERTIES": f"a=b {bad}"}
    with pytest.raises(svc.Failure, match=f"KAFKA_LOCAL_PROPERTIES: '{bad}' is not key=value"):
        Broker(env)


def test_a_secure_instance_keeps_its_secrets_to_itself(tmp_path: Path) -> None:
    """Certificates from openssl, passwords made up, files only the owner reads; the summary
    `start` prints holds no password."""
    broker = Broker({"KAFKA_LOCAL_DIR": str(tmp_path)}, secure=True)
    address, scram = broker._write_secure()
    client = json.loads((tmp_path / "client.json").read_text())
    assert client["bootstrap_servers"] == address
    users = client["users"]
    assert sorted(users) == ["admin", "bridge"]
    assert len({*users.values()}) == 2
    assert all(len(p) >= 24 for p in users.values())
    names = [a.split("name=")[1].split(",")[0] for a in scram if a.startswith("SCRAM")]
    assert names == ["admin", "bridge", "broker"]
    for name in ("client.json", "admin.properties", "bridge.env", "server.properties"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert f"KAFKA_SASL_PASSWORD={users['bridge']}\n" in (tmp_path / "bridge.env").read_text()
    tls = tmp_path / "tls"
    assert sorted(p.name for p in tls.iterdir()) == [
        "broker.p12",
        "broker.pem",
        "ca.pem",
        "openssl.cnf",
        "wrong-ca.pem",
        "wrong-host.p12",
        "wrong-host.pem",
    ]  # fmt: skip  (no private key of a CA is left behind)
    san = subprocess.run(
        ["openssl", "x509", "-in", str(tls / "broker.pem"), "-noout", "-ext", "subjectAltName"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "DNS:localhost" in san
    assert "IP Address:127.0.0.1" in san
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tls / "ca.pem"), str(tls / "wrong-host.pem")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    (tmp_path / "bootstrap").write_text(address + "\n")
    summary = json.loads(broker.summary())
    assert "users" not in summary
    assert summary["client_config"] == str(tmp_path / "client.json")
    assert all(p not in json.dumps(summary) for p in users.values())


def test_an_empty_setting_means_its_default(tmp_path: Path) -> None:
    """As the bash scripts' ``${X:-default}``: KAFKA_LOCAL_HOST= is not an empty address."""
    env = {"KAFKA_LOCAL_DIR": str(tmp_path), "KAFKA_LOCAL_HOST": "", "KAFKA_HEAP_OPTS": ""}
    broker = Broker(env)
    assert broker.host == "127.0.0.1"
    assert broker.heap == ["-Xms512m", "-Xmx512m"]


def test_a_bad_timeout_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_LOCAL_START_TIMEOUT", "2m")
    assert kafka_local.main(["status"]) == 1
    err = capsys.readouterr().err
    assert "KAFKA_LOCAL_START_TIMEOUT must be a positive number (seconds), not '2m'" in err
    assert "Traceback" not in err
