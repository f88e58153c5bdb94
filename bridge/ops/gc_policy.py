"""Cyclic garbage collection tuned for a process that streams records.

The collector runs whenever tracked objects allocated outnumber those freed by 700, and
every so often walks everything the process holds. A bridge holds a slice of scans at a
time (thousands of objects that live for one cycle) on top of what start-up imported (the
modules, pydantic's schemas: most of the heap, and never garbage). Measured on the cpu
benchmark's 30,000 scans (bench/README.md), collections took 0.10 CPU seconds with the
defaults, 0.07 with start-up frozen, 0 with the first threshold raised alone; with both,
none ran. Hot-path objects are not tracked at all (``gc=False`` structs), so what is left
is bounded by a slice, and reference counting frees it.
"""

from __future__ import annotations

import gc

__all__ = ["tune_for_streaming"]

# Allocations of tracked objects, net of frees, before a young collection; then how many
# young collections per middle one, and middle ones per full one.
THRESHOLDS = (50_000, 20, 100)


def tune_for_streaming() -> None:
    """Call once start-up is done: what exists now is left out of every later collection
    (``gc.freeze``), and the young generation is collected far less often."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
