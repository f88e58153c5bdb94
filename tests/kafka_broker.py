"""Where the tests' Kafka broker comes from: ``scripts/kafka-local``, or a container started
with testcontainers. The fixtures that use these live in tests/conftest.py.

The testcontainers broker is the single-node KRaft image that ``make kafka-image`` builds
(``TEST_KAFKA_IMAGE`` names another, e.g. Apache Kafka's own image on a machine with
Docker): everything it needs is passed as ``KAFKA_*`` variables, the convention both images
follow. Its client port is bound to 127.0.0.1 and advertised with that address; broker-to-
broker traffic (transaction markers) goes through a second listener inside the container,
because the host's port does not exist in there.

Ryuk (testcontainers' reaper) cannot run where its image cannot be pulled, so these
containers clean up after themselves: each carries labels naming the pytest process that
started it, is removed when the session ends, and a later session removes any left behind
by a process that no longer exists (a killed run).
"""

from __future__ import annotations

import os
import re
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.lib import kraft
from scripts.lib.jvm_service import free_ports, running
from scripts.lib.kafka_local import Broker
from scripts.lib.kafka_wire import probe

ROOT = Path(__file__).resolve().parents[1]

OWNER_LABEL = "io.passentry.test.owner"
KIND_LABEL = "io.passentry.test.kind"
START_TIMEOUT_S = 120.0
# (image, seconds from `start` until the broker answered), for the terminal summary.
STARTS: list[tuple[str, float]] = []


def kafka_version() -> str:
    pom = (ROOT / "kafka" / "pom.xml").read_text(encoding="utf-8")
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    assert found, "kafka/pom.xml names no kafka.version"
    return found.group(1)


def default_kafka_image() -> str:
    """What ``make kafka-image`` builds (podman names local images ``localhost/...``)."""
    return f"localhost/passentry-kafka:{kafka_version()}"


def local_kafka(env: dict[str, str]) -> Iterator[str]:
    """``scripts/kafka-local``'s broker (the same code, in-process); stopped at the end only if
    this session started it."""
    with running(Broker(env)) as bootstrap:
        yield bootstrap


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner_token() -> str:
    """``<hostname>:<pid>:<start time>`` of this pytest process."""
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid())}"


def owner_alive(token: str) -> bool:
    host, _, rest = token.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname():
        return True  # another machine's; not ours to judge
    return pid.isdigit() and _process_start(int(pid)) == start


def remove_orphans(client: Any) -> list[str]:
    """Remove test containers whose pytest process is gone (a killed run). Containers of
    live sessions, this machine's other checkouts included, are left alone."""
    removed = []
    for container in client.containers.list(all=True, filters={"label": OWNER_LABEL}):
        if not owner_alive(container.labels.get(OWNER_LABEL, "")):
            container.remove(force=True)
            removed.append(container.short_id)
    return removed


def broker_env(port: int) -> dict[str, str]:
    """kafka-local's single-node settings, as the image's ``KAFKA_*`` variables, advertising
    127.0.0.1:<port>. Broker-to-broker traffic (transaction markers) goes through a listener
    inside the container: the host's port does not exist in there."""
    settings = kraft.node_settings(
        node_id=1,
        listeners=[
            kraft.Listener("PLAINTEXT", "PLAINTEXT", "0.0.0.0:9092", f"127.0.0.1:{port}"),
            kraft.Listener("INTERNAL", "PLAINTEXT", "127.0.0.1:9094", "127.0.0.1:9094"),
            kraft.Listener("CONTROLLER", "PLAINTEXT", "127.0.0.1:9093"),
        ],
        inter_broker="INTERNAL",
        quorum={"controller.quorum.voters": "1@127.0.0.1:9093"},
        replicas=1,
        log_dirs=None,  # the image's own
    )
    return {"CLUSTER_ID": kraft.cluster_id(), **kraft.container_env(settings)}


def testcontainers_kafka(env: dict[str, str]) -> Iterator[str]:
    image = env.get("TEST_KAFKA_IMAGE") or default_kafka_image()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # testcontainers' own deprecation warnings
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.docker_client import DockerClient

    client = DockerClient().client
    try:
        client.images.get(image)
    except Exception:
        try:
            client.images.pull(image)  # e.g. Apache Kafka's own image, where a registry answers
        except Exception as exc:
            pytest.fail(
                f"no image {image} on the Docker API at {client.api.base_url}, and it cannot "
                f"be pulled ({exc}): run `make kafka-image` (or set TEST_KAFKA_IMAGE)",
                pytrace=False,
            )
    remove_orphans(client)
    (port,) = free_ports(1)
    container = (
        DockerContainer(image)
        .with_envs(**broker_env(port))
        .with_kwargs(labels={OWNER_LABEL: owner_token(), KIND_LABEL: "kafka"})
    )
    # Loopback only: with_bind_ports() takes no host address, the Docker SDK does.
    container.ports["9092/tcp"] = ("127.0.0.1", port)  # type: ignore[assignment]
    bootstrap = f"127.0.0.1:{port}"
    started = time.monotonic()
    container.start()
    try:
        deadline = started + START_TIMEOUT_S
        while not probe(bootstrap):  # the local broker's readiness check
            container.reload()
            if container.status not in {"created", "running"}:
                out, err = container.get_logs()
                pytest.fail(
                    f"the Kafka container exited ({container.status}):\n"
                    f"{(out + err).decode(errors='replace')[-3000:]}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(f"{image} did not answer within {START_TIMEOUT_S}s", pytrace=False)
            time.sleep(0.2)
        STARTS.append((image, time.monotonic() - started))
        yield bootstrap
    finally:
        container.stop()
