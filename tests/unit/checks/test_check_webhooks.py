"""``check``'s webhooks row refuses what the bridge would refuse at start-up, before it asks
PassEntry anything: a short secret, or one shared by two sources."""

from __future__ import annotations

from pathlib import Path

from bridge.checks.passentry import check_webhooks
from bridge.config import load_config

SECRET = "whsec-check-0123456789abcdef0123456789abcdef"


def test_a_secret_shared_by_two_sources_fails_the_row(tmp_path: Path) -> None:
    config_file = tmp_path / "bridge.yaml"
    config_file.write_text(
        f"passentry:\n  api_token: t\n  webhook_secret: {SECRET}\n"
        "sources:\n  - id: north\n  - id: south\n"
    )
    config = load_config(config_file)
    row = check_webhooks(config, config.source("north"))
    assert not row.ok
    assert "sources north and south have the same webhook secret" in row.detail
    assert SECRET not in row.detail


def test_a_short_secret_in_a_file_fails_the_row(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("short\n")
    config_file = tmp_path / "bridge.yaml"
    config_file.write_text(f"passentry:\n  api_token: t\n  webhook_secret_file: {secret}\n")
    config = load_config(config_file)
    row = check_webhooks(config, config.sources[0])
    assert not row.ok
    assert "at least 32" in row.detail
