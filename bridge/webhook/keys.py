"""Each source's webhook secrets as HMAC keys, picked up again when their files change.

A secret given as a file (``PASSENTRY_WEBHOOK_SECRET_FILE``, as the chart mounts it from a
Kubernetes Secret) is re-read when the file changes, so a rotation needs no restart: at most
once a second a request stats the files (inode, size, modification time; Kubernetes
replaces a Secret's files by swapping a symlink, which changes all three), and only a change
reads them. A file that became unreadable, empty or too short is logged and the keys in use
stay. A secret given as a value is fixed for the life of the process.

Two sources may not share a secret: each PassEntry subscription has its own, and a shared
one would let a body signed for one source in at another.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bridge.config import SourceConfig
from bridge.errors import ConfigError

__all__ = ["SigningKeys", "signing_keys"]

log = logging.getLogger(__name__)

# How often the files are looked at; a rotation is picked up within this (plus the time
# the kubelet takes to update the mounted Secret, a minute or so).
CHECK_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class _Stamp:
    inode: int
    size: int
    mtime_ns: int


class SigningKeys:
    """One source's accepted keys: the current secret, and the previous one in a rotation."""

    def __init__(
        self,
        source_id: str,
        load: Callable[[], list[str]],
        files: Sequence[Path] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``load`` returns the secrets (raising ConfigError for a bad one); ``files`` are the
        ones it reads. Raises what ``load`` raises: a bad secret stops start-up."""
        self.source_id = source_id
        self._load = load
        self._files = list(files)
        self._clock = clock
        self._stamps = self._stat()
        self._keys = [s.encode() for s in load()]
        self._next_check = clock() + CHECK_EVERY_S

    def current(self) -> list[bytes]:
        now = self._clock()
        if self._files and now >= self._next_check:
            self._next_check = now + CHECK_EVERY_S
            stamps = self._stat()
            if stamps != self._stamps:
                self._stamps = stamps
                self._reload()
        return self._keys

    def _reload(self) -> None:
        try:
            keys = [s.encode() for s in self._load()]
        except ConfigError as exc:
            log.error(
                "webhook secret changed but cannot be used; the previous one stays",
                extra={"source_id": self.source_id, "error": str(exc)},
            )
            return
        if keys != self._keys:
            self._keys = keys
            log.info(
                "webhook secret reloaded", extra={"source_id": self.source_id, "keys": len(keys)}
            )

    def _stat(self) -> list[_Stamp | None]:
        stamps: list[_Stamp | None] = []
        for path in self._files:
            try:
                st = os.stat(path)
            except OSError:
                stamps.append(None)
                continue
            stamps.append(_Stamp(st.st_ino, st.st_size, st.st_mtime_ns))
        return stamps


def signing_keys(sources: Sequence[SourceConfig]) -> dict[str, SigningKeys]:
    """The keys of each source that takes webhooks. Raises ConfigError naming the source
    for a bad secret, or for two sources sharing one."""
    found: dict[str, SigningKeys] = {}
    owner: dict[bytes, str] = {}
    for source in sources:
        pe = source.passentry
        if not pe.webhooks_enabled:
            continue
        files = [f for f in (pe.webhook_secret_file, pe.webhook_previous_secret_file) if f]
        try:
            keys = SigningKeys(source.id, pe.webhook_secrets, files)
        except ConfigError as exc:
            raise ConfigError(f"source {source.id}: {exc}") from None
        for key in keys.current():
            other = owner.setdefault(key, source.id)
            if other != source.id:
                raise ConfigError(
                    f"sources {other} and {source.id} have the same webhook secret, so a"
                    " body signed for one would be accepted at the other: give each source"
                    " the secret of its own PassEntry subscription (webhook_secret_file in"
                    " its sources entry)"
                )
        found[source.id] = keys
    return found
