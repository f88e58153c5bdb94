"""Which scans the live bridge will never publish: the repair's side of the no-double rule.

The live bridge publishes a scan only when its dedup window calls it new, and the window
calls every scan created before its cursor late: such a scan is dead-lettered (or, pushed
by webhook, left to polling), never published (``bridge.dedup.Verdict.LATE``). The cursor is
the lookback behind the watermark's time, or behind the end of what polling has read
(``polledUntilMs``) when that is earlier: webhooks can publish newer scans than polling has
reached. The cursor only moves
forward, and every transaction's scans were judged against a watermark no newer than the
checkpoint committed with them; so once a checkpoint with watermark W is committed, no scan
created before ``cursor(W)`` is ever published by the live bridge again. A repair reads the
live checkpoint *before* it reads Kafka (``bridge.audit.inventory`` then waits for every
transaction that had started by then to settle), so every scan older than that cursor is
either in what it read or never coming.

It keeps a further distance: the late sweep, which looks ``PASSENTRY_LATE_SWEEP_S`` behind
the cursor and would dead-letter as late a repaired scan it finds in PassEntry but not in its
window, and a margin (60 s by default, the window's own boundary margin) for PassEntry's
fuzzy ``createdAfter`` and for a live bridge configured with a slightly longer lookback.

A checkpoint moved by ``state reset`` (no watermark) makes the live bridge publish everything
from its new start again, so the horizon is that start. A source without a checkpoint may
still start anywhere: nothing is repaired for it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from bridge.config import PassEntrySettings
from bridge.kafka.checkpoint import Checkpoint
from bridge.uuid7 import int_millis

__all__ = ["LiveHorizon", "live_horizon", "source_horizon"]


@dataclass(frozen=True, slots=True)
class LiveHorizon:
    """Scans created before ``ms`` are never published by the live bridge from now on."""

    ms: int | None
    watermark: str | None
    why: str


def source_horizon(
    pe: PassEntrySettings, checkpoint: Checkpoint | None, margin_ms: int
) -> LiveHorizon:
    """The horizon of a live bridge run with the source's settings ``pe``."""
    lookback_ms = int(pe.lookback_s * 1000)
    sweep_ms = lookback_ms if pe.late_sweep_s is None else int(pe.late_sweep_s * 1000)
    return live_horizon(
        checkpoint, lookback_ms=lookback_ms, late_sweep_ms=sweep_ms, margin_ms=margin_ms
    )


def live_horizon(
    checkpoint: Checkpoint | None, *, lookback_ms: int, late_sweep_ms: int, margin_ms: int
) -> LiveHorizon:
    if checkpoint is None:
        return LiveHorizon(None, None, "the source has no checkpoint: nothing is repaired")
    if checkpoint.watermark is None:
        start = checkpoint.since_ms or 0
        return LiveHorizon(
            start - margin_ms, None, "the checkpoint was reset: the live bridge starts again there"
        )
    reference = int_millis(uuid.UUID(checkpoint.watermark).int)
    if checkpoint.polled_until_ms is not None:
        reference = min(reference, checkpoint.polled_until_ms)
    cursor = reference - lookback_ms
    return LiveHorizon(
        cursor - late_sweep_ms - margin_ms,
        checkpoint.watermark,
        "min(watermark, polled until) - lookback - late sweep - margin",
    )
