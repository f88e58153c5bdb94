"""Which topic a scan goes to (the scans topic, or a template over status and scan type),
and which partition a source's own records go to."""

from __future__ import annotations

import re
import zlib

__all__ = ["Router", "stable_partition"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def stable_partition(key: str, partitions: int) -> int:
    """A partition for ``key`` that every replica computes alike, whatever the client:
    a source's inbox partition, and its partition of the coordination topic."""
    return zlib.crc32(key.encode()) % partitions


class Router:
    def __init__(self, default_topic: str, template: str | None) -> None:
        self._default = default_topic
        self._template = template
        self._cache: dict[tuple[str, str], str] = {}

    def topic(self, status: str, scan_type: str) -> str:
        if self._template is None:
            return self._default
        key = (status, scan_type)
        topic = self._cache.get(key)
        if topic is None:
            # Values come from PassEntry; keep the topic name legal whatever they hold.
            topic = self._template.format(
                status=_UNSAFE.sub("_", status)[:50] or "unknown",
                scan_type=_UNSAFE.sub("_", scan_type)[:50] or "unknown",
            )
            if len(self._cache) < 1000:
                self._cache[key] = topic
        return topic
