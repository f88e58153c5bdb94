"""The command list: each command's module loads only when it runs (--help lists them all
without loading one), and one that is not installed (the simulator, in the image) is left
out of --help and refused by name."""

from __future__ import annotations

import importlib
from types import ModuleType

import click
import pytest
from click.testing import CliRunner

from bridge.cli import _Commands, cli


@pytest.fixture
def without_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    lazy = dict(_Commands._lazy)
    lazy["simulate"] = lazy["simulate"]._replace(module="passentry_simulator_not_installed.command")
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


def test_each_summary_is_what_click_makes_of_the_commands_own_help() -> None:
    ctx = click.Context(cli)
    for name, lazy in _Commands._lazy.items():
        command = cli.get_command(ctx, name)
        assert command is not None
        assert not command.hidden, name
        assert not command.deprecated, name
        assert lazy.summary == command.get_short_help_str(limit=10_000), name


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_the_listing_is_clicks_own_at_any_width(width: int) -> None:
    ctx = click.Context(cli, terminal_width=width)
    ours, clicks = click.HelpFormatter(width=width), click.HelpFormatter(width=width)
    cli.format_commands(ctx, ours)
    click.Group.format_commands(cli, ctx, clicks)
    assert ours.getvalue() == clicks.getvalue()
    assert "simulate" in ours.getvalue()


def test_help_loads_no_command(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []
    real = importlib.import_module

    def recording(name: str, package: str | None = None) -> ModuleType:
        loaded.append(name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", recording)
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "run       Poll PassEntry and publish new scans to Kafka, continuously." in result.output
    assert loaded == []
