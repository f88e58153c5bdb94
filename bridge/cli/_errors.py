"""How a command ends when something is wrong: one line on stderr that names the problem and
the setting, flag or file, and an exit status that says whose move it is.

- 2: usage or configuration (a flag, a setting, a file the user gave): fix the input;
- 1: the command could not run (Kafka or PassEntry out of reach, a port in use, refused);
- anything else a command chose itself (``audit`` 4-6, 3 when a live bridge owns a source).

A traceback is for the bridge's own bugs, and only with ``--debug``: without it an
unexpected exception is one line too, which says to run again with ``--debug``.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable

import click
from confluent_kafka import KafkaError, KafkaException

from bridge.errors import BridgeError, ConfigError

__all__ = [
    "EXIT_FAILED",
    "EXIT_USAGE",
    "one_line",
    "quiet_libraries",
    "run_guarded",
    "take_debug",
]

EXIT_FAILED = 1
EXIT_USAGE = 2
PROG = "passentry-bridge"


def one_line(text: str) -> str:
    """Messages from libraries may span lines; a terminal line and a log line are one."""
    return " ".join(text.split())


def _say(text: str) -> None:
    click.echo(f"{PROG}: {one_line(text)}", err=True)


def _usage(exc: click.ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    message = exc.format_message()
    if ctx is None:
        return message
    # "passentry-bridge tail: No such option: --frm (passentry-bridge tail --help)"
    where = ctx.command_path.removeprefix(PROG).strip()
    prefix = f"{where}: " if where else ""
    return f"{prefix}{message} ({ctx.command_path} --help)"


def _os_error(exc: OSError) -> tuple[str, int]:
    """A file the user named (missing, unreadable) is their input; anything else is the
    machine's."""
    what = exc.strerror or str(exc)
    if exc.filename is not None:
        code = EXIT_USAGE if exc.errno in (errno.ENOENT, errno.EACCES, errno.EISDIR) else 1
        return f"{exc.filename}: {what}", code
    return what, EXIT_FAILED


def run_guarded(command: Callable[[], int | None], *, debug: bool) -> int:
    """Run ``command`` (the click group's ``main``) and turn whatever escapes it into one
    line and an exit status; ``debug`` lets the traceback through instead."""
    try:
        result = command()
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        # A declined confirmation, or Ctrl-C at a prompt.
        _say("aborted")
        return EXIT_FAILED
    except click.UsageError as exc:
        _say(_usage(exc))
        return EXIT_USAGE
    except click.ClickException as exc:
        _say(exc.format_message())
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if debug:
            raise
        message, code = _describe(exc)
        _say(message)
        return code
    return result if isinstance(result, int) else 0


def _describe(exc: Exception) -> tuple[str, int]:
    if isinstance(exc, ConfigError):
        return f"configuration error: {exc}", EXIT_USAGE
    if isinstance(exc, BridgeError):
        return str(exc), EXIT_FAILED
    if isinstance(exc, KafkaException):
        err = exc.args[0] if exc.args else exc
        text = err.str() if hasattr(err, "str") else str(err)
        if hasattr(err, "code") and err.code() == KafkaError._INVALID_ARG:
            # librdkafka refuses a property: one from KAFKA_PROPERTIES, as a rule.
            return f"configuration error: KAFKA_PROPERTIES (or a KAFKA_* setting): {text}", 2
        return f"Kafka: {text} (KAFKA_BOOTSTRAP_SERVERS and KAFKA_* say where and how)", 1
    if isinstance(exc, OSError):
        return _os_error(exc)
    return (
        f"internal error: {type(exc).__name__}: {exc} (run again with --debug for the"
        " traceback, and please report it)",
        EXIT_FAILED,
    )


# Loggers whose lines a command sums up in its own error (librdkafka repeats a failing
# connection's line on every reconnect; the client logs each retry).
_CHATTY = ("librdkafka", "bridge.kafka.access")


def quiet_libraries(*, debug: bool) -> None:
    """For a command run by a person (not ``run``, the service): only errors reach the
    terminal, as one line each, and librdkafka's own lines not at all: the command says
    what failed. ``--debug`` lets everything through."""
    from bridge.ops.logs import setup_logging

    setup_logging("auto", "DEBUG" if debug else "ERROR")
    if debug:
        # Each HTTP request's socket steps would drown everything else.
        logging.getLogger("httpcore").setLevel(logging.INFO)
        return
    for name in _CHATTY:
        logger = logging.getLogger(name)
        logger.handlers[:] = [logging.NullHandler()]
        logger.propagate = False


def take_debug(args: list[str]) -> bool:
    """``--debug`` anywhere before ``--`` (people add it at the end, after the command's own
    options); taken out of ``args`` so that the group sees it first."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[:end]:
        return False
    args.remove("--debug")
    return True
