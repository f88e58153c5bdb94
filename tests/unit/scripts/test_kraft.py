"""scripts/lib/kraft.py: the one set of KRaft settings every test bed starts from."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from unittest import mock

from scripts.lib import kraft
from tests.kafka_broker import broker_env


def _text(u: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(u.bytes).decode().rstrip("=")


def test_cluster_ids_never_begin_with_a_dash() -> None:
    """One URL-safe base64 id in 64 begins with "-", which kafka-storage takes for an option
    ("expected one argument"): a fresh broker then fails to format, a flaky test bed."""
    dash = next(u for u in iter(uuid.uuid4, None) if _text(u).startswith("-"))
    plain = uuid.UUID(int=1)
    with mock.patch("uuid.uuid4", side_effect=[dash, plain]):
        assert kraft.cluster_id() == _text(plain)
    assert len(base64.urlsafe_b64decode(kraft.cluster_id() + "==")) == 16


def _node(replicas: int, log_dirs: Path | None = Path("/data")) -> dict[str, str]:
    return kraft.node_settings(
        node_id=2,
        listeners=[
            kraft.Listener("PLAINTEXT", "PLAINTEXT", "127.0.0.1:9092", "127.0.0.1:9092"),
            kraft.Listener("CONTROLLER", "PLAINTEXT", "127.0.0.1:9093"),
        ],
        inter_broker="PLAINTEXT",
        quorum={"controller.quorum.voters": "2@127.0.0.1:9093"},
        replicas=replicas,
        log_dirs=log_dirs,
    )


def test_a_replicated_node_keeps_two_copies_in_sync_everywhere() -> None:
    node = _node(3)
    assert node["default.replication.factor"] == "3"
    for key in ("offsets.topic", "transaction.state.log", "share.coordinator.state.topic"):
        assert node[f"{key}.replication.factor"] == "3"
    for key in (
        "min.insync.replicas",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.min.isr",
    ):
        assert node[key] == "2"
    assert node["unclean.leader.election.enable"] == "false"
    # Production's 50 coordinator partitions: scripts/kafka-cluster's `roles` relies on it.
    assert "offsets.topic.num.partitions" not in node
    assert "transaction.state.log.num.partitions" not in node


def test_the_controller_listener_is_not_advertised() -> None:
    node = _node(1)
    assert node["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert node["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert node["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert node["min.insync.replicas"] == "1"
    assert node["log.dirs"] == "/data"


def test_render_writes_every_setting_once() -> None:
    node = _node(1)
    lines = kraft.render(node, "made by a test").splitlines()
    assert lines[0] == "# made by a test"
    assert dict(line.split("=", 1) for line in lines[1:]) == node


def test_container_variables_follow_apache_kafkas_image() -> None:
    """kafka/image/entrypoint maps them back: drop KAFKA_, lower-case, "___" -> "-",
    "__" -> "_", "_" -> "."."""
    env = kraft.container_env(
        {"log.dirs": "/d", "listener.name.client.scram-sha-512.x_y": "v", "node.id": "1"}
    )
    assert env == {
        "KAFKA_LOG_DIRS": "/d",
        "KAFKA_LISTENER_NAME_CLIENT_SCRAM___SHA___512_X__Y": "v",
        "KAFKA_NODE_ID": "1",
    }


def test_the_containers_broker_is_kafka_locals_but_for_its_listeners() -> None:
    """tests/kafka_broker.py's container takes the same single-node settings as
    scripts/kafka-local: only where it listens and its data dir differ."""
    env = broker_env(40000)
    assert env["KAFKA_ADVERTISED_LISTENERS"] == (
        "PLAINTEXT://127.0.0.1:40000,INTERNAL://127.0.0.1:9094"
    )
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
    assert not env["CLUSTER_ID"].startswith("-")
    local = kraft.container_env(_node(1, log_dirs=None))
    differ = {"LISTENERS", "ADVERTISED_LISTENERS", "LISTENER_SECURITY_PROTOCOL_MAP"}
    differ |= {"INTER_BROKER_LISTENER_NAME", "NODE_ID", "CONTROLLER_QUORUM_VOTERS"}
    same = {k: v for k, v in local.items() if k.removeprefix("KAFKA_") not in differ}
    assert same.items() <= env.items()
    assert "KAFKA_LOG_DIRS" not in env


def test_the_server_command_names_its_instance() -> None:
    command = kraft.server_command(Path("/libs"), ["-Xmx1g"], Path("/inst"))
    assert command[:2] == ["java", "-Xmx1g"]
    assert kraft.server_marker(Path("/inst")) in " ".join(command)
    assert command[-2:] == ["kafka.Kafka", "/inst/server.properties"]
