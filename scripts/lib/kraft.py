"""A KRaft node's settings and storage, written once for every test bed: the single broker of
scripts/kafka-local, the three nodes of scripts/kafka-cluster, and the tests' containers
(tests/kafka_broker.py), which take the same settings as ``KAFKA_*`` variables.

Standard library only.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Listener",
    "cluster_id",
    "container_env",
    "format_command",
    "node_settings",
    "render",
    "server_command",
    "server_marker",
]

LOG4J = Path(__file__).resolve().parents[2] / "kafka" / "log4j2.properties"

# Short-lived tools: C1 only and the serial GC start noticeably faster on a small box.
TOOL_JVM_OPTS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto", "-Xmx256m")


def cluster_id() -> str:
    """16 random bytes as URL-safe base64, drawn again when the text begins with "-": the
    storage tool's argument parser would take it for an option (1 draw in 64)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


@dataclass(frozen=True)
class Listener:
    name: str
    protocol: str
    bind: str
    advertised: str | None = None  # None: not advertised (the controller's)


def node_settings(
    *,
    node_id: int,
    listeners: Sequence[Listener],
    inter_broker: str,
    quorum: Mapping[str, str],
    replicas: int,
    log_dirs: Path | None,
) -> dict[str, str]:
    """A combined broker+controller node. ``quorum`` is ``controller.quorum.voters`` (a
    static cluster) or ``controller.quorum.bootstrap.servers`` (a standalone node);
    ``replicas`` is 1 (a test broker) or 3 (production's shape: two copies in sync for a write
    to count, the internal topics included)."""
    min_isr = "1" if replicas == 1 else "2"
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "listeners": ",".join(f"{x.name}://{x.bind}" for x in listeners),
        "advertised.listeners": ",".join(
            f"{x.name}://{x.advertised}" for x in listeners if x.advertised
        ),
        "listener.security.protocol.map": ",".join(f"{x.name}:{x.protocol}" for x in listeners),
        "inter.broker.listener.name": inter_broker,
        "controller.listener.names": "CONTROLLER",
        **quorum,
        "default.replication.factor": str(replicas),
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": min_isr,
        "unclean.leader.election.enable": "false",
        "num.partitions": "3",
        "auto.create.topics.enable": "false",
        # The one shortcut: a new group's first rebalance starts at once (the default waits
        # 3 s for more members). It changes nothing once a group exists.
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    if replicas == 1:
        # One node holds every partition: fewer internal partitions start faster, and
        # retention runs within seconds, so tests of what it deletes see it happen.
        settings["offsets.topic.num.partitions"] = "10"
        settings["transaction.state.log.num.partitions"] = "10"
        settings["log.retention.check.interval.ms"] = "2000"
    if log_dirs is not None:
        settings["log.dirs"] = str(log_dirs)
    return settings


def render(settings: Mapping[str, str], header: str) -> str:
    """A server.properties file."""
    return f"# {header}\n" + "".join(f"{key}={value}\n" for key, value in settings.items())


def container_env(settings: Mapping[str, str]) -> dict[str, str]:
    """The settings as the ``KAFKA_*`` variables Apache Kafka's image (and ours) read:
    "." becomes "_", "_" becomes "__" and "-" becomes "___"."""
    env = {}
    for key, value in settings.items():
        name = key.replace("-", "\0").replace("_", "__").replace(".", "_").replace("\0", "___")
        env[f"KAFKA_{name.upper()}"] = value
    return env


def format_command(
    libs: Path, cluster: str, properties: Path, extra: Sequence[str] = ()
) -> list[str]:
    """``kafka-storage format`` (kafka.tools.StorageTool in kafka_2.13)."""
    return [
        "java", *TOOL_JVM_OPTS, "-cp", f"{libs}/*", "kafka.tools.StorageTool",
        "format", "-t", cluster, "-c", str(properties), *extra,
    ]  # fmt: skip


def server_command(libs: Path, jvm_options: Sequence[str], node_dir: Path) -> list[str]:
    """The node's JVM (kafka.Kafka), its logs in ``node_dir`` (see kafka/log4j2.properties)."""
    return [
        "java", *jvm_options, "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J}", f"-Dkafka.logs.dir={node_dir}",
        "-cp", f"{libs}/*", "kafka.Kafka", server_marker(node_dir).removeprefix("kafka.Kafka "),
    ]  # fmt: skip


def server_marker(node_dir: Path) -> str:
    """What the node's command line contains and no other process's does."""
    return f"kafka.Kafka {node_dir}/server.properties"
