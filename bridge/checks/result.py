"""One row of ``passentry-bridge check``'s verdict."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CheckResult"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    # ok, but said as a warning (WARN): it works, and may fail you later.
    warning: bool = False
