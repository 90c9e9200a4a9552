"""``edgefleet tuf export``'s copy of the image repository: the python-tuf layout, incremental, the timestamp
written last, and nothing served that does not match the metadata naming it (a real repository on disk as
the source; the end-to-end test with a real agent and a static host is tests/e2e/test_content_host.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from edgefleet.client.errors import IntegrityError
from edgefleet.client.tuf_mirror import export_repository, target_file_name
from edgefleet.protocol.errors import InvalidDocumentError, NotFoundError
from edgefleet.trust.keys import init_keys, load_signer
from edgefleet.trust.repository import ImageRepository, OnlineSigners

NOW = datetime.now(timezone.utc)


class RepoSource:
    """Reads a repository directory as the API's /tuf/ would serve it; ``tamper`` alters one file."""

    def __init__(self, repo: ImageRepository) -> None:
        self.repo = repo
        self.tamper: dict[str, bytes] = {}
        self.asked: list[str] = []

    def tuf_metadata(self, name: str) -> bytes:
        self.asked.append(name)
        if name in self.tamper:
            return self.tamper[name]
        path = self.repo.metadata_dir / name
        if not path.exists():
            raise NotFoundError("no such metadata", code="tuf_file_not_found", got=name)
        return path.read_bytes()

    def download_tuf_target(self, storage_name: str, dest: Path, *, sha256: str, length: int) -> Path:
        dest.write_bytes((self.repo.targets_dir / storage_name).read_bytes())
        return dest


@pytest.fixture
def source(tmp_path) -> RepoSource:
    keys = tmp_path / "keys"
    init_keys(keys, now=NOW)
    signers = OnlineSigners(load_signer(keys / "snapshot.key"), load_signer(keys / "timestamp.key"))
    repo = ImageRepository.create(tmp_path / "repo", (keys / "root.json").read_bytes(), signers, now=NOW)
    return RepoSource(repo)


def test_the_export_is_the_python_tuf_layout_with_the_timestamp_last(source, tmp_path):
    out = tmp_path / "cdn"
    first = export_repository(source, out)
    assert first.written[-1] == "metadata/timestamp.json"
    assert set(first.written) == {
        "metadata/1.snapshot.json",
        "metadata/1.root.json",
        "metadata/root.json",
        "metadata/timestamp.json",
    }
    for name in ("1.root.json", "root.json", "1.snapshot.json", "timestamp.json"):
        assert (out / "metadata" / name).read_bytes() == (source.repo.metadata_dir / name).read_bytes()
    # Incremental: nothing immutable is written again, only the timestamp (it changes in place).
    again = export_repository(source, out)
    assert again.written == ["metadata/timestamp.json"]
    assert again.kept == 2  # 1.snapshot.json and 1.root.json


def test_a_file_that_does_not_match_its_metadata_is_refused_before_the_timestamp(source, tmp_path):
    out = tmp_path / "cdn"
    good = source.tuf_metadata("1.snapshot.json")
    source.tamper["1.snapshot.json"] = good.replace(b'"version"', b'"version" ', 1)
    with pytest.raises(IntegrityError):
        export_repository(source, out)
    assert not (out / "metadata" / "timestamp.json").exists()  # a host serving DIR sees nothing half-done


def test_garbage_metadata_is_refused_with_a_code(source, tmp_path):
    source.tamper["timestamp.json"] = b"<html>a captive portal</html>"
    with pytest.raises(InvalidDocumentError) as caught:
        export_repository(source, tmp_path / "cdn")
    assert caught.value.code == "invalid_tuf_metadata"


def test_target_file_names_carry_their_hash_as_python_tuf_asks():
    assert (
        target_file_name("digits/1.0.0/cls/model.onnx", "ab" * 32)
        == f"digits/1.0.0/cls/{'ab' * 32}.model.onnx"
    )
    assert target_file_name("top.bin", "cd" * 32) == f"{'cd' * 32}.top.bin"
