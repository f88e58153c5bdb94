"""Webhook secrets: at least 32 bytes, one per source, and picked up again when their
mounted files change, without a restart."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.errors import ConfigError
from bridge.webhook.keys import CHECK_EVERY_S, SigningKeys, signing_keys

LONG = "a-webhook-secret-of-forty-bytes-000000000"
OTHER = "another-webhook-secret-of-forty-bytes-001"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str) -> None:
    """Replace the file as the kubelet updates a mounted Secret: a new file swapped in."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text + "\n")
    os.replace(fresh, path)


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"PASSENTRY_WEBHOOK_SECRET": "short"}, "PASSENTRY_WEBHOOK_SECRET"),
        ({"PASSENTRY_WEBHOOK_PREVIOUS_SECRET": "x" * 31}, "PASSENTRY_WEBHOOK_PREVIOUS_SECRET"),
    ],
)
def test_a_secret_under_32_bytes_is_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], name: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=f"{name}: .* at least 32") as caught:
        load_config()
    assert env[name] not in str(caught.value)


def test_a_short_secret_in_a_file_is_refused_naming_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("PASSENTRY_WEBHOOK_SECRET_FILE", str(secret))
    config = load_config()
    with pytest.raises(
        ConfigError,
        match=f"source default: PASSENTRY_WEBHOOK_SECRET_FILE: the secret in {secret} is 6 bytes",
    ):
        signing_keys(config.sources)
    secret.write_text("x" * 32)
    (keys,) = signing_keys(config.sources).values()
    assert keys.current() == [b"x" * 32]


def test_two_sources_may_not_share_a_secret(tmp_path: Path) -> None:
    config_file = tmp_path / "bridge.yaml"
    config_file.write_text(
        f"passentry:\n  webhook_secret: {LONG}\nsources:\n  - id: north\n  - id: south\n"
    )
    with pytest.raises(ConfigError, match="sources north and south have the same webhook secret"):
        signing_keys(load_config(config_file).sources)
    config_file.write_text(
        "sources:\n"
        f"  - id: north\n    webhook_secret: {LONG}\n"
        f"  - id: south\n    webhook_secret: {OTHER}\n"
        "  - id: polled\n"
    )
    keys = signing_keys(load_config(config_file).sources)
    assert {k: v.current() for k, v in keys.items()} == {
        "north": [LONG.encode()],
        "south": [OTHER.encode()],
    }


def test_a_rotated_file_is_picked_up_without_a_restart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    current, previous = tmp_path / "secret", tmp_path / "previous"
    write(current, LONG)
    monkeypatch.setenv("PASSENTRY_WEBHOOK_SECRET_FILE", str(current))
    monkeypatch.setenv("PASSENTRY_WEBHOOK_PREVIOUS_SECRET_FILE", str(previous))
    write(previous, OTHER)
    pe = load_config().passentry
    clock = Clock()
    keys = SigningKeys("gates", pe.webhook_secrets, [current, previous], clock=clock)
    assert keys.current() == [LONG.encode(), OTHER.encode()]

    rotated = "the-rotated-webhook-secret-000000000000000"
    write(current, rotated)
    write(previous, LONG)
    assert keys.current() == [LONG.encode(), OTHER.encode()], "looked at once a second only"
    clock.now += CHECK_EVERY_S
    with caplog.at_level(logging.INFO):
        assert keys.current() == [rotated.encode(), LONG.encode()]
    assert "webhook secret reloaded" in caplog.text

    # A bad file is said once, and the keys in use stay.
    write(current, "too-short")
    clock.now += CHECK_EVERY_S
    caplog.clear()
    assert keys.current() == [rotated.encode(), LONG.encode()]
    clock.now += CHECK_EVERY_S
    assert keys.current() == [rotated.encode(), LONG.encode()]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "too-short" not in caplog.text
    assert str(current) in errors[0].__dict__["error"]

    # Rotation over: the previous secret's file emptied, only the new secret signs.
    write(current, rotated)
    write(previous, "")
    clock.now += CHECK_EVERY_S
    assert keys.current() == [rotated.encode()]
