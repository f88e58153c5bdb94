"""The compatibility gate for the schemas in ``schemas/``: every new version must stay
compatible with the one before it. (That released versions never change is checked against
``schemas/schemas.lock`` by ``bridge.cli.schema``.)

Compatibility is decided twice, by two different means, and both must agree:

- a structural check that applies the Avro specification's schema-resolution rules and says
  in words what breaks (a field added without a default, an enum symbol removed, ...);
- a data round trip: representative records (every union branch, every enum symbol, nulls
  and non-nulls) are written with the writer schema and read back by fastavro with the
  reader schema, which is what a consumer actually does.

Modes follow the Confluent Schema Registry's meaning: BACKWARD means the new schema reads
data written with the old one (upgrade consumers first), FORWARD means the old schema reads
data written with the new one (upgrade producers first), FULL means both.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import fastavro
from fastavro.schema import expand_schema

__all__ = [
    "Mode",
    "check_pair",
    "check_versions",
    "describe_type",
    "field_diff",
    "load_versions",
    "resolution_problems",
    "round_trip_problems",
    "walk_fields",
]

Mode = Literal["BACKWARD", "FORWARD", "FULL"]
_VERSION_FILE = re.compile(r"^v(\d+)\.avsc$")
# Writer type -> reader types it may be read as, per the spec's "promotion" rules.
_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


def load_versions(folder: Path) -> dict[int, dict[str, Any]]:
    """The ``v<N>.avsc`` files of one schema folder, by version number."""
    found: dict[int, dict[str, Any]] = {}
    for path in folder.iterdir():
        match = _VERSION_FILE.match(path.name)
        if match:
            found[int(match.group(1))] = json.loads(path.read_text(encoding="utf-8"))
    return dict(sorted(found.items()))


# --- structural check -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Roles:
    """What to call the writer and reader in messages: "old"/"new" reads better than
    "writer"/"reader" once the direction is known."""

    writer: str = "writer"
    reader: str = "reader"


def resolution_problems(
    writer: dict[str, Any], reader: dict[str, Any], roles: tuple[str, str] = ("writer", "reader")
) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader``; empty if it can.
    ``roles`` names the two schemas in the messages, e.g. ``("old", "new")``."""
    problems: list[str] = []
    _resolve(_expand(writer), _expand(reader), "", problems, _Roles(*roles), set())
    return problems


def _expand(schema: Any) -> Any:
    # Named types referenced by name are inlined with their full names, so every node can
    # be judged on its own.
    return expand_schema(schema)


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema
    return str(schema["type"])


def describe_type(schema: Any) -> str:
    """A short human form of a (expanded) type: ``[null, long (timestamp-millis)]``."""
    kind = _kind(schema)
    if kind == "union":
        return "[" + ", ".join(describe_type(branch) for branch in schema) + "]"
    if kind == "enum":
        return f"enum {_short(schema['name'])}{{{','.join(schema['symbols'])}}}"
    if kind in ("record", "fixed"):
        return f"{kind} {_short(schema['name'])}"
    if kind in ("array", "map"):
        inner = schema["items"] if kind == "array" else schema["values"]
        return f"{kind}<{describe_type(inner)}>"
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    return f"{kind} ({logical})" if logical else kind


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _matches(writer: Any, reader: Any) -> bool:
    """Whether a union branch is a candidate for the other side, by the spec's matching rule
    (same kind and name, or a promotion), before looking inside it."""
    w, r = _kind(writer), _kind(reader)
    if w in ("record", "enum", "fixed"):
        return w == r and _short(writer["name"]) == _short(reader["name"])
    return w == r or r in _PROMOTIONS.get(w, set())


