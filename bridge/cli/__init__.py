"""The ``passentry-bridge`` command line: one module per command group.

Each command's module is imported only when that command runs: aiohttp (the simulator) or
the registry client alone cost a third of a second, and a bridge that restarts after a crash
should be back at work at once.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import signal
import sys
from types import FrameType
from typing import ClassVar

import click

from bridge import __version__
from bridge.cli._errors import quiet_libraries, run_guarded, take_debug
from bridge.ops import gc_policy

__all__ = ["cli", "main"]


class _Commands(click.Group):
    _lazy: ClassVar[dict[str, tuple[str, str]]] = {
        "run": ("bridge.cli.run", "run"),
        "backfill": ("bridge.cli.backfill", "backfill"),
        "audit": ("bridge.cli.audit", "audit"),
        "dlq": ("bridge.cli.dlq", "dlq"),
        "check": ("bridge.cli.check", "check"),
        "config": ("bridge.cli.config", "config"),
        "tail": ("bridge.cli.tail", "tail"),
        "state": ("bridge.cli.state", "state"),
        "status": ("bridge.cli.status", "status"),
        "schema": ("bridge.cli.schema", "schema"),
        # The PassEntry stand-in, its own distribution (simulator/): not in the image.
        "simulate": ("passentry_simulator.command", "simulate"),
        "webhooks": ("bridge.cli.webhooks", "webhooks"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        # Only what this install can run: the image has no simulator.
        return sorted(n for n, (module, _) in self._lazy.items() if _installed(module))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in self._lazy:
            hint = difflib.get_close_matches(name, list(self._lazy), n=1)
            ctx.fail(f"no command {name!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self._lazy:
            return None
        module, name = self._lazy[cmd_name]
        try:
            with gc_policy.paused():
                loaded = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
            # The simulator is a distribution of its own: a production install (the image)
            # has none.
            raise click.UsageError(
                f"{cmd_name!r} is not installed here: it comes with passentry-simulator"
                " (pip install ./simulator from a checkout; make install does)"
            ) from None
        command: click.Command = getattr(loaded, name)
        return command


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="passentry-bridge")
@click.option(
    "--debug",
    is_flag=True,
    help="On an error, print the traceback; show every log line, librdkafka's included."
    " Accepted anywhere on the command line.",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Stream PassEntry pass scans into Kafka as Avro.

    Exit status: 0 done; 2 bad usage or configuration; 1 could not run; some commands say
    more in their --help."""
    ctx.ensure_object(dict)["debug"] = debug
    if ctx.invoked_subcommand not in ("run", "simulate"):
        # Services log as services; a command run by a person sums up in one line.
        quiet_libraries(debug=debug)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module.split(".", 1)[0]) is not None


def main() -> None:
    """The console script. A SIGTERM that comes while the command is still loading (a pod
    stopped right after it started) ends the process cleanly with exit 0: nothing has been
    read or written yet. ``run`` installs its graceful handler once it is built."""
    signal.signal(signal.SIGTERM, _exit_before_start)
    args = sys.argv[1:]
    debug = take_debug(args)
    if debug:
        args.insert(0, "--debug")
    sys.exit(
        run_guarded(
            lambda: cli.main(args=args, prog_name="passentry-bridge", standalone_mode=False),
            debug=debug,
        )
    )


def _exit_before_start(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)
