"""The image repository's static files over HTTP: a folder is not a file (issue 14, item 4)."""

from __future__ import annotations

import pytest


@pytest.fixture
def repo(api):
    runtime = api.app.state.tuf
    assert runtime.repo is not None, "dev mode creates the image repository"
    return runtime.repo


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("name", ["detector", "detector/1.0.0", "detector/1.0.0/", ""])
def test_a_folder_under_targets_is_not_found_and_not_cacheable(api, repo, method, name) -> None:
    (repo.targets_dir / "detector" / "1.0.0").mkdir(parents=True)
    (repo.targets_dir / "detector" / "1.0.0" / "model.onnx").write_bytes(b"m")
    r = api.client.request(method, f"/tuf/targets/{name}")
    assert r.status_code == 404, r.text
    assert "immutable" not in r.headers.get("cache-control", "")
    if method == "GET":
        assert r.json()["code"] == "tuf_file_not_found"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_file_under_targets_is_served_immutable(api, repo, method) -> None:
    (repo.targets_dir / "detector").mkdir()
    (repo.targets_dir / "detector" / "abc.model.onnx").write_bytes(b"model-bytes")
    r = api.client.request(method, "/tuf/targets/detector/abc.model.onnx")
    assert r.status_code == 200
    assert "immutable" in r.headers["cache-control"]
    assert r.headers["content-length"] == "11"


def test_the_metadata_folder_itself_is_not_found(api, repo) -> None:
    (repo.metadata_dir / "sub.json").mkdir()
    for method in ("GET", "HEAD"):
        assert api.client.request(method, "/tuf/metadata/sub.json").status_code == 404
