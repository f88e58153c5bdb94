"""The README's least-privilege ACLs, granted by its own ``kafka-acls.sh`` commands (run
through Apache Kafka's AclCommand), are all the bridge needs, and none of them is more.

The commands are read from the README, so the documentation is what is tested: the bridge
creates its topics (with the Create grant), publishes a backlog, and after the Create grant is
removed, restarts, resumes from its checkpoint (reading the state topic, and the scans topic
and the DLQ to rebuild its dedup window) and publishes what came since: every scan exactly once.
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest

from bridge.service import RunOptions, Service
from bridge.simulator.app import SimulatorConfig
from bridge.simulator.server import SimulatorServer
from bridge.simulator.store import WorldConfig
from tests.integration.harness import bridge_config
from tests.integration.secure.secure_kafka import (
    KAFKA_LOCAL,
    ROOT,
    AclAdmin,
    Grant,
    SecureKafka,
    parse_kafka_acls,
    read_committed,
)

SECTION = "### Kafka with SASL_SSL, TLS verification and ACLs"
DEFAULT_TOPICS = ("passentry.scans", "passentry.scans.dlq", "passentry.bridge.state")


def readme_acl_commands() -> list[str]:
    """Every ``kafka-acls.sh`` command of the README's ACL section, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n### ", start + len(SECTION))
    section = text[start : end if end > 0 else None]
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip().startswith("kafka-acls.sh"):
                commands.append(command.strip())
    return commands


def localise(command: str, kafka: SecureKafka, topics: dict[str, str]) -> list[str]:
    """The command with this broker, its admin config and this test's topic names."""
    args = shlex.split(command)
    assert args[0] == "kafka-acls.sh"
    out = [str(KAFKA_LOCAL), "acls"]
    replace = {
        "--bootstrap-server": lambda _: kafka.bootstrap_servers,
        "--command-config": lambda _: str(kafka.admin_properties),
        "--topic": lambda name: topics[name],
    }
    i = 1
    while i < len(args):
        out.append(args[i])
        if args[i] in replace and i + 1 < len(args):
            out.append(replace[args[i]](args[i + 1]))
            i += 1
        i += 1
    return out


def test_readme_acls_are_enough_for_the_bridge(
    secure_kafka: SecureKafka,
    acls: AclAdmin,
    session_environ: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    commands = readme_acl_commands()
    assert len(commands) == 4, commands
    tag = uuid.uuid4().hex[:8]
    topics = {name: f"readme-{tag}.{name}" for name in DEFAULT_TOPICS}
    principal = "User:bridge"
    acls.revoke_all(principal)

    localised = [localise(c, secure_kafka, topics) for c in commands]
    for argv in localised:
        done = subprocess.run(
            argv, env=session_environ, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, f"{shlex.join(argv[1:])}\n{done.stdout}\n{done.stderr}"
    granted = sorted(
        g for argv in localised for g in parse_kafka_acls(shlex.join(["kafka-acls.sh", *argv[2:]]))
    )
    create = [g for g in granted if g.operation == "Create"]
    assert {g.principal for g in granted} == {principal}
    assert create
    assert all(g.resource == "Topic" for g in create)
    acls.wait_present(granted)
    present = sorted(Grant.from_binding(b) for b in acls.present() if b.principal == principal)
    assert present == granted  # the README's grants, nothing more

    try:
        with SimulatorServer(
            SimulatorConfig(
                world=WorldConfig(readers=8, passes=100, seed=15, backlog=150, backlog_span_s=240),
                rate_limit=None,
            )
        ) as sim:
            config = bridge_config(
                sim.url,
                sim.token,
                secure_kafka.bootstrap_servers,
                scans_topic=topics["passentry.scans"],
                dlq_topic=topics["passentry.scans.dlq"],
                bridge={
                    "state_topic": topics["passentry.bridge.state"],
                    "source_id": "default",  # the README's transactional id
                    "create_topics": True,
                },
                kafka=secure_kafka.kafka_settings("bridge"),
                # A missing ACL makes --once give up after 3x this, not 3 minutes.
                passentry={"retry_deadline_s": 5},
            )
            # First start: no topics yet; the bridge creates them (the Create grant).
            assert Service(config, RunOptions(once=True, since_ms=0, serve_http=False)).run() == 0
            # From now on the bridge runs without the Create grant.
            acls.revoke(create)
            sim.store.generate(40)
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="bridge.runner"):
                assert Service(config, RunOptions(once=True, serve_http=False)).run() == 0
            assert "resumed from checkpoint" in caplog.messages
            expected = {s.id for s in sim.store.all_scans()}
    finally:
        acls.revoke_all(principal)

    published = [_scan_id(m) for m in read_committed(secure_kafka, topics["passentry.scans"])]
    dead = [_scan_id(m) for m in read_committed(secure_kafka, topics["passentry.scans.dlq"])]
    assert len(published) == len(set(published)), "a scan was published twice"
    assert len(dead) == len(set(dead)), "a scan was dead-lettered twice"
    assert not set(published) & set(dead)
    assert set(published) | set(dead) == expected
    assert len(published) > 100
    assert read_committed(secure_kafka, topics["passentry.bridge.state"])


def _scan_id(msg: object) -> str:
    headers = dict(msg.headers() or [])  # type: ignore[attr-defined]
    value = headers["scan-id"]
    assert isinstance(value, bytes)
    return value.decode()


def test_readme_names_the_default_topics() -> None:
    """The README's commands name exactly the bridge's default topics and transactional id."""
    from bridge.config import BridgeSettings

    defaults = BridgeSettings()
    topics = {defaults.scans_topic, defaults.dlq_topic, defaults.state_topic}
    assert topics == set(DEFAULT_TOPICS)
    grants = [g for c in readme_acl_commands() for g in parse_kafka_acls(c)]
    assert {g.name for g in grants if g.resource == "Topic"} == topics
    assert {g.name for g in grants if g.resource == "TransactionalId"} == {
        f"passentry-bridge.{defaults.source_id}"
    }
    assert Path(KAFKA_LOCAL).exists()
