"""Test fleet: keys, an image repository, a loopback mirror serving it, devices."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import httpx

from edgefleet.agent.datadir import DataDir, DeviceIdentity
from edgefleet.trust.events import ListSink
from edgefleet.trust.fetch import TransferLimits
from edgefleet.trust.keys import init_keys, load_signer
from edgefleet.trust.repository import ImageRepository, OnlineSigners
from edgefleet.trust.verify import DeviceTrust

from .loopback import Mirror

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
CLASS = "medical-cart-cpu"


def write_artifact(
    directory: Path,
    *,
    model: str = "digits",
    version: str = "1.0.0",
    hardware_class: str = CLASS,
    release_counter: int = 1,
    model_bytes: bytes = b"onnx-model-bytes" * 64,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    files = {"model.onnx": model_bytes, "golden.npz": b"golden-vectors"}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    manifest = {
        "schema_version": 1,
        "model": model,
        "version": version,
        "hardware_class": hardware_class,
        "runtime": {
            "name": "onnxruntime",
            "min_version": "1.16",
            "execution_providers": ["CPUExecutionProvider"],
        },
        "entrypoint": "model.onnx",
        "files": [
            {"path": n, "sha256": hashlib.sha256(d).hexdigest(), "length": len(d)} for n, d in files.items()
        ],
        "signature": {
            "inputs": [{"name": "x", "dtype": "float32", "shape": ["N", 1, 8, 8]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": ["N", 10]}],
        },
        "optimization": {"source_sha256": "c" * 64},
        "health_check": {"golden_file": "golden.npz", "latency_ceiling_ms": 50},
        "release_counter": release_counter,
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


class Fleet:
    """Keys + image repository + a mirror serving it on loopback + device factory."""

    def __init__(
        self, tmp: Path, mirror_cls: Callable[[Path], object], *, root_threshold: int = 1, root_keys: int = 1
    ) -> None:
        self.tmp = tmp
        self.keys = tmp / "keys"
        self.keyset = init_keys(self.keys, now=NOW, root_threshold=root_threshold, root_keys=root_keys)
        self.signers = OnlineSigners(
            load_signer(self.keys / "snapshot.key"), load_signer(self.keys / "timestamp.key")
        )
        self.repo = ImageRepository.create(tmp / "repo", self.keyset.root_bytes, self.signers, now=NOW)
        self.release = load_signer(self.keys / "release.key")
        self.mirror = mirror_cls(tmp / "repo")
        self.events = ListSink()
        self.client = httpx.Client()
        self._n = 0

    def artifact(self, **kw: object) -> Path:
        self._n += 1
        return write_artifact(self.tmp / f"artifact-{self._n}", **kw)  # type: ignore[arg-type]

    def device(
        self, name: str = "device", *, limits: TransferLimits | None = None, bootstrap: bytes | None = None
    ) -> DeviceTrust:
        extra = {"limits": limits} if limits else {}
        return DeviceTrust(
            self.tmp / name / "metadata",
            f"{self.mirror.url}/metadata/",  # type: ignore[attr-defined]
            f"{self.mirror.url}/targets/",  # type: ignore[attr-defined]
            client=self.client,
            bootstrap_root=bootstrap or self.keyset.root_bytes,
            events=self.events,
            **extra,
        )


def enrolled_device(fleet: Fleet, tmp: Path) -> tuple[DataDir, DeviceIdentity, Mirror]:
    """The fleet's repository served at ``<url>/tuf/`` (the control plane's layout) by a loopback mirror,
    and a data dir enrolled against it: ``(data dir, identity, mirror)``; the caller stops the mirror."""
    site = tmp / "site"
    site.mkdir(parents=True)
    (site / "tuf").symlink_to(fleet.repo.directory)
    mirror = Mirror(site)
    ddir = DataDir(tmp / "agent")
    identity = DeviceIdentity(
        device_id="dev-1",
        server_url=mirror.url,
        hardware_class=CLASS,
        director_public_key_pem=(fleet.keys / "director.pub").read_text(),
    )
    ddir.write_identity(identity, json.loads(fleet.keyset.root_bytes))
    return ddir, identity, mirror
