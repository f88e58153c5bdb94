"""``passentry-bridge check`` against the simulator and the test broker: one source, a
sources list (each source's token checked), and ``--running`` (the chart's ``helm test``),
which asks Kafka whether a member of the group owns every source."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bridge.cli.check import check
from bridge.config import load_config
from bridge.kafka.membership import GroupSettings, Membership
from bridge.ops.health import MemberHealth
from bridge.ops.metrics import Metrics
from passentry_simulator.app import SimulatorConfig
from passentry_simulator.server import SimulatorServer
from passentry_simulator.store import WorldConfig
from tests.integration.harness import wait_for


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    world = WorldConfig(readers=2, passes=10, seed=3, backlog=4, backlog_span_s=60)
    with SimulatorServer(SimulatorConfig(world=world)) as server:
        yield server


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch,
    sim: SimulatorServer,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    settings = {
        "PASSENTRY_API_URL": sim.url,
        "PASSENTRY_API_TOKEN": sim.token,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "BRIDGE_SCANS_TOPIC": new_topic(partitions=1),
        "BRIDGE_DLQ_TOPIC": new_topic(partitions=1),
        "BRIDGE_SOURCE_ID": f"check-{tag}",
        "BRIDGE_GROUP_ID": f"check-{tag}",
        "BRIDGE_COORDINATION_TOPIC": new_topic(partitions=4),
        "BRIDGE_COORDINATION_PARTITIONS": "4",
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    return settings


def run_check(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(check, list(args))
    return result.exit_code, result.output.splitlines()


def test_one_source(env: dict[str, str]) -> None:
    code, lines = run_check()
    assert code == 0, "\n".join(lines)
    rows = [line.split(None, 2) for line in lines]
    # The test broker is a single node: every topic has one replica, which check warns of
    # (and that alone does not fail it).
    warned = [(name, detail) for verdict, name, detail in rows if verdict == "WARN"]
    assert {verdict for verdict, _, _ in rows} == {"ok", "WARN"}
    assert {name for name, _ in warned} == {"replication"}
    assert any(
        d.startswith(f"{env['BRIDGE_SCANS_TOPIC']}: replication factor 1,") for _, d in warned
    )
    assert all("one replica: losing its broker stops the topic" in d for _, d in warned)
    names = [name for _, name, _ in rows]
    assert names[:3] == ["config", "passentry", "kafka"]
    assert names[-1] == "webhooks"
    assert f"source(s) {env['BRIDGE_SOURCE_ID']};" in rows[0][2]
    assert "4 scans match the filters" in rows[1][2]


def test_each_source_of_a_list_with_its_own_token(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sim: SimulatorServer
) -> None:
    # the sources' tokens are their own: the shared one is not set
    monkeypatch.delenv("PASSENTRY_API_TOKEN")
    monkeypatch.delenv("BRIDGE_SOURCE_ID")
    (tmp_path / "token").write_text(sim.token)
    config = tmp_path / "bridge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "sources": [
                    {"id": "good", "api_token_file": str(tmp_path / "token")},
                    {"id": "revoked", "api_token": "not-the-token"},
                ]
            }
        )
    )
    code, lines = run_check("--config", str(config))
    assert code == 1, lines
    assert "source(s) good, revoked;" in lines[0]
    passentry = [line.split(None, 3) for line in lines if line.split()[1] == "passentry"]
    assert [row[:3] for row in passentry] == [["ok", "passentry", "[good]"],
                                              ["FAIL", "passentry", "[revoked]"]]  # fmt: skip


def test_running_needs_a_member_owning_each_source(
    env: dict[str, str], kafka_bootstrap: str
) -> None:
    source = env["BRIDGE_SOURCE_ID"]
    code, lines = run_check("--running")
    assert code == 1, lines
    assert lines[-1].split(None, 2)[:2] == ["FAIL", "running"]
    assert lines[-1].split(None, 2)[2].startswith(f"{env['BRIDGE_GROUP_ID']}: ")
    assert lines[-1].endswith(f"no owner for {source}")

    # a member as the bridge runs one: the group's Membership, owning what it is assigned
    config = load_config()
    owned: set[str] = set()
    member = Membership(
        config.kafka.librdkafka(),
        GroupSettings(
            env["BRIDGE_GROUP_ID"], env["BRIDGE_COORDINATION_TOPIC"], 4, session_timeout_ms=6000
        ),
        [source],
        start=owned.update,
        stop=owned.difference_update,
        hold=lambda ids: None,
        release=owned.difference_update,
        metrics=Metrics(),
        health=MemberHealth(),
    )
    stop = threading.Event()
    thread = threading.Thread(target=member.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: source in owned, 60, "the member to own the source")
        code, lines = run_check("--running")
        assert code == 0, lines
        verdict, name, detail = lines[-1].split(None, 2)
        assert (verdict, name) == ("ok", "running")
        assert detail.startswith(f"{env['BRIDGE_GROUP_ID']}: stable, 1 member")
        assert f"{source} on 127.0.0.1" in lines[-1]
    finally:
        stop.set()
        thread.join(timeout=30)
