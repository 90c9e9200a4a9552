"""Stand-in artifacts for simulations: registered like real ones, with placeholder bytes for files.

Simulated devices never load a model, so a fleet simulation, a benchmark or a test of the control plane needs
an artifact the registry accepts (a model version, blobs, a manifest that fits its class), not a real model.
Real devices need real, signed artifacts (``edgefleet build`` + ``edgefleet publish``).
"""

from __future__ import annotations

import contextlib
import hashlib

from edgefleet.client import EdgefleetClient
from edgefleet.protocol.errors import ConflictError
from edgefleet.protocol.manifest import ArtifactManifest

__all__ = ["register_stand_in_artifact", "stand_in_manifest"]


def stand_in_manifest(
    *, model: str, version: str, hardware_class: str, files: dict[str, bytes], release_counter: int = 1
) -> ArtifactManifest:
    """A valid manifest for ``files`` (which must hold ``model.onnx`` and ``golden.npz``)."""
    return ArtifactManifest.parse(
        {
            "model": model,
            "version": version,
            "hardware_class": hardware_class,
            "runtime": {"name": "onnxruntime", "execution_providers": ["CPUExecutionProvider"]},
            "entrypoint": "model.onnx",
            "files": [
                {"path": p, "sha256": hashlib.sha256(d).hexdigest(), "length": len(d)}
                for p, d in files.items()
            ],
            "signature": {
                "inputs": [{"name": "x", "dtype": "float32", "shape": [1, 64]}],
                "outputs": [{"name": "y", "dtype": "float32", "shape": [1, 10]}],
            },
            "optimization": {"source_sha256": hashlib.sha256(files["model.onnx"]).hexdigest()},
            "health_check": {"golden_file": "golden.npz", "latency_ceiling_ms": 50},
            "release_counter": release_counter,
        }
    )


def register_stand_in_artifact(
    client: EdgefleetClient,
    *,
    model: str,
    version: str,
    hardware_class: str,
    model_bytes: bytes | None = None,
    release_counter: int = 1,
) -> str:
    """Upload placeholder files, create the model and version when missing, register; returns the id."""
    files = {
        "model.onnx": model_bytes if model_bytes is not None else b"onnx-bytes-" + version.encode(),
        "golden.npz": b"golden-" + version.encode(),
    }
    for data in files.values():
        client.upload_blob_bytes(data, sha256=hashlib.sha256(data).hexdigest())
    source_sha256 = hashlib.sha256(files["model.onnx"]).hexdigest()
    with contextlib.suppress(ConflictError):  # already there
        client.create_model(model)
    with contextlib.suppress(ConflictError):
        client.create_version(model, version, source_sha256=source_sha256)
    manifest = stand_in_manifest(
        model=model,
        version=version,
        hardware_class=hardware_class,
        files=files,
        release_counter=release_counter,
    )
    return client.register_artifact(manifest).id