def _resolve(
    writer: Any, reader: Any, path: str, out: list[str], roles: _Roles, seen: set[Any]
) -> None:
    where = path or "(top level)"
    w, r = _kind(writer), _kind(reader)
    if w == "union":
        # Every branch the writer may use must be readable.
        for branch in writer:
            target = reader
            if r == "union":
                target = next((b for b in reader if _matches(branch, b)), None)
                if target is None:
                    out.append(
                        f"{where}: the {roles.writer} union branch {describe_type(branch)} has no"
                        f" matching branch in the {roles.reader} {describe_type(reader)}"
                    )
                    continue
            _resolve(branch, target, path, out, roles, seen)
        return
    if r == "union":
        target = next((b for b in reader if _matches(writer, b)), None)
        if target is None:
            out.append(
                f"{where}: {roles.writer} type {describe_type(writer)} cannot be read as"
                f" {roles.reader} type {describe_type(reader)}: no branch matches"
            )
            return
        _resolve(writer, target, path, out, roles, seen)
        return
    if not _matches(writer, reader):
        out.append(
            f"{where}: type changed incompatibly: {roles.writer} type {describe_type(writer)}"
            f" cannot be read as {roles.reader} type {describe_type(reader)}"
        )
        return
    _logical(writer, reader, where, out)
    if w == "record":
        _records(writer, reader, path, out, roles, seen)
    elif w == "enum":
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing and "default" not in reader:
            out.append(
                f"{where}: enum symbol(s) {missing} of the {roles.writer} schema are missing"
                f" from the {roles.reader} enum {_short(reader['name'])}, which has no"
                " default: data carrying them cannot be read. Keep the symbols, or give the"
                " enum a default"
            )
    elif w == "fixed" and writer["size"] != reader["size"]:
        out.append(f"{where}: fixed size changed from {writer['size']} to {reader['size']}")
    elif w == "array":
        _resolve(writer["items"], reader["items"], f"{path}[]", out, roles, seen)
    elif w == "map":
        _resolve(writer["values"], reader["values"], f"{path}{{}}", out, roles, seen)


def _logical(writer: Any, reader: Any, where: str, out: list[str]) -> None:
    # Avro resolution ignores logical types, but a change (millis to micros, say) keeps the
    # bytes readable while changing what they mean: that is a break for consumers.
    lw = writer.get("logicalType") if isinstance(writer, dict) else None
    lr = reader.get("logicalType") if isinstance(reader, dict) else None
    if lw != lr and _kind(writer) == _kind(reader):
        out.append(f"{where}: logicalType changed from {lw} to {lr}; the values change meaning")


def _records(
    writer: Any, reader: Any, path: str, out: list[str], roles: _Roles, seen: set[Any]
) -> None:
    key = (writer["name"], reader["name"], path)
    if key in seen:  # recursive types: this pair is already being checked
        return
    seen.add(key)
    written = {f["name"]: f for f in writer["fields"]}
    for field in reader["fields"]:
        names = [field["name"], *field.get("aliases", [])]
        source = next((written[n] for n in names if n in written), None)
        sub = f"{path}.{field['name']}" if path else field["name"]
        if source is not None:
            _resolve(source["type"], field["type"], sub, out, roles, seen)
        elif "default" not in field:
            out.append(
                f"{sub}: the {roles.reader} schema has this field without a default and the"
                f" {roles.writer} schema does not have it, so {roles.writer} data cannot fill"
                f" it in ({_missing_hint(roles)})"
            )


def _missing_hint(roles: _Roles) -> str:
    if roles.reader == "new":
        return 'a field added without a default: give it one, e.g. ["null", ...] = null'
    if roles.reader == "old":
        return (
            "a field removed that had no default: keep it, or first release a version"
            " that gives it a default"
        )
    return "give the field a default"


# --- data round trip ------------------------------------------------------------------


def round_trip_problems(
    writer: dict[str, Any], reader: dict[str, Any], samples: int | None = None
) -> list[str]:
    """Write representative records with ``writer``, read them with ``reader`` (fastavro);
    the failures, one line per failing sample."""
    parsed_writer = fastavro.parse_schema(writer, named_schemas={})
    parsed_reader = fastavro.parse_schema(reader, named_schemas={})
    expanded = _expand(writer)
    count = samples if samples is not None else max(2, _widest(expanded))
    problems: list[str] = []
    for k in range(count):
        record = _sample(expanded, k)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed_writer, record)
        body = buf.getvalue()
        try:
            stream = io.BytesIO(body)
            fastavro.schemaless_reader(stream, parsed_writer, parsed_reader)
        except Exception as exc:  # any failure to read is the finding itself
            problems.append(f"sample {k}: {type(exc).__name__}: {exc}")
            continue
        if stream.tell() != len(body):
            problems.append(f"sample {k}: {len(body) - stream.tell()} bytes left unread")
    return problems


def _widest(schema: Any) -> int:
    """The largest union or enum, so that cycling through samples visits every branch."""
    kind = _kind(schema)
    if kind == "union":
        return max([len(schema), *(_widest(b) for b in schema)])
    if kind == "enum":
        return len(schema["symbols"])
    if kind == "record":
        return max([1, *(_widest(f["type"]) for f in schema["fields"])])
    if kind == "array":
        return _widest(schema["items"])
    if kind == "map":
        return _widest(schema["values"])
    return 1


