"""Image repository checks on upload, online re-signing, director cross-check, keys, transfer limits."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import Delegations, Metadata, Root, TargetFile, Targets

from edgefleet.trust.errors import (
    BelowReleaseFloorError,
    HashMismatchError,
    KeyFileError,
    TargetNotInTufError,
    TargetsRejectedError,
    WrongHardwareClassError,
)
from edgefleet.trust.fetch import TransferLimits, transfer_verdict
from edgefleet.trust.keys import load_root_signers, load_signer
from edgefleet.trust.publish import build_targets, publish_to_repository
from edgefleet.trust.repository import ImageRepository, refresh_due
from edgefleet.trust.verify import check_assignment

from .fleet import CLASS, NOW, Fleet

MODEL = "digits/1.0.0/medical-cart-cpu/model.onnx"


@dataclass
class Assigned:
    target_path: str
    sha256: str
    length: int


def _release(fleet: Fleet, signer=None, **kw):
    return build_targets(fleet.repo.targets(), fleet.artifact(**kw), signer or fleet.release, now=NOW)


# ---- repository: what an upload must satisfy ------------------------------------------------------------


def test_accepts_release_and_serves_content_addressed_files(fleet: Fleet) -> None:
    release = _release(fleet)
    assert fleet.repo.accept_targets(release.targets_bytes, release.files, now=NOW) == 1
    info = fleet.repo.targets().signed.targets[MODEL]
    stored = fleet.repo.target_file_path(f"digits/1.0.0/medical-cart-cpu/{info.hashes['sha256']}.model.onnx")
    assert stored.read_bytes() == release.files[MODEL].read_bytes()
    assert fleet.repo.metadata_path("1.targets.json").read_bytes() == release.targets_bytes
    with pytest.raises(FileNotFoundError):
        fleet.repo.metadata_path("../keys/release.key")


@pytest.mark.parametrize("who", ["director", "snapshot", "timestamp"])
def test_targets_signed_by_another_key_are_rejected(fleet: Fleet, who: str) -> None:
    release = _release(fleet, signer=load_signer(fleet.keys / f"{who}.key"))
    with pytest.raises(TargetsRejectedError, match="threshold"):
        fleet.repo.accept_targets(release.targets_bytes, release.files, now=NOW)
    assert fleet.repo.targets() is None


def test_version_must_increase(fleet: Fleet) -> None:
    first = _release(fleet)
    fleet.repo.accept_targets(first.targets_bytes, first.files, now=NOW)
    with pytest.raises(TargetsRejectedError) as info:
        fleet.repo.accept_targets(first.targets_bytes, first.files, now=NOW)
    assert info.value.details["expected"] == "> 1"


def test_uploaded_file_must_match_signed_hash(fleet: Fleet, tmp_path: Path) -> None:
    release = _release(fleet)
    evil = tmp_path / "evil.onnx"
    evil.write_bytes(b"not the signed model")
    files = {**release.files, MODEL: evil}
    with pytest.raises(TargetsRejectedError, match="does not match"):
        fleet.repo.accept_targets(release.targets_bytes, files, now=NOW)
    assert not any(fleet.repo.targets_dir.rglob("*.model.onnx"))


def test_missing_file_and_expired_targets_are_rejected(fleet: Fleet) -> None:
    release = _release(fleet)
    files = dict(release.files)
    del files[MODEL]
    with pytest.raises(TargetsRejectedError, match="missing"):
        fleet.repo.accept_targets(release.targets_bytes, files, now=NOW)
    with pytest.raises(TargetsRejectedError, match="expired"):
        fleet.repo.accept_targets(release.targets_bytes, release.files, now=NOW + timedelta(days=400))


def _signed_targets(fleet: Fleet, targets: Targets, signer=None) -> bytes:
    md = Metadata(targets)
    md.sign(signer or fleet.release)
    return md.to_bytes()


def test_release_key_cannot_sign_outside_its_scope(fleet: Fleet) -> None:
    """No delegations, and each target's path must sit under its signed model/version/class."""
    release = _release(fleet)
    md = Metadata[Targets].from_bytes(release.targets_bytes)
    info = md.signed.targets.pop(MODEL)
    moved = TargetFile(
        info.length, info.hashes, "other/9.9.9/factory-gateway-gpu/model.onnx", info.unrecognized_fields
    )
    md.signed.targets[moved.path] = moved
    with pytest.raises(TargetsRejectedError, match="does not match its signed"):
        fleet.repo.accept_targets(
            _signed_targets(fleet, md.signed), {**release.files, moved.path: release.files[MODEL]}, now=NOW
        )
    delegating = Metadata[Targets].from_bytes(release.targets_bytes).signed
    delegating.delegations = Delegations(keys={}, roles={})
    with pytest.raises(TargetsRejectedError, match="delegations"):
        fleet.repo.accept_targets(_signed_targets(fleet, delegating), release.files, now=NOW)


