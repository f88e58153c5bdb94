"""The ``passentry-bridge`` command line: builds config and hands over to the right part."""

from __future__ import annotations

import click

from bridge import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="passentry-bridge")
def main() -> None:
    """Stream PassEntry pass scans into Kafka as Avro."""


def _register() -> None:
    from bridge.simulator.command import simulate

    main.add_command(simulate)


_register()
