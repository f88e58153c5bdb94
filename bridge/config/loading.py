"""Reading the config: the environment, a YAML file and CLI overrides, merged and checked.

An environment variable wins over the YAML file (a secret injected as env overrides a
ConfigMap), and a CLI override over both. A source of the file's ``sources:`` list is its
own settings over the shared ones. A bad value stops start-up naming the setting the way
the user wrote it: its variable, or its place in the file.
"""

from __future__ import annotations

import logging
import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from bridge.config.convert import (
    Problem,
    SettingsError,
    SettingsGroup,
    from_values,
    settings_fields,
)
from bridge.config.models import (
    SOURCE_ID_PATTERN,
    TOPIC_PATTERN,
    BridgeSettings,
    Config,
    KafkaSettings,
    PassEntrySettings,
    RegistrySettings,
    SourceConfig,
)
from bridge.errors import ConfigError

__all__ = ["load_config", "load_file", "load_registry_settings"]

log = logging.getLogger(__name__)

_G = TypeVar("_G", bound=SettingsGroup)

_GROUPS: dict[str, type[SettingsGroup]] = {
    "passentry": PassEntrySettings,
    "kafka": KafkaSettings,
    "bridge": BridgeSettings,
    "schema_registry": RegistrySettings,
}


def load_config(path: Path | None = None, **overrides: dict[str, Any]) -> Config:
    """Build the config from the environment, a YAML file and CLI overrides.

    CLI overrides (``overrides["bridge"] = {...}``) beat the environment, which beats the
    file. Raises :class:`ConfigError` naming the first bad setting as the user wrote it: its
    variable (``KAFKA_LINGER_MS``) or its place in the file (``kafka.linger_ms``,
    ``sources[eu].api_token``).
    """
    _check_env_names()
    return _load(path, overrides)


def load_file(path: Path) -> Config:
    """The config a YAML file gives alone, without the environment (``config lint``)."""
    return _load(path, {}, with_env=False)


def _load(
    path: Path | None, overrides: dict[str, dict[str, Any]], *, with_env: bool = True
) -> Config:
    sections = _read_yaml(path) if path is not None else {}
    values = {
        name: _values(name, sections.get(name, {}), overrides.get(name), with_env=with_env)
        for name in _GROUPS
    }

    def group(cls: type[_G], name: str) -> _G:
        return _group(cls, name, values[name], sections.get(name, {}), with_env=with_env)

    passentry, bridge = group(PassEntrySettings, "passentry"), group(BridgeSettings, "bridge")
    named = "source_id" in values["bridge"]
    return Config(
        passentry=passentry,
        kafka=group(KafkaSettings, "kafka"),
        bridge=bridge,
        schema_registry=group(RegistrySettings, "schema_registry"),
        sources=_sources(sections.get(_SOURCES), passentry, bridge, path, named=named),
    )


_SOURCES = "sources"
_SOURCE_ID = re.compile(SOURCE_ID_PATTERN)
_TOPIC = re.compile(TOPIC_PATTERN)


def _sources(
    listed: Any, base: PassEntrySettings, bridge: BridgeSettings, path: Path | None, *, named: bool
) -> tuple[SourceConfig, ...]:
    """The ``sources:`` list, each entry over the PassEntry settings of the environment and
    the file's ``passentry:`` section; without one, the single source the environment
    names. ``named``: the user set the bridge's source id."""
    if listed is None:
        return (SourceConfig(bridge.source_id, base, bridge.scans_topic, bridge.topic_template),)
    if named:
        raise ConfigError(
            f"--config: {path} lists sources, and BRIDGE_SOURCE_ID names one too; use one"
        )
    if not isinstance(listed, list) or not listed:
        raise ConfigError(f"--config: 'sources' in {path} must be a non-empty list")
    out = [_source(n, entry, base, bridge) for n, entry in enumerate(listed)]
    ids = [s.id for s in out]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ConfigError(f"--config: source id(s) {twice} listed more than once")
    return tuple(out)


