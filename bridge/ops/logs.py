"""Logging: JSON lines when stderr is not a terminal (collectors parse them), text on one;
a filter that holds back a line repeated within a minute, counting what it held; and the
source a thread works for, which every line logged on that thread carries as
``source_id``: many sources share a process, and a line that does not say which one it is
about is of little use to an operator."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["RepeatFilter", "Repeats", "carry_source", "setup_logging", "working_for"]

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


# Lines held back as repeats are let through again after this long, with their count.
_REPEAT_INTERVAL_S = 60.0


class Repeats:
    """Lets the first of each distinct message through, then one per interval with the
    number held back meanwhile."""

    def __init__(self, interval_s: float = _REPEAT_INTERVAL_S, *, max_keys: int = 1000) -> None:
        self._interval = interval_s
        self._max_keys = max_keys
        self._lock = threading.Lock()
        # key -> (when it was last let through, how many were held back since)
        self._seen: dict[tuple[Any, ...], tuple[float, int]] = {}

    def admit(self, key: tuple[Any, ...], now: float | None = None) -> int | None:
        """None: hold this one back. Otherwise let it through; the number is how many were
        held back since the last one that was."""
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last[0] < self._interval:
                self._seen[key] = (last[0], last[1] + 1)
                return None
            if last is None and len(self._seen) >= self._max_keys:
                # Forget what has been quiet longest; a flood of distinct texts stays bounded.
                oldest = sorted(self._seen, key=lambda k: self._seen[k][0])
                for old in oldest[: self._max_keys // 2]:
                    del self._seen[old]
            self._seen[key] = (now, 0)
            return last[1] if last is not None else 0


class RepeatFilter(logging.Filter):
    """Holds back a line ``key`` says was logged within the interval; the next one let
    through carries ``repeated``, the count held back."""

    def __init__(self, key: Callable[[logging.LogRecord], tuple[Any, ...]]) -> None:
        super().__init__()
        self.repeats = Repeats()
        self._key = key

    def filter(self, record: logging.LogRecord) -> bool:
        held = self.repeats.admit(self._key(record))
        if held is None:
            return False
        if held:
            record.repeated = held
        return True


_thread = threading.local()


@contextmanager
def working_for(source_id: str) -> Iterator[None]:
    """Lines logged on this thread meanwhile carry ``source_id``."""
    before = getattr(_thread, "source_id", None)
    _thread.source_id = source_id
    try:
        yield
    finally:
        _thread.source_id = before


def carry_source() -> Callable[[], None]:
    """An initializer for a pool's threads: they work for this thread's source too."""
    source_id = getattr(_thread, "source_id", None)

    def init() -> None:
        _thread.source_id = source_id

    return init


class _SourceTag(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        source_id = getattr(_thread, "source_id", None)
        if source_id is not None and "source_id" not in record.__dict__:
            record.source_id = source_id
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD)
        line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} "
        line += f"{record.levelname:<7} {record.getMessage()}"
        if extras:
            line += f"  [{extras}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(fmt: str = "auto", level: str = "INFO") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(_SourceTag())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO; that is what our metrics are for.
    logging.getLogger("httpx").setLevel(logging.WARNING)
