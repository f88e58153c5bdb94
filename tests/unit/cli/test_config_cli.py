"""``config show`` (the effective configuration, secrets masked) and ``config lint`` (a
file checked offline), and the shipped example, which must pass its own lint."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from bridge.cli.config import config

ROOT = Path(__file__).resolve().parents[3]


def test_the_example_passes_lint() -> None:
    example = ROOT / "examples" / "bridge.yaml"
    result = CliRunner().invoke(config, ["lint", str(example)])
    assert result.exit_code == 0, result.output
    assert "2 source(s): eu-events, us-gate-7" in result.output


def test_lint_reads_the_file_alone(tmp_path: Path) -> None:
    """The environment neither rescues nor breaks a file: lint checks what the file says."""
    good = tmp_path / "good.yaml"
    good.write_text("kafka:\n  linger_ms: 5\n")
    env = {"KAFKA_LINGER_MS": "not a number", "PASSENTRY_NOT_A_SETTING": "1"}
    assert CliRunner().invoke(config, ["lint", str(good)], env=env).exit_code == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - id: eu\n    lookbak_s: 60\n")
    result = CliRunner().invoke(config, ["lint", str(good), str(bad)], env={"KAFKA_LINGER_MS": "5"})
    assert result.exit_code == 2
    assert (
        "sources[eu].lookbak_s: not a setting; did you mean sources[eu].lookback_s?"
        in result.output
    )


def test_show_merges_the_environment_over_the_file_and_masks_secrets(tmp_path: Path) -> None:
    f = tmp_path / "bridge.yaml"
    f.write_text(
        "passentry:\n  lookback_s: 120\n"
        "kafka:\n  properties:\n    sasl.oauthbearer.client.secret: hush\n    client.rack: r1\n"
        "sources:\n  - id: eu\n    api_token: eu-token\n    lookback_s: 600\n"
        "  - id: us\n    api_token: us-token\n"
    )
    env = {"PASSENTRY_LOOKBACK_S": "90", "KAFKA_SASL_PASSWORD": "pw", "PASSENTRY_API_TOKEN": "t"}
    result = CliRunner().invoke(config, ["show", "--config", str(f)], env=env)
    assert result.exit_code == 0, result.output
    for secret in ("hush", "eu-token", "us-token", "pw"):
        assert secret not in result.output
    shown = yaml.safe_load(result.output)
    assert shown["passentry"]["lookback_s"] == 90  # the environment wins over the file
    assert shown["kafka"]["properties"] == {
        "sasl.oauthbearer.client.secret": "**********",
        "client.rack": "r1",
    }
    eu, us = shown["sources"]
    assert eu["lookback_s"] == 600  # a source's own setting wins
    assert "lookback_s" not in us  # the shared one: not repeated
    assert eu["api_token"] == "**********"
    one = CliRunner().invoke(config, ["show", "--config", str(f), "--source", "us"], env=env)
    assert yaml.safe_load(one.output)["sources"][0]["lookback_s"] == 90