def _source(n: int, entry: Any, base: PassEntrySettings, bridge: BridgeSettings) -> SourceConfig:
    if not isinstance(entry, dict):
        raise ConfigError(f"--config: sources[{n}] must be a mapping")
    fields = dict(entry)
    source_id = fields.pop("id", None)
    if not isinstance(source_id, str) or not _SOURCE_ID.match(source_id):
        raise ConfigError(f"--config: sources[{n}].id must be 1-100 of A-Z a-z 0-9 . _ -")
    where = f"sources[{source_id}]"
    topic = fields.pop("topic", bridge.scans_topic)
    if not isinstance(topic, str) or not _TOPIC.match(topic):
        raise ConfigError(f"--config: {where}.topic is not a valid topic name")
    template = fields.pop("topic_template", bridge.topic_template)
    shared = msgspec.structs.asdict(base)
    if {"api_token", "api_token_file"} & set(fields):
        # A source's own token replaces the shared one: not both at once.
        shared.pop("api_token", None)
        shared.pop("api_token_file", None)
    try:
        if template is not None:
            template = from_values(BridgeSettings, {"topic_template": template}).topic_template
        passentry = from_values(PassEntrySettings, {**shared, **fields})
    except SettingsError as exc:
        known = [*settings_fields(PassEntrySettings), *_SOURCE_KEYS]
        raise ConfigError(_describe_yaml(exc, where, known)) from None
    return SourceConfig(source_id, passentry, topic, template, where, frozenset(fields))


# What an entry of ``sources:`` takes besides the PassEntry settings.
_SOURCE_KEYS = ("id", "topic", "topic_template")


def load_registry_settings(path: Path | None = None) -> RegistrySettings:
    """Only ``SCHEMA_REGISTRY_*`` (over the file's ``schema_registry`` section), for the
    schema commands, which need nothing else."""
    sections = _read_yaml(path) if path is not None else {}
    section = sections.get("schema_registry", {})
    return _group(RegistrySettings, "schema_registry", _values("schema_registry", section), section)


def _values(
    name: str,
    section: dict[str, Any],
    override: dict[str, Any] | None = None,
    *,
    with_env: bool = True,
) -> dict[str, Any]:
    """What the user gave group ``name``: the file's section, under its environment
    variables, under the overrides."""
    values = dict(section)
    if with_env:
        values = _merged(values, _environment(name))
    return {**values, **(override or {})}


def _group(
    cls: type[_G],
    name: str,
    values: dict[str, Any],
    section: dict[str, Any],
    *,
    with_env: bool = True,
) -> _G:
    """Group ``name`` made of ``values``; a problem named as the user wrote the setting
    (``section``: what the file gave it)."""
    try:
        return from_values(cls, values)
    except SettingsError as exc:
        raise ConfigError(_describe_group(exc, name, section, with_env=with_env)) from None


def _environment(group: str) -> dict[str, Any]:
    """The group's variables, by field, any case (``PASSENTRY_LOOKBACK_S``). A mapping's
    is JSON (``KAFKA_PROPERTIES``), and nested fields may be set one by one
    (``PASSENTRY_FILTERS__STATUS``), over the JSON."""
    cls = _GROUPS[group]
    prefix = cls.prefix
    fields = settings_fields(cls)
    found: dict[str, Any] = {}
    nested: dict[str, Any] = {}
    for variable, text in os.environ.items():
        path = _below(prefix, variable)
        if path is None or path[0] not in fields:
            continue  # _check_env_names has refused or logged it
        if len(path) > 1:
            _set(nested, path, text)
        elif _is_mapping(fields[path[0]]):
            found[path[0]] = _json(text, variable, path[0])
        else:
            found[path[0]] = text
    return _merged(found, nested)


def _below(prefix: str, variable: str) -> list[str] | None:
    """``variable``'s path under ``prefix`` (``PASSENTRY_FILTERS__STATUS``: filters, status),
    in any case; None when it is not under it. Reading and checking the names both ask this,
    so that a variable the settings read is one the check knows."""
    upper = variable.upper()
    if not upper.startswith(prefix):
        return None
    return upper[len(prefix) :].lower().split("__")


def _is_mapping(kind: Any) -> bool:
    options = typing.get_args(kind) if typing.get_origin(kind) is not None else (kind,)
    for option in (typing.get_origin(kind), *options):
        if option is dict or (isinstance(option, type) and issubclass(option, msgspec.Struct)):
            return True
    return False


# What a mapping given whole looks like, for the message when it is not JSON.
_JSON_EXAMPLES = {"properties": '{"client.rack": "eu-1a"}', "filters": '{"status": "failed"}'}


