"""``passentry-bridge status``: one view of each source, as Kafka Connect's
``GET /connectors/<name>/status`` gives of a connector: who owns it, whether it runs or fails
(and the last error), its checkpoint, how far PassEntry is ahead, its webhook inbox and its
last audit (``bridge.ops.source_status``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from bridge.cli._common import config_option, load, pick_source
from bridge.ops.source_status import SourceStatus, gather
from bridge.passentry.slices import iso_millis

__all__ = ["render", "status"]


@click.command()
@config_option
@click.option("--source", "source_id", help="Only this source. Default: every source.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for scripts.")
def status(config_path: Path | None, source_id: str | None, as_json: bool) -> None:
    """Each source: owner, state (running, failing with its last error, stopped, starting,
    standby, unowned), checkpoint age, watermark, scans PassEntry holds beyond it, webhook
    inbox lag and the last audit. Reads Kafka; asks PassEntry one request per source, and
    each owner its /status.

    Exit 0 when it could look (whatever it saw); 1 when Kafka could not be read."""
    config = load(config_path)
    ids = [pick_source(config, source_id)] if source_id else [s.id for s in config.sources]
    found = gather(config, ids)
    if as_json:
        click.echo(json.dumps({"sources": [s.as_json() for s in found]}, indent=2))
        return
    click.echo("\n\n".join(render(s) for s in found))


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def render(s: SourceStatus) -> str:
    """A small table: one row per thing an operator asks first."""
    rows: list[tuple[str, str]] = []
    state = s.state + (f": {s.error}" if s.error else "")
    rows.append(("state", state))
    owner = "-" if s.owner is None else f"{s.owner.client_id} at {s.owner.host}"
    if s.owner is not None:
        owner += f" (member {s.owner.member_id[-12:]})"
    rows.append(("owner", owner + (f", group {s.group}" if s.group else "")))
    rows.append(("checkpoint", _ago(s.checkpoint_age_s)))
    if s.watermark is not None:
        created = iso_millis(s.watermark_created_ms) if s.watermark_created_ms else "?"
        rows.append(("watermark", f"{s.watermark} (created {created})"))
    if s.polled_until_ms is not None:
        rows.append(("read until", iso_millis(s.polled_until_ms)))
    if s.behind is not None:
        rows.append(("behind", f"{s.behind} scan(s) newer in PassEntry"))
    elif s.behind_error:
        rows.append(("behind", f"unknown: {s.behind_error}"))
    if s.inbox_lag is not None:
        rows.append(("inbox lag", f"{s.inbox_lag} webhook event(s) waiting"))
    audit = s.last_audit
    if audit is None:
        rows.append(("last audit", "none recorded"))
    else:
        verdict = "complete" if audit.complete else "NOT complete"
        age = _ago(time.time() - audit.finished_at_ms / 1000)
        rows.append((
            "last audit",
            f"{verdict}: {audit.missing} missing, {audit.duplicated} duplicated,"
            f" {audit.repaired} repaired ({audit.command} of {iso_millis(audit.since_ms)}"
            f" to {iso_millis(audit.until_ms)}, {age})",
        ))  # fmt: skip
    rows += [("note", note) for note in s.notes]
    width = max(len(name) for name, _ in rows)
    lines = [f"source {s.source_id}"] + [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)
