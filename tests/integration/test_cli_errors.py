"""Every command, given bad input, ends in one line that names the problem and the setting,
flag or file, with exit 2 for usage or configuration and 1 for "could not run", and never a
traceback (that is for ``--debug``).

The commands run as the console script, in subprocesses, as a user runs them: missing and
wrong files, bad JSON and YAML, unknown keys (with the nearest one suggested), ports in
use, Kafka and PassEntry out of reach (closed ports on this machine), a topic that does not
exist on the real broker, and schema versions that do not exist. The slow cases (Kafka's
metadata timeouts) run side by side.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

EXE = str(Path(sys.executable).parent / "passentry-bridge")
SECRET = "s" * 40


@dataclass(frozen=True)
class Case:
    id: str
    args: list[str]
    code: int
    # Every one of these is in the line.
    says: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    # A service (``run``, ``simulate``) logs as it goes: only its last line is the verdict.
    last_line_only: bool = False


@dataclass(frozen=True)
class Outcome:
    code: int
    stderr: str
    lines: list[str]


def _closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli-errors")
    (d / "broken.yaml").write_text("kafka: [1, 2\n")
    (d / "list.yaml").write_text("- a\n- b\n")
    (d / "unknown-key.yaml").write_text("kafka:\n  lingr_ms: 5\n")
    (d / "unknown-section.yaml").write_text("kafak:\n  linger_ms: 5\n")
    (d / "bad-value.yaml").write_text("bridge:\n  http_port: -1\n")
    (d / "sources.yaml").write_text(
        "sources:\n  - id: eu\n    api_tokn: x\n  - id: us\n    api_token: y\n"
    )
    (d / "sources-ok.yaml").write_text(
        "sources:\n  - id: eu\n    api_token_file: missing-token\n  - id: us\n    api_token: y\n"
    )
    (d / "nested.yaml").write_text("passentry:\n  filters:\n    stauts: failed\n")
    return d


def _cases(files: Path, busy: int, kafka: str) -> list[Case]:
    nowhere = f"127.0.0.1:{_closed_port()}"
    api = f"http://127.0.0.1:{_closed_port()}"
    missing = str(files / "missing.yaml")
    offline = {"KAFKA_BOOTSTRAP_SERVERS": nowhere, "PASSENTRY_API_URL": api}
    return [
        # files the user names
        Case("run-missing-config", ["run", "--config", missing], 2, ("--config", "missing.yaml")),
        Case("check-broken-yaml", ["check", "--config", str(files / "broken.yaml")], 2,
             ("broken.yaml", "not valid YAML")),
        Case("status-yaml-not-a-mapping", ["status", "--config", str(files / "list.yaml")], 2,
             ("list.yaml", "mapping")),
        Case("config-lint-unknown-key", ["config", "lint", str(files / "unknown-key.yaml")], 2,
             ("kafka.lingr_ms", "did you mean kafka.linger_ms")),
        Case("config-lint-missing-file", ["config", "lint", missing], 2, ("missing.yaml",)),
        Case("config-show-unknown-section",
             ["config", "show", "--config", str(files / "unknown-section.yaml")], 2,
             ("kafak",)),
        Case("tail-bad-value-in-file", ["tail", "--config", str(files / "bad-value.yaml")], 2,
             ("bridge.http_port",)),
        Case("state-show-nested-unknown-key",
             ["state", "show", "--config", str(files / "nested.yaml")], 2,
             ("passentry.filters.stauts", "did you mean passentry.filters.status")),
        Case("backfill-source-key",
             ["backfill", "--config", str(files / "sources.yaml"), "--since", "yesterday",
              "--until", "today"], 2,
             ("sources[eu].api_tokn", "did you mean sources[eu].api_token")),
        Case("audit-source-token-file",
             ["audit", "--config", str(files / "sources-ok.yaml"), "--source", "eu",
              "--since", "yesterday", "--until", "today"], 2,
             ("sources[eu].api_token_file", "missing-token"), env=offline),
        Case("schema-check-missing-dir", ["schema", "check", "--schemas-dir", missing], 2,
             ("--schemas-dir",)),
        Case("webhooks-register-secret-dir",
             ["webhooks", "register", "--url", "https://x.example/webhooks/passentry/default",
              "--secret-file", str(files)], 2, ("--secret-file",)),
        # the environment
        Case("check-bad-json", ["check"], 2, ("KAFKA_PROPERTIES", "JSON"),
             env={"KAFKA_PROPERTIES": "{bad json"}),
        Case("tail-unknown-librdkafka-property", ["tail"], 2, ("KAFKA_PROPERTIES",),
             env={"KAFKA_PROPERTIES": '{"no.such.property": "x"}'}),
        Case("run-misspelt-variable", ["run"], 2,
             ("BRIDGE_HTTP_PROT", "did you mean BRIDGE_HTTP_PORT"),
             env={"BRIDGE_HTTP_PROT": "1"}),
        Case("audit-bad-value", ["audit", "--since", "yesterday", "--until", "today"], 2,
             ("PASSENTRY_LOOKBACK_S",), env={"PASSENTRY_LOOKBACK_S": "soon"}),
        # flags
        Case("tail-unknown-flag", ["tail", "--frm", "earliest"], 2, ("--frm", "--from")),
        Case("tail-bad-from", ["tail", "--from", "last tuesday"], 2, ("--from",)),
        Case("tail-unknown-source", ["tail", "--source", "nope"], 2, ("--source", "nope")),
        Case("state-reset-bad-time", ["state", "reset", "--to", "soon", "--yes"], 2, ("--to",)),
        Case("audit-bad-bucket",
             ["audit", "--since", "yesterday", "--until", "today", "--bucket", "hourly"], 2,
             ("hourly",)),
        Case("backfill-missing-until", ["backfill", "--since", "yesterday"], 2, ("--until",)),
        Case("status-unknown-source", ["status", "--source", "nope"], 2, ("--source",)),
        Case("webhooks-delete-no-target", ["webhooks", "delete"], 2, ("TARGET",)),
        Case("simulate-bad-webhook-url", ["simulate", "--webhook-url", "ftp://x",
             "--webhook-secret", SECRET], 2, ("--webhook-url",)),
        Case("unknown-command", ["stauts"], 2, ("stauts", "status")),
        # wrong versions
        Case("schema-show-no-version", ["schema", "show", "--version", "7"], 2,
             ("--version", "no version 7")),
        Case("schema-diff-no-version", ["schema", "diff", "1", "9"], 2, ("no version 9",)),
        Case("schema-diff-bad-spec", ["schema", "diff", "one"], 2, ("'one'",)),
        # ports in use
        Case("run-http-port-in-use", ["run"], 1, ("BRIDGE_HTTP_PORT", "in use"),
             env={**offline, "BRIDGE_HTTP_HOST": "127.0.0.1", "BRIDGE_HTTP_PORT": str(busy)}),
        Case("run-webhook-port-in-use", ["run"], 1, ("BRIDGE_WEBHOOK_PORT", "in use"),
             env={**offline, "BRIDGE_HTTP_HOST": "127.0.0.1", "BRIDGE_HTTP_PORT": "0",
                  "BRIDGE_WEBHOOK_PORT": str(busy), "PASSENTRY_WEBHOOK_SECRET": SECRET}),
        Case("simulate-port-in-use", ["simulate", "--port", str(busy)], 1, ("--port", "in use"),
             last_line_only=True),
        # Kafka and PassEntry out of reach
        Case("tail-kafka-unreachable", ["tail"], 1, ("KAFKA_BOOTSTRAP_SERVERS",), env=offline),
        Case("status-kafka-unreachable", ["status"], 1, ("passentry-bridge", "Broker transport"),
             env=offline),
        Case("state-show-kafka-unreachable", ["state", "show"], 1, ("passentry.bridge.state",),
             env=offline),
        Case("webhooks-list-api-unreachable", ["webhooks", "list"], 1,
             ("PASSENTRY_API_URL", "ConnectError"), env=offline),
        Case("webhooks-delete-api-unreachable", ["webhooks", "delete", "x", "--yes"], 1,
             ("PASSENTRY_API_URL",), env=offline),
        Case("schema-register-no-registry", ["schema", "register"], 1,
             ("SCHEMA_REGISTRY_URL",)),
        Case("run-once-api-unreachable", ["run", "--once"], 1,
             ("--once could not complete a cycle", "PASSENTRY_API_URL"),
             env={"KAFKA_BOOTSTRAP_SERVERS": kafka, "PASSENTRY_API_URL": api,
                  "BRIDGE_HTTP_PORT": "0", "BRIDGE_GROUP_ID": "",
                  "BRIDGE_SOURCE_ID": f"cli-errors-{os.getpid()}"},
             last_line_only=True),
        Case("tail-missing-topic", ["tail", "--topic", "passentry.scnas", "--wait-for-topic",
             "1"], 2, ("passentry.scnas", "does not exist", "the topics are"),
             env={"KAFKA_BOOTSTRAP_SERVERS": kafka}),
    ]  # fmt: skip


def _run(case: Case, home: Path) -> Outcome:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PASSENTRY_", "KAFKA_", "BRIDGE_", "SCHEMA_REGISTRY_"))
    }
    env.update({"PASSENTRY_API_TOKEN": "t", "PASSENTRY_RETRY_DEADLINE_S": "2", **case.env})
    proc = subprocess.run(
        [EXE, *case.args], env=env, cwd=home, capture_output=True, text=True, timeout=180,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return Outcome(proc.returncode, proc.stderr, lines)


@pytest.fixture(scope="module")
def outcomes(files: Path, busy_port: int, kafka_bootstrap: str) -> dict[str, tuple[Case, Outcome]]:
    cases = _cases(files, busy_port, kafka_bootstrap)
    with ThreadPoolExecutor(max_workers=8) as pool:
        done = pool.map(lambda c: (c, _run(c, files)), cases)
        return {case.id: (case, outcome) for case, outcome in done}


CASE_IDS = [c.id for c in _cases(Path("."), 0, "")]


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_bad_input_ends_in_one_line(
    case_id: str, outcomes: dict[str, tuple[Case, Outcome]]
) -> None:
    case, out = outcomes[case_id]
    shown = f"{case.args} exited {out.code}:\n{out.stderr[-3000:]}"
    assert "Traceback" not in out.stderr, shown
    assert out.code == case.code, shown
    assert out.lines, shown
    if not case.last_line_only:
        assert len(out.lines) == 1, shown
    line = out.lines[-1]
    for part in case.says:
        assert part in line, f"{part!r} not in the last line\n{shown}"
