"""The audit command's usage errors: exit 2, before anything is read."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bridge.cli import cli


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "last week", "--until", "now"], "ISO 8601"),
        (["--since", "2026-01-02", "--until", "2026-01-01"], "later than --since"),
        (["--since", "yesterday", "--until", "today", "--bucket", "hourly"], "duration"),
        (["--since", "yesterday", "--until", "today", "--live-margin", "5"], "duration"),
    ],
)
def test_bad_usage_exits_2(args: list[str], says: str) -> None:
    result = CliRunner().invoke(cli, ["audit", *args], env={"PASSENTRY_API_TOKEN": "t"})
    assert result.exit_code == 2
    assert says in result.output


def test_a_missing_token_is_a_configuration_error() -> None:
    result = CliRunner().invoke(cli, ["audit", "--since", "yesterday", "--until", "today"])
    assert result.exit_code == 2
