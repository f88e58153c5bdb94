"""The command list: each command's module loads only when it runs, and one that is not
installed (the simulator, in the image) is left out of --help and refused by name."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bridge.cli import _Commands, cli


@pytest.fixture
def without_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    lazy = dict(_Commands._lazy)
    lazy["simulate"] = ("passentry_simulator_not_installed.command", "simulate")
    monkeypatch.setattr(_Commands, "_lazy", lazy)


def test_a_command_that_is_installed_is_listed() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "simulate" in result.output
    assert "dlq" in result.output


@pytest.mark.usefixtures("without_simulator")
def test_a_command_that_is_not_installed_is_left_out_and_refused_by_name() -> None:
    listed = CliRunner().invoke(cli, ["--help"])
    assert listed.exit_code == 0
    assert "simulate" not in listed.output
    refused = CliRunner().invoke(cli, ["simulate"])
    assert refused.exit_code == 2
    assert "'simulate' is not installed here" in refused.output
    assert "passentry-simulator" in refused.output
