"""The control plane through its real ASGI app, on each database (``database_url`` is parametrized)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from edgefleet.server import Settings, create_app
from edgefleet.server.blobs import FsBlobStore
from edgefleet.server.store import Base

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hardware-classes.toml"
CLASS = "medical-cart-cpu"  # 50 MiB budget, CPU only, fp32 + int8


@dataclass
class Api:
    client: TestClient
    admin_token: str
    settings: Settings
    app: Any

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    @property
    def blobs(self) -> FsBlobStore:
        store = self.app.state.context.blobs
        assert isinstance(store, FsBlobStore)
        return store

    def token(self, role: str, name: str | None = None) -> dict[str, str]:
        r = self.client.post(
            "/v1/tokens",
            json={"name": name or f"{role}-{secrets.token_hex(3)}", "role": role},
            headers=self.admin,
        )
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def upload(self, data: bytes, headers: dict[str, str] | None = None) -> str:
        digest = hashlib.sha256(data).hexdigest()
        r = self.client.put(f"/v1/blobs/{digest}", content=data, headers=headers or self.admin)
        assert r.status_code in (200, 201), r.text
        return digest

    def count(self, table: str) -> int:
        """Rows in a table, read straight from the database."""
        t = Base.metadata.tables[table]
        with self.app.state.context.db.session() as s:
            return int(s.execute(select(func.count()).select_from(t)).scalar_one())

    def audit_actions(self) -> list[str]:
        r = self.client.get("/v1/audit", params={"limit": 500}, headers=self.admin)
        assert r.status_code == 200, r.text
        return [row["action"] for row in r.json()["items"]]

    def blob_files(self) -> list[Path]:
        """Every file under the blob dir (final and temp)."""
        return sorted(p for p in self.blobs.root.rglob("*") if p.is_file())


@pytest.fixture
def make_api(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Api]]:
    clients: list[TestClient] = []

    def make(*, blob_store: Any = None, **overrides: Any) -> Api:
        fields: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "admin_token": secrets.token_urlsafe(32),
            "dev": True,  # generates the server's own keys under data_dir; the admin token stays explicit
        }
        fields.update(overrides)
        settings = Settings(**fields)
        app = create_app(settings, blob_store=blob_store)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return Api(
            client=client, admin_token=app.state.context.settings.admin_token, settings=settings, app=app
        )

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


@pytest.fixture
def classes_toml() -> str:
    return EXAMPLES.read_text()


@pytest.fixture
def registry(api: Api) -> dict[str, Any]:
    """Example classes applied, model ``detector`` with version ``1.0.0`` whose source blob is stored."""
    from edgefleet.protocol import parse_classes_toml

    docs = [c.to_dict() for c in parse_classes_toml(EXAMPLES.read_text())]
    r = api.client.post("/v1/classes/apply", json={"classes": docs}, headers=api.admin)
    assert r.status_code == 200, r.text
    r = api.client.post("/v1/models", json={"name": "detector", "description": "boxes"}, headers=api.admin)
    assert r.status_code == 201, r.text
    source = b"onnx-source-" * 100
    source_sha = api.upload(source)
    r = api.client.post(
        "/v1/models/detector/versions",
        json={"version": "1.0.0", "source_sha256": source_sha},
        headers=api.admin,
    )
    assert r.status_code == 201, r.text
    return {"source_sha256": source_sha, "classes": docs}


@pytest.fixture
def manifest_for(api: Api, registry: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    """Build an artifact manifest whose files are uploaded (unless ``upload=False``)."""

    def build(
        *, model_bytes: bytes = b"model" * 1000, upload: bool = True, **overrides: Any
    ) -> dict[str, Any]:
        golden = b"golden-vectors"
        files = []
        for path, data in (("model.onnx", model_bytes), ("golden.npz", golden)):
            digest = api.upload(data) if upload else hashlib.sha256(data).hexdigest()
            files.append({"path": path, "sha256": digest, "length": len(data)})
        manifest: dict[str, Any] = {
            "schema_version": 1,
            "model": "detector",
            "version": "1.0.0",
            "hardware_class": CLASS,
            "runtime": {
                "name": "onnxruntime",
                "min_version": "1.16",
                "execution_providers": ["CPUExecutionProvider"],
            },
            "precision": "int8",
            "entrypoint": "model.onnx",
            "files": files,
            "signature": {
                "inputs": [{"name": "x", "dtype": "float32", "shape": [1, 64]}],
                "outputs": [{"name": "y", "dtype": "float32", "shape": [1, 10]}],
            },
            "optimization": {"source_sha256": registry["source_sha256"], "quantization": "int8_static"},
            "health_check": {"golden_file": "golden.npz", "latency_ceiling_ms": 50.0},
            "release_counter": 1,
        }
        manifest.update(overrides)
        return manifest

    return build


from tests.server.fleet import fleet, fleet_settings  # noqa: E402, F401  # the simulated-fleet fixture, shared by device and rollout tests
