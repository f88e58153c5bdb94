"""The image: hadolint-clean, multi-stage, non-root, read-only friendly, exec-form entry point."""

from __future__ import annotations

import json
import re

from deploy_support import ROOT, run

DOCKERFILE = ROOT / "Dockerfile"


def _stages() -> list[list[tuple[str, str]]]:
    """Instructions per stage, as (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
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


def test_hadolint_is_clean(hadolint: str) -> None:
    run([hadolint, "--failure-threshold", "style", str(DOCKERFILE)])


def test_base_image_is_a_pinned_slim_python() -> None:
    args = dict(i for i in _stages()[0] if i[0] == "ARG")
    base = args["ARG"].split("=", 1)[1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base


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
