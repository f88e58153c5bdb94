"""The lock file that keeps released schema versions immutable.

``schemas/schemas.lock`` lists every released ``<name>/v<N>.avsc`` with its sha256. A
released file is never edited (consumers may hold its fingerprint or registry id forever):
a change is a new version, checked for compatibility with the one before it.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from bridge.avro.schemas import VERSION_FILE

__all__ = ["LOCK_FILE", "bundled_schemas", "lock_problems", "read_lock", "render_lock"]

LOCK_FILE = "schemas.lock"


def bundled_schemas() -> Path:
    return Path(str(resources.files("bridge").joinpath("schemas")))


def _hashes(root: Path) -> dict[str, str]:
    return {
        f"{path.parent.name}/{path.name}": "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.glob("*/v*.avsc"))
        if VERSION_FILE.match(path.name)
    }


def read_lock(root: Path) -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in (root / LOCK_FILE).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, digest = line.split()
            entries[name] = digest
    return entries


def lock_problems(root: Path) -> list[str]:
    """Differences between ``root/schemas.lock`` and the schema files under ``root``."""
    if not (root / LOCK_FILE).is_file():
        return [f"{root / LOCK_FILE} is missing; create it with scripts/schema-lock"]
    locked, current = read_lock(root), _hashes(root)
    problems = []
    for name, digest in locked.items():
        if name not in current:
            problems.append(
                f"{name} was released (it is in {LOCK_FILE}) but its file is gone;"
                " released versions are never deleted: restore it"
            )
        elif current[name] != digest:
            folder, file = name.split("/")
            match = VERSION_FILE.match(file)
            nxt = int(match.group(1)) + 1 if match else "N+1"
            problems.append(
                f"{name} was edited after it was released ({LOCK_FILE} has {digest[:19]}...,"
                f" the file is now {current[name][:19]}...). Released schema versions are"
                " immutable: revert the edit and add the change as a new version"
                f" ({folder}/v{nxt}.avsc), then record it with scripts/schema-lock"
            )
    for name in current:
        if name not in locked:
            problems.append(
                f"{name} is not in {LOCK_FILE}; once it is final, record it with"
                " scripts/schema-lock (which only ever adds entries)"
            )
    return problems


def render_lock(root: Path) -> str:
    """The lock file with every existing entry kept as it is and new versions added."""
    entries = read_lock(root) if (root / LOCK_FILE).is_file() else {}
    for name, digest in _hashes(root).items():
        entries.setdefault(name, digest)
    header = (
        "# Released Avro schema versions and their sha256. Never edit a released .avsc:\n"
        "# add a new version instead. Checked by tests/unit/avro/test_schema_lock.py\n"
        "# and `passentry-bridge schema check`; new entries are added by scripts/schema-lock.\n"
    )
    return header + "".join(f"{name} {digest}\n" for name, digest in sorted(entries.items()))
