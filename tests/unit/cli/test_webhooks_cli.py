"""``webhooks register|list|delete`` against the simulator's subscription endpoints: a
repeat register updates the subscription or says how to get a new secret, --rotate-secret
hands a new one over, delete removes one by id or URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.cli.webhooks import webhooks
from passentry_simulator import SimulatorConfig, SimulatorServer, WorldConfig

URL = "https://bridge.example.com/webhooks/passentry/default"


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    world = WorldConfig(seed=1, readers=4, passes=10)
    server = SimulatorServer(SimulatorConfig(world=world, rate_limit=None)).start()
    try:
        yield {"PASSENTRY_API_URL": server.url, "PASSENTRY_API_TOKEN": server.token}
    finally:
        server.stop()


def _run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(webhooks, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_register_twice_updates_or_says_how(env: dict[str, str], tmp_path: Path) -> None:
    first = tmp_path / "first.secret"
    code, _, err = _run(env, "register", "--url", URL, "--secret-file", str(first))
    assert code == 0, err
    assert "created subscription" in err
    secret = first.read_text().strip()
    assert len(secret) >= 32
    code, out, err = _run(env, "register", "--url", URL)
    assert code == 0, err
    assert "sends passScanned" in err
    assert "--rotate-secret" in err  # how to get a secret again
    assert secret not in out + err
    code, out, _ = _run(env, "list")
    assert out.count(URL) == 1  # updated, not created twice


def test_rotate_secret_hands_a_new_one_over(env: dict[str, str], tmp_path: Path) -> None:
    old, new = tmp_path / "old.secret", tmp_path / "new.secret"
    assert _run(env, "register", "--url", URL, "--secret-file", str(old))[0] == 0
    code, _, err = _run(env, "register", "--url", URL, "--rotate-secret", "--secret-file", str(new))
    assert code == 0, err
    assert "rotated" in err
    assert new.read_text().strip() != old.read_text().strip()
    assert oct(new.stat().st_mode & 0o777) == "0o600"


def test_delete_by_url_or_id(env: dict[str, str]) -> None:
    assert _run(env, "register", "--url", URL)[0] == 0
    assert _run(env, "register", "--url", URL + "-2")[0] == 0
    code, _, err = _run(env, "delete", URL, "--yes")
    assert code == 0, err
    listed = _run(env, "list")[1].splitlines()
    assert [line.split()[-1] for line in listed] == [URL + "-2"]
    sub_id = listed[0].split()[0]
    assert _run(env, "delete", sub_id, "--yes")[0] == 0
    assert _run(env, "list")[1] == ""


def test_delete_of_nothing_lists_what_there_is(env: dict[str, str]) -> None:
    assert _run(env, "register", "--url", URL)[0] == 0
    code, _, err = _run(env, "delete", "https://nowhere.example/", "--yes")
    assert code == 2
    assert URL in err
