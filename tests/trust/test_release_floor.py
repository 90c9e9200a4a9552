"""Release floors signed by the release key into targets (``x-edgefleet-release-floors``): the publisher
raises them, the repository refuses malformed or lowered ones, and a device (``TufArtifactFetcher``
against a loopback TUF repository) refuses assignments below the signed floor with a security event."""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from tuf.api.metadata import Metadata, MetaFile, Targets

from edgefleet.agent.install.content import TufArtifactFetcher
from edgefleet.agent.install.download import DownloadPolicy
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.wire.desired_state import Assignment, TargetHashes, TargetRef
from edgefleet.trust.errors import BelowReleaseFloorError, TargetsRejectedError, TufMetadataRejectedError
from edgefleet.trust.events import ListSink
from edgefleet.trust.publish import build_targets, publish_to_repository, resign_targets
from edgefleet.trust.release_floor import (
    RELEASE_FLOORS_FIELD,
    raise_floors,
    release_floors_of,
)

from .fleet import CLASS, NOW, Fleet, enrolled_device

LINE = f"digits/{CLASS}"


def _publish(fleet: Fleet, version: str, counter: int, **floors: int) -> Path:
    art = fleet.artifact(version=version, release_counter=counter, model_bytes=version.encode() * 100)
    publish_to_repository(fleet.repo, art, fleet.release, now=NOW, release_floors=floors or None)
    return art


def _raise_floor(fleet: Fleet, floor: int) -> int:
    release = resign_targets(fleet.repo.targets(), fleet.release, now=NOW, release_floors={LINE: floor})
    return fleet.repo.accept_targets(release.targets_bytes, {}, now=NOW)


def _assignment(art: Path, version: str) -> Assignment:
    """What the director sends: the artifact's ``manifest.json`` named by TUF target."""
    raw = (art / "manifest.json").read_bytes()
    return Assignment(
        artifact_id=f"art-{version}",
        manifest=TargetRef(
            path=f"digits/{version}/{CLASS}/manifest.json",
            length=len(raw),
            hashes=TargetHashes(sha256=hashlib.sha256(raw).hexdigest()),
        ),
    )


def _install(fetcher: TufArtifactFetcher, art: Path, version: str, staging: Path) -> dict[str, Path]:
    """The installer's two calls: the manifest from TUF, then its files."""
    return fetcher.fetch(fetcher.resolve(_assignment(art, version)), staging)


# ---- pure rules ----------------------------------------------------------------------------------------


def test_floors_only_go_up() -> None:
    assert raise_floors({LINE: 2}, {LINE: 3, "other/x": 1}) == {LINE: 3, "other/x": 1}
    assert raise_floors({LINE: 2}, {LINE: 2}) == {LINE: 2}
    with pytest.raises(TargetsRejectedError) as info:
        raise_floors({LINE: 3}, {LINE: 2})
    assert info.value.code == "release_floor_lowered"
    assert info.value.details == {"expected": ">= 3", "got": 2}


@pytest.mark.parametrize(
    "raw",
    [[1], {"digits": 1}, {"Digits/x": 1}, {LINE: -1}, {LINE: True}, {LINE: "3"}, {LINE: 2**53}],
    ids=["list", "no-class", "bad-name", "negative", "bool", "string", "too-big"],
)
def test_malformed_signed_floors_are_refused(raw: object) -> None:
    targets = Targets(unrecognized_fields={RELEASE_FLOORS_FIELD: raw})
    with pytest.raises(InvalidDocumentError) as info:
        release_floors_of(targets)
    assert info.value.code == "invalid_release_floors"


# ---- publisher and repository --------------------------------------------------------------------------


def test_floor_is_signed_into_targets_and_carried_by_later_releases(fleet: Fleet) -> None:
    _publish(fleet, "1.0.0", 1)
    assert RELEASE_FLOORS_FIELD not in fleet.repo.targets().signed.unrecognized_fields
    _publish(fleet, "2.0.0", 2, **{LINE: 2})
    _publish(fleet, "3.0.0", 3)  # no floor given: the signed one is kept
    targets = fleet.repo.targets()
    assert release_floors_of(targets.signed) == {LINE: 2}
    # inside the signed part: the release key's signature covers it
    assert json.loads(targets.signed_bytes)[RELEASE_FLOORS_FIELD] == {LINE: 2}


def test_publisher_refuses_an_artifact_below_the_floor_and_a_lower_floor(fleet: Fleet) -> None:
    _publish(fleet, "1.0.0", 1)
    _raise_floor(fleet, 5)
    with pytest.raises(TargetsRejectedError) as info:
        build_targets(
            fleet.repo.targets(), fleet.artifact(version="2.0.0", release_counter=4), fleet.release, now=NOW
        )
    assert info.value.code == "below_release_floor"
    with pytest.raises(TargetsRejectedError) as info:
        resign_targets(fleet.repo.targets(), fleet.release, now=NOW, release_floors={LINE: 4})
    assert info.value.code == "release_floor_lowered"


def test_repository_refuses_lowered_or_malformed_floors(fleet: Fleet) -> None:
    _publish(fleet, "1.0.0", 1)
    _raise_floor(fleet, 3)
    for floors, code in (
        ({LINE: 1}, "release_floor_lowered"),
        ({}, "release_floor_lowered"),
        ({LINE: "x"}, "targets_rejected"),
    ):
        md = Metadata[Targets].from_bytes(fleet.repo.metadata_path("2.targets.json").read_bytes())
        md.signed.version = 3
        md.signed.expires = NOW + timedelta(days=30)
        md.signed.unrecognized_fields[RELEASE_FLOORS_FIELD] = floors
        md.sign(fleet.release)  # signed by the real release key: the repository still refuses
        with pytest.raises(TargetsRejectedError) as info:
            fleet.repo.accept_targets(md.to_bytes(), {}, now=NOW)
        assert info.value.code == code
    assert fleet.repo.targets_version() == 2


