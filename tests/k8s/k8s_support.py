"""Helpers of the Kubernetes tests: ``Cluster`` (what the ``k8s`` fixture yields) and
``image_archive``, which makes image archives without any container engine.

``image_archive(files, out, ref, fmt, entrypoint)`` packs files into a one-layer linux/amd64
image in either format ``podman save`` writes: ``"docker"`` (docker-archive: manifest.json with
RepoTags) or ``"oci"`` (OCI image layout: index.json with a ref.name annotation), for
``scripts/k8s-local load-image``.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[2]
K8S_LOCAL = ROOT / "scripts" / "k8s-local"

Format = Literal["docker", "oci"]


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    kubectl_path: Path
    netns: str | None  # None: host mode
    node_ip: str | None  # netns mode: where pods reach processes of the namespace
    pod_cidr: str | None
    env: dict[str, str]

    def in_net(self, *cmd: str) -> list[str]:
        """``cmd`` run in the cluster's network namespace (as tests run Kafka or a simulator)."""
        if self.netns is None:
            return list(cmd)
        return ["ip", "netns", "exec", self.netns, *cmd]

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120) -> str:
        cmd = self.in_net(str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args)
        proc = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
            )
        return proc.stdout

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
        )

    def load_image(self, archive: Path, ref: str | None = None) -> str:
        args = [str(K8S_LOCAL), "load-image", str(archive)] + ([ref] if ref else [])
        proc = subprocess.run(
            args, env=self.env, capture_output=True, text=True, timeout=300, check=False
        )
        if proc.returncode != 0:
            raise AssertionError(f"k8s-local load-image failed:\n{proc.stderr}")
        return proc.stdout.strip().splitlines()[-1]

    def free_port(self) -> int:
        """A free TCP port on the loopback of the cluster's network namespace."""
        out = subprocess.run(
            self.in_net(
                "python3",
                "-c",
                "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0));"
                " print(s.getsockname()[1])",
            ),
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        return int(out)


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def _layer(files: dict[str, Path]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in sorted(files.items()):
            _add(tar, name.lstrip("/"), path.read_bytes(), 0o755)
        tmp = tarfile.TarInfo("tmp")
        tmp.type = tarfile.DIRTYPE
        tmp.mode = 0o1777
        tar.addfile(tmp)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_archive(
    files: dict[str, Path],
    out: Path,
    ref: str,
    fmt: Format,
    entrypoint: list[str],
    user: str = "65534:65534",
) -> Path:
    """Write ``files`` (path in the image -> file on disk) as image ``ref`` to ``out``."""
    layer = _layer(files)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": entrypoint, "User": user},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{_sha(layer)}"]},
        }
    ).encode()
    with tarfile.open(out, "w") as tar:
        if fmt == "docker":
            _add(tar, f"{_sha(config)}.json", config)
            _add(tar, f"{_sha(layer)}/layer.tar", layer)
            manifest = [
                {
                    "Config": f"{_sha(config)}.json",
                    "RepoTags": [ref],
                    "Layers": [f"{_sha(layer)}/layer.tar"],
                }
            ]
            _add(tar, "manifest.json", json.dumps(manifest).encode())
        else:
            manifest_doc = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {
                        "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": f"sha256:{_sha(config)}",
                        "size": len(config),
                    },
                    "layers": [
                        {
                            "mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": f"sha256:{_sha(layer)}",
                            "size": len(layer),
                        }
                    ],
                }
            ).encode()
            index = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": f"sha256:{_sha(manifest_doc)}",
                        "size": len(manifest_doc),
                        "annotations": {"org.opencontainers.image.ref.name": ref},
                    }
                ],
            }
            _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            _add(tar, "index.json", json.dumps(index).encode())
            for blob in (config, layer, manifest_doc):
                _add(tar, f"blobs/sha256/{_sha(blob)}", blob)
    return out
