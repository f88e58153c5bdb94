"""The ``passentry-bridge`` command line: one module per command group.

Each command's module is imported only when that command runs: aiohttp (the simulator) or
the registry client alone cost a third of a second, and a bridge that restarts after a crash
should be back at work at once. ``--help`` lists the commands from summaries kept here, so
it loads none of them.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import signal
import sys
import textwrap
from types import FrameType
from typing import ClassVar, NamedTuple

import click

from bridge import __version__
from bridge.cli._errors import quiet_libraries, run_guarded, take_debug
from bridge.ops import gc_policy

__all__ = ["cli", "main"]


class _Lazy(NamedTuple):
    module: str
    attribute: str
    # The command's summary in the group's --help, which lists every command without
    # loading one (loading them all took 0.6 CPU s). tests/unit/cli/test_commands.py keeps
    # each equal to what click makes of the command's own docstring.
    summary: str


class _Commands(click.Group):
    _lazy: ClassVar[dict[str, _Lazy]] = {
        "run": _Lazy(
            "bridge.cli.run", "run",
            "Poll PassEntry and publish new scans to Kafka, continuously.",
        ),
        "backfill": _Lazy(
            "bridge.cli.backfill", "backfill",
            "Publish the scans created in [--since, --until) that Kafka does not hold yet.",
        ),
        "audit": _Lazy(
            "bridge.cli.audit", "audit",
            "Check that every scan PassEntry lists in [--since, --until) is in Kafka, once.",
        ),
        "dlq": _Lazy(
            "bridge.cli.dlq", "dlq",
            "Dead letters: list them by reason, show one, replay what now passes.",
        ),
        "check": _Lazy(
            "bridge.cli.check", "check",
            "Validate the config, reach the PassEntry API, log in to Kafka and check each"
            " permission the bridge needs there; print a verdict for each.",
        ),
        "config": _Lazy(
            "bridge.cli.config", "config",
            "Show the effective configuration, or check a YAML file.",
        ),
        "tail": _Lazy(
            "bridge.cli.tail", "tail",
            "Consume a topic (read_committed), decode Avro, print a line per record.",
        ),
        "state": _Lazy(
            "bridge.cli.state", "state",
            "Inspect or move this source's checkpoint (the cursor in Kafka).",
        ),
        "status": _Lazy(
            "bridge.cli.status", "status",
            "Each source: owner, state (running, failing with its last error, stopped,"
            " starting, standby, unowned), checkpoint age, watermark, scans PassEntry holds"
            " beyond it, webhook inbox lag and the last audit.",
        ),
        "schema": _Lazy(
            "bridge.cli.schema", "schema",
            "Inspect, check and register the published Avro schema.",
        ),
        # The PassEntry stand-in, its own distribution (simulator/): not in the image.
        "simulate": _Lazy(
            "passentry_simulator.command", "simulate",
            "Serve a fake PassEntry scans API, with live traffic, passScanned webhooks and"
            " injectable faults.",
        ),
        "webhooks": _Lazy(
            "bridge.cli.webhooks", "webhooks",
            "PassEntry webhook subscriptions: the push path of the bridge.",
        ),
    }  # fmt: skip

    def list_commands(self, ctx: click.Context) -> list[str]:
        # Only what this install can run: the image has no simulator.
        return sorted(n for n, lazy in self._lazy.items() if _installed(lazy.module))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click lists the commands, shortened to the same width, from the summaries."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(map(len, names))
        with formatter.section("Commands"):
            formatter.write_dl(
                [(name, _shorten(self._lazy[name].summary, limit)) for name in names]
            )

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
        module, name, _ = self._lazy[cmd_name]
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


def _shorten(text: str, limit: int) -> str:
    """``text`` cut at a word to ``limit`` characters with "...", as click cuts a summary."""
    if len(text) <= limit:
        return text
    if limit < len("..."):
        return "..."
    return textwrap.shorten(text, limit, placeholder="...", break_on_hyphens=False)


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
