"""The real control-plane app behind the client, through Starlette's in-process transport."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from edgefleet.client import EdgefleetClient

EXAMPLE_CLASSES = Path(__file__).parents[2] / "examples" / "hardware-classes.toml"


@dataclasses.dataclass
class RealApp:
    transport: httpx.BaseTransport
    admin_token: str
    data_dir: Path

    def client(
        self, token: str | None = "admin", transport: httpx.BaseTransport | None = None
    ) -> EdgefleetClient:
        secret = self.admin_token if token == "admin" else token
        return EdgefleetClient("http://edgefleet.test", secret, transport=transport or self.transport)


@pytest.fixture
def real_app(tmp_path: Path) -> Iterator[RealApp]:
    with warnings.catch_warnings():  # Starlette nudges towards httpx2; its transport is what we need
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
        from starlette.testclient import TestClient

    from edgefleet.server.app import create_app
    from edgefleet.server.settings import Settings

    admin = secrets.token_urlsafe(32)
    settings = Settings(
        data_dir=tmp_path / "server", dev=True, admin_token=admin, max_blob_bytes=16 * 1024 * 1024
    )
    with TestClient(create_app(settings)) as test_client:
        yield RealApp(test_client._transport, admin, tmp_path / "server")


@pytest.fixture
def admin(real_app: RealApp) -> Iterator[EdgefleetClient]:
    with real_app.client() as client:
        yield client


def write_artifact_dir(
    root: Path,
    *,
    model: str = "detector",
    version: str = "1.0.0",
    hardware_class: str = "medical-cart-cpu",
    model_bytes: int = 4096,
    source_sha256: str | None = None,
) -> Path:
    """An artifact directory whose files are opaque bytes to the registry."""
    root.mkdir(parents=True, exist_ok=True)
    files = {"model.onnx": os.urandom(model_bytes), "golden.npz": os.urandom(512)}
    for name, data in files.items():
        (root / name).write_bytes(data)
    manifest = {
        "schema_version": 1,
        "model": model,
        "version": version,
        "hardware_class": hardware_class,
        "runtime": {"name": "onnxruntime", "execution_providers": ["CPUExecutionProvider"]},
        "precision": "fp32",
        "entrypoint": "model.onnx",
        "files": [
            {"path": n, "sha256": hashlib.sha256(d).hexdigest(), "length": len(d)} for n, d in files.items()
        ],
        "signature": {
            "inputs": [{"name": "x", "dtype": "float32", "shape": [1, 16]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [1, 4]}],
        },
        "optimization": {"source_sha256": source_sha256 or "0" * 64},
        "health_check": {"golden_file": "golden.npz", "latency_ceiling_ms": 50.0},
        "release_counter": 1,
        "x_unknown_field": {"kept": True},
    }
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


@pytest.fixture
def registered_version(admin: EdgefleetClient, tmp_path: Path) -> Callable[..., Path]:
    """Classes applied, model + version registered; returns a factory for matching artifact dirs."""
    from edgefleet.protocol import parse_classes_toml

    admin.apply_classes(parse_classes_toml(EXAMPLE_CLASSES.read_bytes()))
    source = tmp_path / "source.onnx"
    source.write_bytes(os.urandom(2048))
    admin.create_model("detector")
    version = admin.add_version_from_file("detector", "1.0.0", source)

    def make(name: str = "art", **kwargs: object) -> Path:
        return write_artifact_dir(tmp_path / name, source_sha256=version.source_sha256, **kwargs)  # type: ignore[arg-type]

    return make