# ---- the device: TufArtifactFetcher against a loopback TUF repository -----------------------------------


@pytest.fixture
def device_site(fleet: Fleet, tmp_path: Path):
    """The repository served at ``<url>/tuf/`` (the control plane's layout) and an enrolled data dir."""
    ddir, identity, mirror = enrolled_device(fleet, tmp_path)
    client = httpx.Client()
    yield ddir, identity, client, mirror
    client.close()
    mirror.close()


def _fetcher(device_site, events: ListSink, release_floor: int = 0) -> TufArtifactFetcher:
    ddir, identity, client, _mirror = device_site
    return TufArtifactFetcher(
        ddir,
        identity,
        client=client,
        now=lambda: NOW,
        events=events,
        release_floor=release_floor,
        policy=DownloadPolicy(reserve_bytes=0),
    )


def test_device_refuses_an_assignment_below_the_signed_floor(fleet: Fleet, device_site, tmp_path) -> None:
    v1 = _publish(fleet, "1.0.0", 1)
    v2 = _publish(fleet, "2.0.0", 2)
    events = ListSink()
    # before the floor is raised, 1.0.0 installs
    files = _install(_fetcher(device_site, events), v1, "1.0.0", tmp_path / "staging-1")
    assert files["model.onnx"].read_bytes() == (v1 / "model.onnx").read_bytes()
    assert events.codes == []

    _raise_floor(fleet, 2)  # the release team revokes 1.0.0
    with pytest.raises(BelowReleaseFloorError) as info:
        _install(_fetcher(device_site, events), v1, "1.0.0", tmp_path / "staging-2")
    assert info.value.code == "below_release_floor"
    assert info.value.details["signed_floor"] == 2
    assert info.value.details["expected"] == ">= 2"
    assert events.codes == ["below_release_floor"]
    assert not (tmp_path / "staging-2").exists(), "nothing staged"

    # at the floor: accepted
    files = _install(_fetcher(device_site, events), v2, "2.0.0", tmp_path / "staging-3")
    assert files["model.onnx"].read_bytes() == (v2 / "model.onnx").read_bytes()
    assert events.codes == ["below_release_floor"]


def test_the_local_floor_is_an_extra_minimum(fleet: Fleet, device_site, tmp_path) -> None:
    v1 = _publish(fleet, "1.0.0", 1, **{LINE: 1})
    events = ListSink()
    with pytest.raises(BelowReleaseFloorError) as info:
        _install(_fetcher(device_site, events, release_floor=2), v1, "1.0.0", tmp_path / "s")
    assert info.value.details["local_floor"] == 2
    assert info.value.details["signed_floor"] == 1
    assert events.codes == ["below_release_floor"]


def test_fetcher_sweeps_partials_of_an_assignment_that_changed(fleet: Fleet, device_site, tmp_path) -> None:
    v1 = _publish(fleet, "1.0.0", 1)
    v2 = _publish(fleet, "2.0.0", 2)
    ddir = device_site[0]
    downloads = ddir.root / "downloads"
    downloads.mkdir(parents=True)
    stale = DownloadPolicy().stale_partial_s + 60
    v1_model = hashlib.sha256((v1 / "model.onnx").read_bytes()).hexdigest()
    old = downloads / f"{v1_model}.partial"  # 1.0.0 was being downloaded
    old.write_bytes(b"o" * 100)
    os.utime(old, (time.time() - stale, time.time() - stale))
    fetcher = _fetcher(device_site, ListSink())
    current = fetcher.resolve(_assignment(v2, "2.0.0"))
    golden = next(f for f in current.manifest.files if f.path == "golden.npz")
    resumed = downloads / f"{golden.sha256}.partial"  # this artifact's own partial: resumed, not swept
    resumed.write_bytes((v2 / "golden.npz").read_bytes()[:4])
    os.utime(resumed, (time.time() - stale, time.time() - stale))

    files = fetcher.fetch(current, tmp_path / "staging")
    assert files["golden.npz"].read_bytes() == (v2 / "golden.npz").read_bytes()
    assert not old.exists()
    assert sorted(p.name for p in downloads.iterdir()) == []
    mirror = device_site[3]
    assert [r for _path, r in mirror.requests if r] == ["bytes=4-"], "golden.npz resumed from its partial"


def test_malformed_signed_floors_fail_closed_on_the_device(fleet: Fleet, device_site, tmp_path) -> None:
    v1 = _publish(fleet, "1.0.0", 1)
    # signed by the release key but malformed (the repository would refuse it; written behind its back)
    md = Metadata[Targets].from_bytes(fleet.repo.metadata_path("1.targets.json").read_bytes())
    md.signed.version = 2
    md.signed.unrecognized_fields[RELEASE_FLOORS_FIELD] = {LINE: "high"}
    md.sign(fleet.release)
    raw = md.to_bytes()
    fleet.repo.metadata_path("2.targets.json").write_bytes(raw)
    with fleet.repo._locked():
        fleet.repo._write_snapshot_and_timestamp(
            NOW, targets_meta=MetaFile(2, len(raw), {"sha256": hashlib.sha256(raw).hexdigest()})
        )
    events = ListSink()
    with pytest.raises(TufMetadataRejectedError) as info:
        _install(_fetcher(device_site, events), v1, "1.0.0", tmp_path / "staging")
    assert info.value.details["reason"] == "invalid_release_floors"
    assert events.codes == ["tuf_metadata_rejected"]