def test_one_key_listed_twice_does_not_meet_a_threshold_of_two(fleet: Fleet) -> None:
    """A root listing the same public key under two key ids: the repository counts distinct keys."""
    root_md = Metadata[Root].from_bytes(fleet.keyset.root_bytes)
    root = root_md.signed
    pub = fleet.release.public_key
    twin = SSlibKey("f" * 64, pub.keytype, pub.scheme, pub.keyval)
    root.add_key(twin, "targets")
    root.roles["targets"].threshold = 2
    root.version = 2
    for signer in load_root_signers(fleet.keys):
        root_md.sign(signer, append=True)
    fleet.repo.install_root(root_md.to_bytes(), now=NOW)
    release = _release(fleet)
    md = Metadata[Targets].from_bytes(release.targets_bytes)
    md.sign(CryptoSigner(fleet.release._private_key, twin), append=True)
    assert len(md.signatures) == 2
    with pytest.raises(TargetsRejectedError, match="distinct"):
        fleet.repo.accept_targets(md.to_bytes(), release.files, now=NOW)


def test_release_counter_must_increase_per_model_and_class(fleet: Fleet) -> None:
    publish_to_repository(fleet.repo, fleet.artifact(release_counter=5), fleet.release, now=NOW)
    with pytest.raises(TargetsRejectedError, match="release counter"):
        publish_to_repository(
            fleet.repo, fleet.artifact(version="1.1.0", release_counter=5), fleet.release, now=NOW
        )


def test_root_must_chain(fleet: Fleet) -> None:
    root_md = Metadata[Root].from_bytes(fleet.keyset.root_bytes)
    root_md.signed.version = 2
    root_md.sign(fleet.release)
    with pytest.raises(TargetsRejectedError, match="threshold"):
        fleet.repo.install_root(root_md.to_bytes(), now=NOW)


# ---- online re-signing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "due"), [(timedelta(hours=23), False), (timedelta(hours=12), False), (timedelta(hours=11), True)]
)
def test_refresh_due_table(left: timedelta, due: bool) -> None:
    assert refresh_due(NOW, NOW + left, timedelta(hours=12)) is due


def test_timestamp_is_resigned_before_it_expires_and_devices_accept_it(fleet: Fleet) -> None:
    publish_to_repository(fleet.repo, fleet.artifact(), fleet.release, now=NOW)
    before = fleet.repo.timestamp().signed
    assert fleet.repo.maybe_refresh_timestamp(NOW + timedelta(hours=1)) is False
    later = NOW + timedelta(hours=20)
    assert fleet.repo.maybe_refresh_timestamp(later) is True
    after = fleet.repo.timestamp().signed
    assert after.version == before.version + 1
    assert after.expires > before.expires
    fleet.device().refresh(later + timedelta(hours=6))  # past the old timestamp's expiry
    # snapshot re-signed too when it nears its own expiry
    snap_version = fleet.repo.snapshot().signed.version
    assert fleet.repo.maybe_refresh_timestamp(NOW + timedelta(days=5)) is True
    assert fleet.repo.snapshot().signed.version == snap_version + 1


def test_repository_create_refuses_existing(fleet: Fleet) -> None:
    with pytest.raises(TargetsRejectedError):
        ImageRepository.create(fleet.repo.directory, fleet.keyset.root_bytes, fleet.signers, now=NOW)


