"""The built image: its commands, its user, a read-only root, what it holds, its labels."""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from pathlib import Path

from tests.image.engine import PROBE_WRITES, ROOT, SCRIPT, BuiltImage, Engine

PROBE_CONTENTS = """
import importlib.metadata as md, importlib.util, json, os, shutil, sys
from confluent_kafka import Producer
from bridge.kafka import _produce
def error_cb(err): pass
print(json.dumps({
    "uid": os.getuid(),
    "gid": os.getgid(),
    "groups": os.getgroups(),
    "home": os.environ.get("HOME"),
    "executable": sys.executable,
    "pip_importable": importlib.util.find_spec("pip") is not None,
    "tools": {t: shutil.which(t) for t in ("pip", "pip3", "gcc", "cc", "c++", "make", "git")},
    "paths": {p: os.path.exists(p) for p in ("/src", "/wheels", "/opt/build")},
    "native": {m: importlib.util.find_spec(m).origin.rsplit(".", 1)[-1]
               for m in ("bridge.avro._scanbody", "bridge.kafka._scanrecord",
                         "bridge.kafka._produce")},
    "produce_binds": _produce.bind(Producer({"error_cb": error_cb, "log_level": 0}), error_cb),
    "dists": sorted(f"{d.metadata['Name']}=={d.version}" for d in md.distributions()),
}))
"""


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked_pins() -> set[str]:
    text = (ROOT / "requirements" / "runtime.lock").read_text(encoding="utf-8")
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", text, re.MULTILINE)
    return {f"{_normalize(name)}=={version}" for name, version in pins}


def test_version_and_help(engine: Engine, bridge_image: BuiltImage) -> None:
    version = engine.run(bridge_image.ref, "--version")
    assert version.stdout.strip() == f"passentry-bridge, version {bridge_image.version}"

    help_text = engine.run(bridge_image.ref, "--help").stdout
    for command in ("run", "backfill", "audit", "dlq", "check", "tail", "state", "schema"):
        assert re.search(rf"^\s+{command}\b", help_text, re.MULTILINE), (command, help_text)
    # The simulator is a distribution of its own, for the demo and the tests: not here.
    assert not re.search(r"^\s+simulate\b", help_text, re.MULTILINE), help_text
    refused = engine.run(bridge_image.ref, "simulate", check=False)
    assert refused.returncode == 2
    assert "passentry-simulator" in refused.stderr


def test_runs_as_uid_10001_from_the_venv(engine: Engine, bridge_image: BuiltImage) -> None:
    assert bridge_image.inspect["Config"]["User"] == "10001:10001"
    out = engine.run(bridge_image.ref, "-c", PROBE_CONTENTS, extra=["--entrypoint", "python"])
    seen = json.loads(out.stdout)
    assert (seen["uid"], seen["gid"], seen["groups"]) == (10001, 10001, [10001])
    assert seen["executable"] == "/opt/venv/bin/python"
    assert seen["home"] == "/tmp"


def test_the_root_filesystem_is_read_only_with_no_tmpfs_anywhere(
    engine: Engine, bridge_image: BuiltImage
) -> None:
    """The flags the other tests run with really leave nothing writable, /tmp included:
    stricter than Kubernetes, where the chart mounts an emptyDir on /tmp."""
    paths = ["/", "/tmp", "/var/tmp", "/run", "/opt/venv", "/opt/venv/lib"]
    out = engine.run(bridge_image.ref, "-c", PROBE_WRITES, *paths, extra=["--entrypoint", "python"])
    assert json.loads(out.stdout) == dict.fromkeys(paths, "EROFS")


def test_no_pip_compilers_or_sources_and_exactly_the_locked_dependencies(
    engine: Engine, bridge_image: BuiltImage
) -> None:
    out = engine.run(bridge_image.ref, "-c", PROBE_CONTENTS, extra=["--entrypoint", "python"])
    seen = json.loads(out.stdout)
    assert not seen["pip_importable"], "the bridge's interpreter can import pip"
    # The official base has a pip of its own in /usr/local/bin; the venv (first on PATH)
    # and the local base have none. Compilers and build tools: none at all.
    for tool, path in seen["tools"].items():
        if tool in {"pip", "pip3"} and path is not None:
            assert not path.startswith("/opt/venv/"), path
        else:
            assert path is None, f"{tool} at {path}"
    assert seen["paths"] == {"/src": False, "/wheels": False, "/opt/build": False}
    # The native modules were compiled in the builder and came over in the venv.
    assert seen["native"] == {
        "bridge.avro._scanbody": "so",
        "bridge.kafka._scanrecord": "so",
        "bridge.kafka._produce": "so",
    }
    # The image's librdkafka (confluent-kafka's own copy) is found and its producer taken.
    assert seen["produce_binds"] is True
    installed = {_normalize(d.split("==")[0]) + "==" + d.split("==")[1] for d in seen["dists"]}
    expected = _locked_pins() | {f"passentry-bridge=={bridge_image.version}"}
    assert installed == expected, {
        "not locked": sorted(installed - expected),
        "missing": sorted(expected - installed),
    }


def test_labels_carry_the_build_args_and_the_real_base(
    engine: Engine, bridge_image: BuiltImage
) -> None:
    labels = bridge_image.labels
    assert labels["org.opencontainers.image.version"] == bridge_image.version
    assert labels["org.opencontainers.image.revision"] == bridge_image.revision
    assert labels["org.opencontainers.image.title"] == "passentry-bridge"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", labels["org.opencontainers.image.created"]
    )
    # The base the label names is the one the image is built on: its layers come first.
    base = labels["org.opencontainers.image.base.name"]
    base_layers = engine.inspect_image(base)["RootFS"]["Layers"]
    layers = bridge_image.inspect["RootFS"]["Layers"]
    assert layers[: len(base_layers)] == base_layers, f"{bridge_image.ref} is not built on {base}"
    assert len(layers) > len(base_layers)


def test_the_archive_keeps_the_image_name(
    engine: Engine, bridge_image: BuiltImage, tmp_path: Path
) -> None:
    """`make image-archive`: a docker-archive that `ctr images import` or `docker load`
    takes with its name (localhost/passentry-bridge:<version> from podman)."""
    target = tmp_path / "image.tar"
    proc = subprocess.run(
        [str(SCRIPT), "archive", str(target)],
        env={**engine.env, "CONTAINER_ENGINE": engine.name, "IMAGE_VERSION": bridge_image.version},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(target)
    with tarfile.open(target) as archive:
        member = archive.extractfile("manifest.json")
        assert member is not None
        manifest = json.load(member)
    assert [entry["RepoTags"] for entry in manifest] == [[bridge_image.ref]]
    layers = bridge_image.inspect["RootFS"]["Layers"]
    assert len(manifest[0]["Layers"]) == len(layers)
