"""The client against the real control-plane app: every call, error codes preserved, faults injected."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from edgefleet.client import EdgefleetClient, ServerUnreachableError, pull_artifact, push_artifact
from edgefleet.client.artifact_dir import staging_dir
from edgefleet.protocol import HardwareClass, parse_classes_toml
from edgefleet.protocol.errors import (
    AuthenticationError,
    ConflictError,
    EdgefleetError,
    InvalidDocumentError,
    NotFoundError,
    PermissionDeniedError,
)

from .conftest import EXAMPLE_CLASSES, RealApp


class CutFilesTransport(httpx.BaseTransport):
    """Passes requests to the real app, but breaks the first ``cuts`` file downloads after ``after`` bytes."""

    def __init__(self, inner: httpx.BaseTransport, *, cuts: int, after: int) -> None:
        self.inner, self.cuts, self.after = inner, cuts, after
        self.ranges: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method != "GET" or "/files/" not in request.url.path:
            return response
        self.ranges.append(request.headers.get("range"))
        if self.cuts <= 0:
            return response
        self.cuts -= 1
        body = response.read()
        after = self.after

        class Broken(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                yield body[:after]
                raise httpx.ReadError("connection reset (injected)")

        return httpx.Response(response.status_code, headers=response.headers, stream=Broken())


def test_health(admin: EdgefleetClient) -> None:
    health = admin.health()
    assert health.status == "ok"
    assert health.database == "sqlite"


def test_classes_apply_list_show_delete(admin: EdgefleetClient) -> None:
    classes = parse_classes_toml(EXAMPLE_CLASSES.read_bytes())
    first = admin.apply_classes(classes)
    assert sorted(first.created) == sorted(c.name for c in classes)
    again = admin.apply_classes(classes)
    assert sorted(again.unchanged) == sorted(c.name for c in classes)
    assert again.created == again.updated == []

    page = admin.list_classes(limit=2)
    assert page.total == len(classes)
    assert len(page.items) == 2
    assert isinstance(page.items[0], HardwareClass)
    assert sorted(c.name for c in admin.iter_classes()) == sorted(c.name for c in classes)

    jetson = admin.get_class("jetson-vision-standard")
    assert jetson.budgets.max_model_mb == 200
    assert jetson.runtime.execution_providers[0] == "TensorrtExecutionProvider"

    admin.delete_class("medical-cart-cpu")
    with pytest.raises(NotFoundError) as info:
        admin.get_class("medical-cart-cpu")
    assert info.value.code == "class_not_found"


def test_models_and_versions(admin: EdgefleetClient, tmp_path: Path) -> None:
    created = admin.create_model("detector", description="finds things", labels={"team": "vision"})
    assert created.name == "detector"
    admin.create_model("classifier")
    with pytest.raises(ConflictError) as info:
        admin.create_model("detector")
    assert info.value.code == "model_exists"
    assert [m.name for m in admin.list_models(name_prefix="det").items] == ["detector"]

    source = tmp_path / "model.onnx"
    source.write_bytes(os.urandom(100_000))
    seen: list[int] = []
    version = admin.add_version_from_file(
        "detector", "1.0.0", source, metadata={"epochs": 3}, progress=seen.append
    )
    assert sum(seen) == 100_000
    assert version.source_length == 100_000
    assert admin.get_version("detector", "1.0.0").metadata == {"epochs": 3}
    assert admin.get_model("detector").version_count == 1
    assert [v.version for v in admin.list_versions("detector").items] == ["1.0.0"]

    with pytest.raises(InvalidDocumentError) as info2:
        admin.create_version("detector", "2.0.0", source_sha256="a" * 64)
    assert info2.value.code == "blob_missing"


def test_blob_upload_is_idempotent_and_download_verifies(admin: EdgefleetClient, tmp_path: Path) -> None:
    source = tmp_path / "blob"
    data = os.urandom(300_000)
    source.write_bytes(data)
    blob = admin.upload_blob(source, skip_existing=False)
    assert blob.length == len(data)
    assert admin.blob_length(blob.sha256) == len(data)
    assert admin.upload_blob(source).sha256 == blob.sha256
    dest = admin.download_blob(blob.sha256, tmp_path / "copy", length=len(data))
    assert dest.read_bytes() == data


def test_blob_with_wrong_sha256_is_refused(admin: EdgefleetClient) -> None:
    with pytest.raises(InvalidDocumentError) as info:
        admin.upload_blob_bytes(b"hello", sha256="0" * 64)
    assert info.value.code == "sha256_mismatch"
    assert info.value.details["expected"] == "0" * 64
    assert admin.blob_length("0" * 64) is None


def test_push_list_show_pull(
    admin: EdgefleetClient, registered_version: Callable[..., Path], tmp_path: Path
) -> None:
    directory = registered_version()
    info = push_artifact(admin, directory)
    assert info.id.startswith("art_")
    assert info.hardware_class == "medical-cart-cpu"
    assert info.manifest["x_unknown_field"] == {"kept": True}
    assert push_artifact(admin, directory).id == info.id  # identical manifest: same artifact

    assert [a.id for a in admin.list_artifacts(hardware_class="medical-cart-cpu").items] == [info.id]
    assert admin.list_artifacts(hardware_class="factory-gateway-gpu").total == 0
    assert admin.get_artifact(info.id).manifest_sha256 == info.manifest_sha256

    out = tmp_path / "pulled"
    pull_artifact(admin, info.id, out)
    for name in ("model.onnx", "golden.npz"):
        assert (out / name).read_bytes() == (directory / name).read_bytes()
    assert (out / "manifest.json").is_file()
    assert not staging_dir(out, info.id).exists()

    with pytest.raises(ConflictError) as conflict:
        pull_artifact(admin, info.id, out)
    assert conflict.value.code == "destination_exists"

    disabled = admin.set_artifact_disabled(info.id, True, reason="bad batch")
    assert disabled.disabled is True
    assert admin.list_artifacts(disabled=True).total == 1


def test_pull_resumes_after_broken_connections(
    real_app: RealApp, registered_version: Callable[..., Path], tmp_path: Path
) -> None:
    directory = registered_version(model_bytes=2 * 1024 * 1024 + 5)
    with real_app.client() as admin:
        info = push_artifact(admin, directory)
    faulty = CutFilesTransport(real_app.transport, cuts=2, after=700_000)
    with real_app.client(transport=faulty) as client:
        pull_artifact(client, info.id, tmp_path / "out")
    assert (tmp_path / "out" / "model.onnx").read_bytes() == (directory / "model.onnx").read_bytes()
    assert faulty.ranges[:3] == [None, "bytes=700000-", "bytes=1400000-"]


def test_artifact_for_unknown_class_is_refused(
    admin: EdgefleetClient, registered_version: Callable[..., Path]
) -> None:
    directory = registered_version(hardware_class="no-such-class")
    with pytest.raises(NotFoundError) as info:
        push_artifact(admin, directory)
    assert info.value.code == "class_not_found"
    _assert_no_blob_of(admin, directory)  # refused before any file was sent


def _assert_no_blob_of(client: EdgefleetClient, directory: Path) -> None:
    import json

    for entry in json.loads((directory / "manifest.json").read_text())["files"]:
        r = client._http.head(f"/v1/blobs/{entry['sha256']}")
        assert r.status_code == 404, entry["path"]


def test_artifact_over_the_class_budget_is_refused(
    admin: EdgefleetClient, registered_version: Callable[..., Path]
) -> None:
    admin.put_class(
        HardwareClass.parse(
            {
                "name": "tiny-mcu",
                "cpu_arch": "armv7l",
                "budgets": {"ram_mb": 1, "storage_mb": 1, "max_model_mb": 0.001},
                "performance": {"latency_p95_ms": 100},
            }
        )
    )
    directory = registered_version(hardware_class="tiny-mcu")
    with pytest.raises(InvalidDocumentError) as info:
        push_artifact(admin, directory)
    assert info.value.code == "exceeds_budget"
    _assert_no_blob_of(admin, directory)


def test_missing_wrong_and_low_privilege_tokens(real_app: RealApp) -> None:
    with real_app.client(token=None) as anonymous, pytest.raises(AuthenticationError) as info:
        anonymous.list_classes()
    assert info.value.code == "unauthenticated"
    with real_app.client(token="efop_" + "x" * 43) as wrong, pytest.raises(AuthenticationError):
        wrong.list_models()
    with real_app.client() as admin:
        viewer_token = admin.create_token("dashboard", "viewer").token
        assert viewer_token is not None
        assert "dashboard" in [t.name for t in admin.list_tokens().items]
    with real_app.client(token=viewer_token) as viewer:
        assert viewer.list_models().total == 0
        with pytest.raises(PermissionDeniedError) as denied:
            viewer.create_model("sneaky")
        assert denied.value.code == "permission_denied"
    with real_app.client() as admin:
        assert admin.list_models().total == 0  # nothing half-written
        actions = [row.action for row in admin.list_audit().items]
        assert actions  # the token creation was audited


def test_unreachable_server_is_our_error() -> None:
    client = EdgefleetClient("http://127.0.0.1:9", "t", timeout_s=2)
    with client, pytest.raises(ServerUnreachableError) as info:
        client.list_classes()
    assert info.value.code == "server_unreachable"
    assert isinstance(info.value, EdgefleetError)


def test_path_like_names_never_reach_the_server(admin: EdgefleetClient) -> None:
    for bad in ("../x", "a/b", ".hidden", "UPPER"):
        with pytest.raises(InvalidDocumentError) as info:
            admin.get_class(bad)
        assert info.value.code == "invalid_name"


def test_a_file_changed_after_the_push_hashed_it_is_refused_by_the_server(
    admin: EdgefleetClient, registered_version: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """push hashes each file once (against the manifest) and does not re-read it before sending; a file that
    changes in between is still caught, by the server's check while it streams, and nothing registers."""
    import edgefleet.client.artifact_dir as artifact_dir

    directory = registered_version()
    real_load = artifact_dir.load_artifact_dir

    def load_then_tamper(path: Path):
        manifest = real_load(path)
        target = Path(path) / manifest.files[0].path
        data = bytearray(target.read_bytes())
        data[0] ^= 0xFF  # same length, other bytes
        target.write_bytes(bytes(data))
        return manifest

    monkeypatch.setattr(artifact_dir, "load_artifact_dir", load_then_tamper)
    with pytest.raises(InvalidDocumentError) as refused:
        push_artifact(admin, directory)
    assert refused.value.code == "sha256_mismatch"
    assert admin.list_artifacts().total == 0
