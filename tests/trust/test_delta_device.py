"""The device side of deltas through the real TUF fetcher: a delta is used when the device holds its base,
and every refusal falls back to the full download, is reported, and still yields the signed file."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgefleet.agent.datadir import DataDir
from edgefleet.agent.install.content import TufArtifactFetcher
from edgefleet.agent.install.download import DownloadPolicy
from edgefleet.agent.install.slots import SlotStore
from edgefleet.optimize.deltas import BaseArtifact, prepare_deltas
from edgefleet.protocol.wire.desired_state import Assignment, TargetHashes, TargetRef
from edgefleet.trust.events import ListSink
from edgefleet.trust.publish import build_targets, publish_to_repository, read_manifest
from edgefleet.trust.repository import target_storage_name
from edgefleet.trust.target_custom import is_delta_path

from .fleet import CLASS, NOW, Fleet, enrolled_device


@pytest.fixture
def site(fleet: Fleet, tmp_path: Path):
    """v1 published; v2 published with a delta from v1; the repository served as a control plane does."""
    rng = np.random.default_rng(0)
    v1_bytes = rng.bytes(64 * 1024)
    v2_bytes = v1_bytes[:-512] + rng.bytes(512)
    v1 = fleet.artifact(model_bytes=v1_bytes)
    publish_to_repository(fleet.repo, v1, fleet.release, now=NOW)
    v2 = fleet.artifact(version="2.0.0", release_counter=2, model_bytes=v2_bytes)
    m1, _ = read_manifest(v1)
    m2, _ = read_manifest(v2)
    deltas = prepare_deltas(v2, m2, [BaseArtifact(v1, m1)], tmp_path / "deltas")
    assert [d.path.rsplit("/", 1)[-1] for d in deltas] == ["model.onnx.efdelta"]
    release = build_targets(fleet.repo.targets(), v2, fleet.release, now=NOW, deltas=deltas)
    fleet.repo.accept_targets(release.targets_bytes, release.files, now=NOW)
    ddir, identity, mirror = enrolled_device(fleet, tmp_path)
    client = httpx.Client()
    yield fleet, ddir, identity, client, v1, v2
    client.close()
    mirror.close()


def _hold(ddir: DataDir, art: Path) -> Path:
    """Install ``art`` into the device's slot store (what a finished install leaves)."""
    manifest, _ = read_manifest(art)
    store = SlotStore(ddir.root, "default")
    staged = store.new_staging()
    for entry in manifest.files:
        shutil.copyfile(art / entry.path, staged / "files" / entry.path)
    key = store.install_staged(staged, manifest)
    return store.files_dir(key)


def _fetch(site, staging: Path, events: ListSink) -> tuple[TufArtifactFetcher, dict[str, Path]]:
    _fleet, ddir, identity, client, _v1, v2 = site
    fetcher = TufArtifactFetcher(
        ddir, identity, client=client, now=lambda: NOW, events=events, policy=DownloadPolicy(reserve_bytes=0)
    )
    raw = (v2 / "manifest.json").read_bytes()
    assignment = Assignment(
        artifact_id="art-2",
        manifest=TargetRef(
            path=f"digits/2.0.0/{CLASS}/manifest.json",
            length=len(raw),
            hashes=TargetHashes(sha256=hashlib.sha256(raw).hexdigest()),
        ),
    )
    return fetcher, fetcher.fetch(fetcher.resolve(assignment), staging)


def test_the_device_rebuilds_from_the_base_it_holds(site, tmp_path) -> None:
    _fleet, ddir, *_rest, v1, v2 = site
    _hold(ddir, v1)
    fetcher, files = _fetch(site, tmp_path / "staging", ListSink())
    assert files["model.onnx"].read_bytes() == (v2 / "model.onnx").read_bytes()
    report = fetcher.last_transfer
    assert report is not None
    assert report.delta_files == 1
    assert report.fallbacks == {}
    full = sum(p.stat().st_size for p in files.values())
    assert report.full_bytes == full
    assert report.bytes_downloaded < 0.2 * full  # golden.npz changed too but is tiny; model.onnx via delta


def _tamper_delta(fleet: Fleet) -> None:
    targets = fleet.repo.targets()
    assert targets is not None
    path, info = next((p, t) for p, t in targets.signed.targets.items() if is_delta_path(p))
    stored = fleet.repo.target_file_path(target_storage_name(path, info.hashes["sha256"]))
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))


def _corrupt_held_base(held: Path) -> None:
    model = held / "model.onnx"
    data = bytearray(model.read_bytes())
    data[0] ^= 0xFF
    model.chmod(0o644)
    model.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("no_base", "delta_base_missing"),
        ("tampered_delta", "hash_mismatch"),
        ("base_changed_on_disk", "delta_base_missing"),
    ],
)
def test_every_refusal_falls_back_to_the_full_file_and_is_reported(site, tmp_path, fault, reason) -> None:
    fleet, ddir, *_rest, v1, v2 = site
    if fault != "no_base":
        held = _hold(ddir, v1)
        if fault == "tampered_delta":
            _tamper_delta(fleet)
        else:
            _corrupt_held_base(held)
    events = ListSink()
    fetcher, files = _fetch(site, tmp_path / "staging", events)
    assert files["model.onnx"].read_bytes() == (v2 / "model.onnx").read_bytes()  # the signed file, whole
    report = fetcher.last_transfer
    assert report is not None
    assert report.fallbacks["model.onnx"] == reason
    assert report.delta_files == 0
    model_bytes = (v2 / "model.onnx").stat().st_size
    if fault == "no_base":
        assert report.bytes_downloaded == report.full_bytes
    else:  # golden.npz did not change: copied from the held version, not downloaded
        assert report.bytes_downloaded == model_bytes
    assert not list((tmp_path / "staging").glob(".*delta-partial")), "no half-written file left"
    if fault == "tampered_delta":
        assert "hash_mismatch" in events.codes  # a tampered mirror is a security event
