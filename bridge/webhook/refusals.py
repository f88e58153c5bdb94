"""Refused webhook requests in the log without flooding it: the first of a burst at once,
then one line with a count at most every ``interval_s`` while they go on. The metric
``webhook_requests_total{outcome}`` counts every one; the log only says that it happens,
where from, and how often."""

from __future__ import annotations

import asyncio
import logging

__all__ = ["RefusalLog"]

log = logging.getLogger("bridge.webhook.receiver")


class RefusalLog:
    """Used from the receiver's event loop only."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self.interval_s = interval_s
        self._held = 0
        self._last: dict[str, str | None] = {}
        self._timer: asyncio.TimerHandle | None = None

    def refused(self, source_id: str, remote: str | None) -> None:
        if self._timer is None:
            self._say(1, source_id, remote)
        else:
            self._held += 1
            self._last = {"source_id": source_id, "remote": remote}

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _say(self, count: int, source_id: str | None, remote: str | None) -> None:
        if count == 1 and not self._timer:
            message = "webhook refused: bad or missing signature"
        else:
            message = (
                f"webhook requests refused: {count} with a bad or missing signature"
                f" in the last {self.interval_s:g}s"
            )
        # The last refusal's source and address stand for the burst.
        log.warning(message, extra={"refused": count, "source_id": source_id, "remote": remote})
        self._timer = asyncio.get_running_loop().call_later(self.interval_s, self._flush)

    def _flush(self) -> None:
        if not self._held:
            self._timer = None  # quiet for a whole interval: the next refusal is said at once
            return
        held, last = self._held, self._last
        self._held = 0
        self._say(held, last.get("source_id"), last.get("remote"))