def _json(text: str, variable: str, field: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        example = _JSON_EXAMPLES.get(field, "{}")
        raise ConfigError(
            f"invalid setting {variable}: not valid JSON; give a JSON object, e.g. {example}"
        ) from None


def _set(tree: dict[str, Any], path: list[str], value: str) -> None:
    for part in path[:-1]:
        below = tree.get(part)
        if not isinstance(below, dict):
            # A deeper variable over a plain one (A__B__C beside A__B): conversion then
            # says what A__B should have been.
            below = tree[part] = {}
        tree = below
    tree[path[-1]] = value


def _merged(under: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on ``under``, mappings in both merged key by key."""
    out = dict(under)
    for key, value in over.items():
        below = out.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            out[key] = _merged(below, value)
        else:
            out[key] = value
    return out


def _check_env_names() -> None:
    """A misspelt ``BRIDGE_*`` or ``PASSENTRY_*`` variable would be silently ignored;
    refuse it instead, in any case, as the settings are read in any case. ``KAFKA_*`` is
    shared with other tools (the JVM scripts read KAFKA_HEAP_OPTS, for one), so an unknown
    name there is only logged."""
    for cls in _GROUPS.values():
        prefix = cls.prefix
        fields = settings_fields(cls)
        for name in os.environ:
            path = _below(prefix, name)
            if path is None or path[0] in fields:
                continue
            import difflib  # only to word the error

            known = [prefix + field.upper() for field in fields]
            hint = difflib.get_close_matches(prefix + path[0].upper(), known, n=1)
            message = f"{name}: not a setting" + (f"; did you mean {hint[0]}?" if hint else "")
            if prefix == "KAFKA_":
                log.warning("ignoring unknown environment variable %s", name)
            else:
                raise ConfigError("invalid setting " + message)


def _read_yaml(path: Path) -> dict[str, Any]:
    # Imported here: a bridge configured by its environment alone never needs a YAML parser.
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"--config: {path} is not valid YAML{where}: {problem}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"--config: {path} must be a mapping with sections {sorted(_GROUPS)}")
    unknown = set(loaded) - set(_GROUPS) - {_SOURCES}
    if unknown:
        raise ConfigError(
            f"--config: unknown section(s) {sorted(unknown)} in {path}; "
            f"expected {sorted([*_GROUPS, _SOURCES])}"
        )
    out: dict[str, Any] = {}
    for name, section in loaded.items():
        if name == _SOURCES:
            out[name] = section
            continue
        if section is None:
            section = {}
        if not isinstance(section, dict):
            raise ConfigError(f"--config: section {name!r} in {path} must be a mapping")
        out[name] = section
    return out


def _describe_group(
    exc: SettingsError, group: str, section: dict[str, Any], *, with_env: bool = True
) -> str:
    """Each problem named as the user set it: the environment variable
    (``PASSENTRY_LOOKBACK_S``) when one is set or nothing else is, else the key in the YAML
    file (``passentry.lookback_s``). A key that is not a setting gets the nearest one."""
    prefix = _GROUPS[group].prefix
    problems = []
    for problem in exc.problems:
        loc = list(problem.loc)
        if not loc:
            problems.append(f"{prefix.rstrip('_')}: {problem.message}")
            continue
        variable = prefix + "__".join(loc).upper()
        top = prefix + loc[0].upper()
        from_env = with_env and (variable in os.environ or top in os.environ)
        if from_env or not _in_section(section, loc):
            name = variable
            known = [prefix + "__".join(p).upper() for p in _field_paths(_GROUPS[group], loc)]
        else:
            name = f"{group}." + ".".join(loc)
            known = [f"{group}." + ".".join(p) for p in _field_paths(_GROUPS[group], loc)]
        problems.append(_problem(name, problem, known))
    return "invalid setting " + "; ".join(problems)


def _describe_yaml(exc: SettingsError, where: str, known_top: list[str]) -> str:
    """``sources[eu].lookback_s: ...``: a problem of an entry of the ``sources:`` list."""
    problems = []
    for problem in exc.problems:
        loc = list(problem.loc)
        name = f"{where}." + ".".join(loc) if loc else where
        if len(loc) == 1:
            known = [f"{where}.{k}" for k in known_top]
        else:
            known = [f"{where}." + ".".join(p) for p in _field_paths(PassEntrySettings, loc)]
        problems.append(_problem(name, problem, known))
    return "invalid setting " + "; ".join(problems)


def _problem(name: str, problem: Problem, known: list[str]) -> str:
    if not problem.unknown:
        return f"{name}: {problem.message}"
    import difflib  # only to word the error

    hint = difflib.get_close_matches(name, known, n=1)
    return f"{name}: not a setting" + (f"; did you mean {hint[0]}?" if hint else "")


def _in_section(section: dict[str, Any], loc: list[str]) -> bool:
    """Whether the YAML section sets the value at ``loc``."""
    here: Any = section
    for part in loc:
        if not isinstance(here, dict) or part not in here:
            return False
        here = here[part]
    return True


def _field_paths(cls: type[msgspec.Struct], loc: list[str]) -> list[list[str]]:
    """The settings beside the one at ``loc`` (its siblings in the struct), as paths."""
    struct = cls
    for part in loc[:-1]:
        inner = settings_fields(struct).get(part)
        if not (isinstance(inner, type) and issubclass(inner, msgspec.Struct)):
            return []
        struct = inner
    return [[*loc[:-1], name] for name in settings_fields(struct)]
