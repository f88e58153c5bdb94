"""Progress of a long command (backfill, audit): a bar on a terminal, log lines otherwise.

On a terminal (stderr is a TTY) a tqdm bar shows done/total, the rate and the ETA. In a pod
stderr is a pipe and every line is a JSON log record, so a bar would be noise: there the same
figures go out as one log line every ``every_s`` seconds, and one at the end.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import IO, Protocol

__all__ = ["LogProgress", "Progress", "ProgressFactory", "TerminalProgress", "progress_factory"]

log = logging.getLogger("bridge.progress")


class Progress(Protocol):
    def advance(self, n: int) -> None: ...

    def set_total(self, total: int) -> None: ...

    def finish(self) -> None:
        """The work is done: the count reaches its total. A total known up front may be an
        estimate (offsets to read count transaction markers, records do not), so a task
        that completes says so rather than stopping short of 100 %."""

    def close(self) -> None: ...


# (label, unit, total or None when unknown) -> a Progress
ProgressFactory = Callable[[str, str, int | None], Progress]


class TerminalProgress:
    def __init__(self, label: str, unit: str, total: int | None, stream: IO[str]) -> None:
        from tqdm import tqdm  # only on a terminal: a pod never imports it

        # Whole counts ("2/11 buckets"): unit_scale would print 2.00/11.0 for small ones.
        self._bar = tqdm(
            total=total, desc=label, unit=f" {unit}", unit_scale=False, file=stream,
            leave=True, dynamic_ncols=True, smoothing=0.1,
        )  # fmt: skip

    def advance(self, n: int) -> None:
        self._bar.update(n)

    def set_total(self, total: int) -> None:
        self._bar.total = total
        self._bar.refresh()

    def finish(self) -> None:
        total = self._bar.total
        if total is None:
            self._bar.total = self._bar.n
        elif self._bar.n != total:
            self._bar.n = total
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


class LogProgress:
    """One log line every ``every_s`` seconds while work goes on, and one at the end."""

    def __init__(
        self, label: str, unit: str, total: int | None, *, every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._label, self._unit, self.total = label, unit, total
        self._every = every_s
        self._clock = clock
        self._started = self._last = clock()
        self.done = 0

    def advance(self, n: int) -> None:
        self.done += n
        if self._clock() - self._last >= self._every:
            self._emit("progress")

    def set_total(self, total: int) -> None:
        self.total = total

    def finish(self) -> None:
        if self.total is not None:
            self.done = self.total
        else:
            self.total = self.done

    def close(self) -> None:
        self._emit("done")

    def _emit(self, what: str) -> None:
        self._last = now = self._clock()
        elapsed = max(now - self._started, 1e-9)
        rate = self.done / elapsed
        extra: dict[str, object] = {
            "task": self._label,
            "unit": self._unit,
            "done": self.done,
            "rate_per_s": round(rate, 1),
            "elapsed_s": round(elapsed, 1),
        }
        if self.total is not None:
            extra["total"] = self.total
            left = max(self.total - self.done, 0)
            extra["eta_s"] = round(left / rate, 1) if rate > 0 else None
        log.info("%s %s", self._label, what, extra=extra)


def progress_factory(stream: IO[str] | None = None, *, every_s: float = 10.0) -> ProgressFactory:
    """Bars when ``stream`` (default stderr) is a terminal, log lines otherwise."""
    out = stream if stream is not None else sys.stderr
    tty = out.isatty()

    def make(label: str, unit: str, total: int | None) -> Progress:
        if tty:
            return TerminalProgress(label, unit, total, out)
        return LogProgress(label, unit, total, every_s=every_s)

    return make
