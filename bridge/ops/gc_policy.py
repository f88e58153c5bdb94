"""Cyclic garbage collection for a process that streams records.

What start-up allocated (the modules and their classes: most of the heap, and never
garbage) is frozen, so that no collection walks it again. The collector's thresholds stay
the defaults: the hot path's objects are mostly untracked (``gc=False`` structs), and what
is left costs the young collections 0.4 us a scan (bench/stages.py, 50,000 scans), under
3 % of the publishing thread.

Raising the first threshold to 50,000 (with 20 and 100 for the older generations) made that
0, but the cycles the HTTP clients and the status server leave behind then wait in the old
generations for hundreds of millions of allocations: in the ``memory`` benchmark (200,000
scans) the RSS grew by 15.7 and 25.5 MiB in two runs, to a 187 MiB peak, against -1.5 MiB
and a 108 MiB peak with the defaults, for no CPU the benchmark could tell apart (8.67 and
8.35 CPU s). See bench/README.md.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused", "tune_for_streaming"]


@contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection inside, and what was made inside frozen after: for loading a
    command's modules. Each collection during an import walks a heap that only grows
    (modules, classes, compiled patterns), and none of it is garbage; the collections cost
    about 8 % of the ``run`` command's import. Left unfrozen, all of it would be the young
    generation of the first collection after, which walked it in 23 ms to find nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def tune_for_streaming() -> None:
    """Call once start-up is done: what exists now is left out of every later collection."""
    gc.freeze()
