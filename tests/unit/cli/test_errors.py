"""How a command ends when something escapes it: one line and an exit status, or with
``--debug`` the traceback."""

from __future__ import annotations

import errno

import click
import pytest

from bridge.cli._errors import run_guarded, take_debug
from bridge.errors import ConfigError, FatalError


def _raises(exc: BaseException) -> int:
    raise exc


@pytest.mark.parametrize(
    ("exc", "code", "says"),
    [
        (ConfigError("PASSENTRY_LOOKBACK_S: not a number"), 2, "PASSENTRY_LOOKBACK_S"),
        (FatalError("Kafka refused\nthe credentials"), 1, "Kafka refused the credentials"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "a.yaml"), 2, "a.yaml"),
        (OSError(errno.EADDRINUSE, "Address already in use"), 1, "in use"),
        (RuntimeError("a bug"), 1, "--debug"),
        (click.BadParameter("not a time", param_hint="--to"), 2, "--to"),
    ],
)
def test_what_escapes_is_one_line(
    exc: Exception, code: int, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_guarded(lambda: _raises(exc), debug=False) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("passentry-bridge: ")
    assert says in err
    assert "Traceback" not in err


def test_debug_lets_the_traceback_through() -> None:
    with pytest.raises(RuntimeError, match="a bug"):
        run_guarded(lambda: _raises(RuntimeError("a bug")), debug=True)


def test_debug_is_taken_from_anywhere_before_a_double_dash() -> None:
    args = ["schema", "show", "--version", "7", "--debug"]
    assert take_debug(args)
    assert args == ["schema", "show", "--version", "7"]
    args = ["tail", "--", "--debug"]
    assert not take_debug(args)
    assert args == ["tail", "--", "--debug"]