# ---- director assignment cross-check ------------------------------------------------------------------


@pytest.fixture
def signed_info(fleet: Fleet) -> TargetFile:
    publish_to_repository(fleet.repo, fleet.artifact(release_counter=7), fleet.release, now=NOW)
    return fleet.repo.targets().signed.targets[MODEL]


def _assigned(info: TargetFile, **over) -> Assigned:
    base = {"target_path": info.path, "sha256": info.hashes["sha256"], "length": info.length}
    return Assigned(**{**base, **over})


def test_assignment_matching_signed_target_is_accepted(signed_info: TargetFile) -> None:
    verified = check_assignment(signed_info, _assigned(signed_info), CLASS, 7)
    assert (verified.model, verified.version, verified.release_counter) == ("digits", "1.0.0", 7)


@pytest.mark.parametrize(
    ("over", "hw", "floor", "error"),
    [
        ({"sha256": "0" * 64}, CLASS, 0, HashMismatchError),
        ({"length": 1}, CLASS, 0, HashMismatchError),
        ({"target_path": "digits/6.6.6/medical-cart-cpu/model.onnx"}, CLASS, 0, TargetNotInTufError),
        ({}, "factory-gateway-gpu", 0, WrongHardwareClassError),
        ({}, CLASS, 8, BelowReleaseFloorError),
    ],
)
def test_assignment_rejections(signed_info: TargetFile, over, hw, floor, error) -> None:
    with pytest.raises(error):
        check_assignment(signed_info, _assigned(signed_info, **over), hw, floor)


def test_assignment_absent_from_tuf_via_device_records_event(fleet: Fleet, signed_info: TargetFile) -> None:
    device = fleet.device()
    device.refresh(NOW)
    ok = device.verify_assignment(_assigned(signed_info), hardware_class=CLASS, release_floor=0, now=NOW)
    assert ok.sha256 == signed_info.hashes["sha256"]
    absent = _assigned(signed_info, target_path="digits/1.0.0/medical-cart-cpu/unsigned.onnx")
    with pytest.raises(TargetNotInTufError):
        device.verify_assignment(absent, hardware_class=CLASS, release_floor=0, now=NOW)
    with pytest.raises(WrongHardwareClassError):
        device.verify_assignment(
            _assigned(signed_info), hardware_class="factory-gateway-gpu", release_floor=0, now=NOW
        )
    assert fleet.events.codes == ["target_not_in_tuf", "wrong_hardware_class"]


def test_end_to_end_verified_download(fleet: Fleet, signed_info: TargetFile) -> None:
    import httpx

    from edgefleet.agent.install.download import Downloader, DownloadPolicy

    device = fleet.device()
    target = device.verify_assignment(_assigned(signed_info), hardware_class=CLASS, release_floor=0, now=NOW)
    with httpx.Client() as client:
        path = Downloader(fleet.tmp / "staging", client, DownloadPolicy(reserve_bytes=0)).fetch(
            device.url_for(target), sha256=target.sha256, length=target.length
        )
    assert path.stat().st_size == target.length


# ---- keys and limits ----------------------------------------------------------------------------------


def test_private_keys_are_0600_and_loading_refuses_looser_modes(fleet: Fleet) -> None:
    for key in fleet.keys.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    key = fleet.keys / "director.key"
    os.chmod(key, 0o644)
    with pytest.raises(KeyFileError) as info:
        load_signer(key)
    assert info.value.details["expected"] == "mode 0600"


@pytest.mark.parametrize(
    ("received", "elapsed", "code"),
    [
        (100, 1.0, None),
        (2_000, 1.0, "download_too_large"),
        (100, 11.0, "download_too_slow"),  # past the deadline
        (10, 3.0, "download_too_slow"),  # under the throughput floor after the grace period
        (10, 1.5, None),  # slow but still within grace
    ],
)
def test_transfer_verdict_table(received: int, elapsed: float, code: str | None) -> None:
    limits = TransferLimits(max_bytes=1_000, deadline_s=10, min_bytes_per_s=50, grace_s=2)
    verdict = transfer_verdict(received, elapsed, limits)
    assert (verdict.code if verdict else None) == code
