"""The ``passentry-bridge`` command line: one module per command group.

Each command's module is imported only when that command runs: aiohttp (the simulator) or
the registry client alone cost a third of a second, and a bridge that restarts after a crash
should be back at work at once.
"""

from __future__ import annotations

import importlib
import signal
import sys
from types import FrameType
from typing import ClassVar

import click

from bridge import __version__

__all__ = ["cli", "main"]


class _Commands(click.Group):
    _lazy: ClassVar[dict[str, tuple[str, str]]] = {
        "run": ("bridge.cli.run", "run"),
        "backfill": ("bridge.cli.backfill", "backfill"),
        "audit": ("bridge.cli.audit", "audit"),
        "dlq": ("bridge.cli.dlq", "dlq"),
        "check": ("bridge.cli.check", "check"),
        "tail": ("bridge.cli.tail", "tail"),
        "state": ("bridge.cli.state", "state"),
        "schema": ("bridge.cli.schema", "schema"),
        "simulate": ("bridge.simulator.command", "simulate"),
        "webhooks": ("bridge.cli.webhooks", "webhooks"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._lazy)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self._lazy:
            return None
        module, name = self._lazy[cmd_name]
        command: click.Command = getattr(importlib.import_module(module), name)
        return command


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="passentry-bridge")
def cli() -> None:
    """Stream PassEntry pass scans into Kafka as Avro."""


def main() -> None:
    """The console script. A SIGTERM that comes while the command is still loading (a pod
    stopped right after it started) ends the process cleanly with exit 0: nothing has been
    read or written yet. ``run`` installs its graceful handler once it is built."""
    signal.signal(signal.SIGTERM, _exit_before_start)
    cli()


def _exit_before_start(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)
