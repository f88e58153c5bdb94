"""Query-string parameters the simulator's endpoints share."""

from __future__ import annotations

from typing import Any

__all__ = ["QueryError", "positive_int"]


class QueryError(ValueError):
    """A query parameter PassEntry would refuse (answered 422)."""


def positive_int(params: Any, name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise QueryError(f"{name} must be a positive integer")
    return value
