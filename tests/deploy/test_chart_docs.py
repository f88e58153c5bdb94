"""The chart's documentation: every values schema field has a description, and README.md's
values table and the schema's descriptions are what values.yaml's comments make
(scripts/chart-docs, with helm-docs built from its Go module)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.deploy.deploy_support import CHART, ROOT, find_tool

SCRIPT = ROOT / "scripts" / "chart-docs"


def _fields(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, field in node.get("properties", {}).items():
        where = f"{path}.{name}" if path else name
        yield where, field
        yield from _fields(field, where)
        if isinstance(field.get("items"), dict):
            yield from _fields(field["items"], f"{where}[]")


def test_every_schema_field_has_a_description() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    fields = dict(_fields(schema))
    assert len(fields) > 200
    undescribed = [path for path, field in fields.items() if not field.get("description")]
    assert not undescribed, undescribed


def _helm_docs() -> str:
    return find_tool("helm-docs", ROOT / ".local" / "bin" / "helm-docs")


def test_readme_and_schema_are_what_the_values_comments_make() -> None:
    done = subprocess.run(
        [str(SCRIPT), "--check"],
        env={"HELM_DOCS": _helm_docs(), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    assert "| kafka.bootstrapServers | string |" in readme


def test_the_check_catches_a_value_without_a_comment(tmp_path: Path) -> None:
    """The drift check can fail: a copy of the project whose values.yaml gains an undocumented
    value is refused, naming it."""
    copy = tmp_path / "project"
    (copy / "scripts").mkdir(parents=True)
    shutil.copy2(SCRIPT, copy / "scripts" / "chart-docs")
    shutil.copytree(CHART, copy / "helm" / "passentry-bridge")
    values = copy / "helm" / "passentry-bridge" / "values.yaml"
    values.write_text(values.read_text(encoding="utf-8") + "undocumented: 1\n", encoding="utf-8")
    done = subprocess.run(
        [str(copy / "scripts" / "chart-docs"), "--check"],
        env={"HELM_DOCS": _helm_docs(), "PYTHON": str(ROOT / ".venv" / "bin" / "python"),
             "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "undocumented has no '# --' comment" in done.stderr
