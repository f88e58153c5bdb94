"""The image: hadolint-clean, multi-stage, non-root, read-only friendly, exec-form entry point.

Static checks of the Dockerfiles; tests/image builds the image and runs it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.deploy.deploy_support import ROOT, run

DOCKERFILE = ROOT / "Dockerfile"
KAFKA_DOCKERFILE = ROOT / "kafka" / "image" / "Dockerfile"


def _stages(path: Path = DOCKERFILE) -> list[list[tuple[str, str]]]:
    """Instructions per stage, as (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    stages: list[list[tuple[str, str]]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        stages[-1].append((word.upper(), rest.strip()))
    return stages


@pytest.mark.parametrize("path", [DOCKERFILE, KAFKA_DOCKERFILE], ids=["bridge", "kafka"])
def test_hadolint_is_clean(hadolint: str, path: Path) -> None:
    run([hadolint, "--failure-threshold", "style", str(path)])


def test_base_image_is_a_pinned_slim_python() -> None:
    args = dict(i for i in _stages()[0] if i[0] == "ARG")
    base = args["ARG"].split("=", 1)[1]
    assert re.fullmatch(r"docker\.io/library/python:3\.11\.\d+-slim-bookworm", base), base


@pytest.mark.parametrize("path", [DOCKERFILE, KAFKA_DOCKERFILE], ids=["bridge", "kafka"])
def test_the_base_label_names_the_base_used(path: Path) -> None:
    """Not a hard-coded name: the FROM argument, re-declared in the final stage."""
    *_, final = _stages(path)
    base_arg = final[0][1].removeprefix("${").removesuffix("}")
    assert re.fullmatch(r"[A-Z_]+", base_arg), final[0]
    assert ("ARG", base_arg) in final
    labels = " ".join(args for word, args in final if word == "LABEL")
    assert f'org.opencontainers.image.base.name="${{{base_arg}}}"' in labels


def test_final_stage_gets_only_the_venv() -> None:
    *_, final = _stages()
    assert not final[0][1].endswith("AS builder")
    copies = [args for word, args in final if word in {"COPY", "ADD"}]
    assert copies == ["--from=builder /opt/venv /opt/venv"], copies
    assert not any(word == "RUN" for word, _ in final), "no build steps in the final stage"


def test_runtime_settings() -> None:
    final = _stages()[-1]
    instr: dict[str, list[str]] = {}
    for word, args in final:
        instr.setdefault(word, []).append(args)
    assert instr["USER"] == ["10001:10001"]
    assert json.loads(instr["ENTRYPOINT"][0]) == ["passentry-bridge"]
    assert json.loads(instr["CMD"][0]) == ["run"]
    assert instr["STOPSIGNAL"] == ["SIGTERM"]
    env = " ".join(instr["ENV"])
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "HOME=/tmp" in env
    labels = " ".join(instr["LABEL"])
    for key in ("title", "source", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_dockerignore_sends_only_the_build_inputs() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", "allow-list: everything is ignored first"
    assert "!bridge/" in rules
    assert "!pyproject.toml" in rules