def _sample(schema: Any, k: int) -> Any:
    """Sample ``k``: union branch ``k mod n`` and enum symbol ``k mod n`` everywhere, so
    sample 0 takes the null branches and later samples the non-null ones."""
    kind = _kind(schema)
    if kind == "union":
        branch = schema[k % len(schema)]
        value = _sample(branch, k)
        # Name the branch explicitly: fastavro would otherwise pick the first that fits.
        if _kind(branch) == "record":
            return (branch["name"], value)
        return value
    if kind == "record":
        return {f["name"]: _sample(f["type"], k) for f in schema["fields"]}
    if kind == "enum":
        return schema["symbols"][k % len(schema["symbols"])]
    if kind == "array":
        return [_sample(schema["items"], k)]
    if kind == "map":
        return {"k": _sample(schema["values"], k)}
    if kind == "fixed":
        return bytes(schema["size"])
    return _primitive(schema, kind, k)


def _primitive(schema: Any, kind: str, k: int) -> Any:
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if logical == "uuid":
        return uuid.UUID(int=k)
    if logical in ("timestamp-millis", "timestamp-micros"):
        return datetime(2025, 1, 13, 13, 0, k % 60, tzinfo=UTC)
    if logical == "date":
        return date(2025, 1, 1 + k % 28)
    if logical in ("time-millis", "time-micros"):
        return time(12, 0, k % 60)
    if logical == "decimal":
        return Decimal(k).scaleb(-int(schema.get("scale", 0)))
    values = {
        "null": None,
        "boolean": k % 2 == 1,
        "int": k,
        "long": 2**40 + k,
        "float": 0.5 + k,
        "double": 0.25 + k,
        "bytes": b"b%d" % k,
        "string": f"s{k}",
    }
    return values[kind]


# --- both, over versions ----------------------------------------------------------------


def check_pair(old: dict[str, Any], new: dict[str, Any], mode: Mode = "FULL") -> list[str]:
    """Problems with moving from ``old`` to ``new`` under ``mode``; empty if compatible."""
    directions: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    if mode in ("BACKWARD", "FULL"):
        directions.append(("BACKWARD (new reads old data)", old, new))
    if mode in ("FORWARD", "FULL"):
        directions.append(("FORWARD (old reads new data)", new, old))
    problems: list[str] = []
    for label, writer, reader in directions:
        roles = ("old", "new") if writer is old else ("new", "old")
        structural = resolution_problems(writer, reader, roles)
        data = round_trip_problems(writer, reader)
        problems += [f"{label}: {p}" for p in structural]
        # The round trip is the backstop: report it when it disagrees with the rules.
        if data and not structural:
            problems += [f"{label}: round trip failed: {p}" for p in data]
    return problems


def check_versions(folder: Path, mode: Mode = "FULL") -> list[str]:
    """Every consecutive pair of versions in ``folder``, checked under ``mode``."""
    versions = load_versions(folder)
    numbers = list(versions)
    problems: list[str] = []
    if numbers and numbers != list(range(1, len(numbers) + 1)):
        problems.append(f"{folder.name}: versions {numbers} are not 1..N without gaps")
    for old, new in itertools.pairwise(numbers):
        for p in check_pair(versions[old], versions[new], mode):
            problems.append(f"{folder.name} v{old} -> v{new}: {p}")
    return problems


def field_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Field-level differences, one line each: ``+ path type``, ``- path type``,
    ``~ path old -> new``."""
    before = {path: _field_text(f) for path, f in walk_fields(old)}
    after = {path: _field_text(f) for path, f in walk_fields(new)}
    lines = [f"- {p}  {before[p]}" for p in before if p not in after]
    lines += [f"+ {p}  {after[p]}" for p in after if p not in before]
    lines += [
        f"~ {p}  {before[p]} -> {after[p]}" for p in before if p in after and before[p] != after[p]
    ]
    return lines


def _field_text(field: dict[str, Any]) -> str:
    text = describe_type(field["type"])
    return text + f" = {json.dumps(field['default'])}" if "default" in field else text


def walk_fields(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every field of a record schema and of the records nested in it (also inside unions),
    depth first, as ``(dotted path, expanded field)``: ``pass.barcode.type``."""
    out: list[tuple[str, dict[str, Any]]] = []
    _walk(_expand(schema), "", out)
    return out


def _walk(schema: Any, prefix: str, out: list[tuple[str, dict[str, Any]]]) -> None:
    for branch in schema if isinstance(schema, list) else [schema]:
        if _kind(branch) == "record":
            for field in branch["fields"]:
                out.append((prefix + field["name"], field))
                _walk(field["type"], f"{prefix}{field['name']}.", out)
