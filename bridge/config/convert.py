"""From what the user wrote to a group of settings.

A group is a msgspec struct (:class:`SettingsGroup`). Its limits are ``Meta`` constraints,
which :func:`from_values` enforces while it converts the values a YAML file or the
environment gives (text, numbers, mappings), field by field, so that every field's problem
is reported at once; checks that span fields, or normalise one, are its ``__post_init__``.
Problems come back as :class:`SettingsError`, in words a user reads, for
:mod:`bridge.config.loading` to name as the user wrote each setting.

msgspec already decodes PassEntry's pages. pydantic and pydantic-settings, which did this
before, cost every command about 0.13 CPU s of its start (bench/README.md).
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeVar

import msgspec
from msgspec import Struct

__all__ = [
    "MASK",
    "FieldError",
    "Problem",
    "Secret",
    "SettingsError",
    "SettingsGroup",
    "from_values",
    "settings_fields",
]

_G = TypeVar("_G", bound="SettingsGroup")

# What a secret prints as, wherever it is printed.
MASK = "**********"


class Secret:
    """A credential as a setting holds it. ``repr`` and ``str`` show only the mask, so it
    never reaches a message or a log line; :meth:`get_secret_value` gives the text."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class FieldError(ValueError):
    """Raised by a group's ``__post_init__`` check that is about one field: messages name
    that setting."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class SettingsGroup(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A group of settings. Its environment variables are its prefix and a field's name in
    capitals."""

    prefix: ClassVar[str]


class Problem(Struct, frozen=True):
    """One thing wrong with a group's values: where (field names, outermost first; empty
    for the group as a whole), and what. ``unknown``: the name is not a setting at all."""

    loc: tuple[str, ...]
    message: str
    unknown: bool = False


class SettingsError(ValueError):
    """Values that do not make a group; :mod:`bridge.config.loading` names each problem as
    the user wrote the setting."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{'.'.join(p.loc) or '-'}: {p.message}" for p in problems))
        self.problems = problems


@cache
def settings_fields(cls: type[Struct]) -> Mapping[str, Any]:
    """A struct's fields by name, each with its type (``Annotated`` constraints kept).
    Cached: msgspec resolves the annotations anew on every call, about 1 ms a group."""
    return MappingProxyType({f.name: f.type for f in msgspec.structs.fields(cls)})


def from_values(cls: type[_G], values: Mapping[str, Any]) -> _G:
    """``values`` (as a YAML file or the environment gives them: text, numbers, mappings)
    checked and converted into ``cls``. Raises :class:`SettingsError` with every field's
    problem, or the first check across fields that fails."""
    types = settings_fields(cls)
    problems: list[Problem] = []
    converted: dict[str, Any] = {}
    for name, raw in values.items():
        kind = types.get(name)
        if kind is None:
            problems.append(Problem((name,), "not a setting", unknown=True))
            continue
        if kind is bool and isinstance(raw, str):
            raw = _BOOL_WORDS.get(raw.strip().lower(), raw)
        try:
            converted[name] = msgspec.convert(raw, kind, strict=False, dec_hook=_decode)
        except msgspec.ValidationError as exc:
            problems.append(_converting(name, kind, str(exc)))
    if problems:
        raise SettingsError(problems)
    try:
        return cls(**converted)
    except FieldError as exc:
        raise SettingsError([Problem((exc.name,), str(exc))]) from None
    except ValueError as exc:
        raise SettingsError([Problem((), str(exc))]) from None


# What a switch may be set to besides true, false, 1 and 0 (which msgspec reads itself).
_BOOL_WORDS = {"yes": True, "y": True, "on": True, "t": True}
_BOOL_WORDS |= {"no": False, "n": False, "off": False, "f": False}


def _decode(kind: type, value: Any) -> Any:
    """The types msgspec does not know: paths and secrets, given as text."""
    if isinstance(value, kind):
        return value
    if isinstance(value, str) and kind in (Path, Secret):
        return kind(value)
    raise NotImplementedError


# msgspec's "Expected `int`, got `str` - at `$.status`": the wording, then where.
_AT = re.compile(r"^(?P<text>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")
_NOUNS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "text",
    "object": "a mapping",
    "array": "a list",
    "Path": "a path",
    "Secret": "text",
}


def _converting(name: str, kind: Any, error: str) -> Problem:
    """msgspec's message about field ``name`` as a :class:`Problem`, in plain words."""
    found = _AT.match(error)
    text = found.group("text") if found else error
    path = (found.group("path") or "") if found else ""
    loc = (name, *[part for part in path.split(".") if part])
    unknown = _UNKNOWN.match(text)
    if unknown is not None:
        return Problem((*loc, unknown.group("name")), "not a setting", unknown=True)
    text = re.sub(r"`([^`]+)`", _noun, text)
    text = re.sub(r", got (an integer|a number|true or false|text|a mapping|a list)$", "", text)
    choices = _choices(kind, loc[1:])
    if text.startswith("Invalid enum value") and choices:
        text += f"; expected one of {', '.join(choices)}"
    return Problem(loc, text[:1].lower() + text[1:])


def _noun(found: re.Match[str]) -> str:
    """msgspec's name of a type (```float | null```) in words (``a number``)."""
    kinds = [k for k in found.group(1).split(" | ") if k != "null"]
    return " or ".join(_NOUNS.get(kind, kind) for kind in kinds)


def _choices(kind: Any, inner: tuple[str, ...]) -> list[str]:
    """The values a ``Literal`` field allows (inside nested structs, by ``inner``)."""
    for part in inner:
        structs = [t for t in typing.get_args(kind) or (kind,) if isinstance(t, type)]
        if not structs or not issubclass(structs[0], Struct):
            return []
        kind = settings_fields(structs[0]).get(part)
    options = [kind] if typing.get_origin(kind) is Literal else typing.get_args(kind)
    return [
        str(value)
        for option in options
        if typing.get_origin(option) is Literal
        for value in typing.get_args(option)
    ]
