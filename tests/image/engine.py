"""A container engine (docker or podman) driven through its CLI, for the image tests.

Every container these tests start carries the labels of tests/kafka_broker.py naming the pytest
process that started it; ``remove_mine()`` removes this session's, ``remove_orphans()`` those
of runs that were killed. Containers of other live sessions are never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.kafka_broker import KIND_LABEL, OWNER_LABEL, owner_alive, owner_token

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "image"

# Run inside the image by its own interpreter (the venv's, first on PATH).
PROBE_WRITES = """
import errno, json, os, sys
result = {}
for path in sys.argv[1:]:
    try:
        with open(os.path.join(path, ".probe"), "w") as f:
            f.write("x")
        result[path] = "written"
    except OSError as exc:
        result[path] = errno.errorcode.get(exc.errno, str(exc.errno))
print(json.dumps(result))
"""


@dataclass(frozen=True)
class BuiltImage:
    ref: str
    version: str
    revision: str
    inspect: dict[str, Any]

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.inspect["Config"]["Labels"] or {}
        return labels

    @property
    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.inspect["Config"]["Env"])


@dataclass(frozen=True)
class Engine:
    name: str  # "docker" or "podman"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.name == "podman":
            env.setdefault("CONTAINERS_CONF", str(ROOT / "containers" / "containers.conf"))
        return env

    def cli(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.name, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{self.name} {' '.join(args)} exited {proc.returncode}\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc

    def inspect_image(self, ref: str) -> dict[str, Any]:
        out = self.cli("image", "inspect", ref).stdout
        found: list[dict[str, Any]] = json.loads(out)
        return found[0]

    def run_args(
        self,
        image: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        read_only: bool = True,
        host_network: bool = False,
        extra: Sequence[str] = (),
    ) -> list[str]:
        """``run`` arguments. ``read_only``: a read-only root and NO writable tmpfs anywhere
        (podman adds tmpfs on /tmp, /var/tmp and /run to --read-only unless told not to)."""
        flags = ["--label", f"{OWNER_LABEL}={owner_token()}", "--label", f"{KIND_LABEL}=image"]
        if read_only:
            flags.append("--read-only")
            if self.name == "podman":
                flags.append("--read-only-tmpfs=false")
        if host_network:
            flags += ["--network", "host"]
        for key, value in (env or {}).items():
            flags += ["--env", f"{key}={value}"]
        return ["run", *flags, *extra, image, *args]

    def run(
        self,
        image: str,
        *args: str,
        timeout: float = 120,
        check: bool = True,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[str]:
        """Run to completion and remove the container."""
        return self.cli(
            *self.run_args(image, *args, extra=["--rm", *kwargs.pop("extra", ())], **kwargs),
            timeout=timeout,
            check=check,
        )

    def start(self, image: str, *args: str, **kwargs: Any) -> str:
        """Start detached; returns the container id (removed by ``remove_mine``)."""
        extra = ["--detach", *kwargs.pop("extra", ())]
        return self.cli(*self.run_args(image, *args, extra=extra, **kwargs)).stdout.strip()

    def _labelled(self, *filters: str) -> list[tuple[str, str]]:
        """(id, owner) of the test containers matching ``filters`` (label filters)."""
        args = ["--filter", f"label={OWNER_LABEL}"]
        for item in filters:
            args += ["--filter", f"label={item}"]
        ids = self.cli("ps", "--all", "--quiet", *args).stdout.split()
        found = []
        for cid in ids:
            proc = self.cli(
                "inspect",
                "--format",
                f'{{{{index .Config.Labels "{OWNER_LABEL}"}}}}',
                cid,
                check=False,
            )
            if proc.returncode == 0:  # it may be gone meanwhile
                found.append((cid, proc.stdout.strip()))
        return found

    def remove_mine(self) -> None:
        """This session's image containers (its Kafka container is the broker fixture's)."""
        mine = owner_token()
        ids = [cid for cid, owner in self._labelled(f"{KIND_LABEL}=image") if owner == mine]
        if ids:
            self.cli("rm", "--force", *ids, check=False)

    def remove_orphans(self) -> None:
        ids = [cid for cid, owner in self._labelled() if not owner_alive(owner)]
        if ids:
            self.cli("rm", "--force", *ids, check=False)
