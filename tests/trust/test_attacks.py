"""Attacks on metadata, against a real mirror on loopback: each is rejected with a stable code, the
device's trusted metadata is unchanged, and a security event is recorded."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Timestamp

from edgefleet.trust.errors import TufMetadataRejectedError
from edgefleet.trust.keys import load_root_signers, load_signer, rotate_role_key, rotate_root_keys
from edgefleet.trust.publish import publish_to_repository
from edgefleet.trust.repository import OnlineSigners

from .fleet import NOW, Fleet

MODEL = "digits/1.0.0/medical-cart-cpu/model.onnx"


def _published(fleet: Fleet) -> None:
    publish_to_repository(fleet.repo, fleet.artifact(), fleet.release, now=NOW)


def _trusted(fleet: Fleet, name: str = "device") -> dict[str, bytes]:
    meta = fleet.tmp / name / "metadata"
    return {p.name: p.read_bytes() for p in meta.iterdir() if p.is_file()}


def _write_timestamp(fleet: Fleet, *, version: int, snapshot_version: int, signer=None, expires=None) -> None:
    md = Metadata(
        Timestamp(
            version=version,
            expires=expires or NOW + timedelta(days=1),
            snapshot_meta=MetaFile(snapshot_version),
        )
    )
    md.sign(signer or fleet.signers.timestamp)
    (fleet.repo.metadata_dir / "timestamp.json").write_bytes(md.to_bytes())


def _rejected(fleet: Fleet, device, *, now=NOW, reason: str | None = None) -> TufMetadataRejectedError:
    with pytest.raises(TufMetadataRejectedError) as info:
        device.refresh(now)
    assert info.value.code == "tuf_metadata_rejected"
    if reason is not None:
        assert info.value.details["reason"] == reason
    assert fleet.events.codes[-1] == "tuf_metadata_rejected"
    return info.value


@pytest.fixture
def primed(fleet: Fleet) -> Fleet:
    """One artifact published; the device has refreshed once and trusts that state."""
    _published(fleet)
    fleet.device().refresh(NOW)
    assert fleet.events.codes == []
    return fleet


def test_happy_path_finds_signed_target(primed: Fleet) -> None:
    device = primed.device()
    device.refresh(NOW)
    info = device.target_info(MODEL, NOW)
    assert info is not None
    assert info.custom["edgefleet"]["hardware_class"] == "medical-cart-cpu"
    assert primed.events.codes == []


def test_replayed_older_timestamp_is_rejected(primed: Fleet) -> None:
    old = (primed.repo.metadata_dir / "timestamp.json").read_bytes()
    _published_v2(primed)
    primed.device().refresh(NOW)
    before = _trusted(primed)
    (primed.repo.metadata_dir / "timestamp.json").write_bytes(old)
    _rejected(primed, primed.device(), reason="BadVersionNumberError")
    assert _trusted(primed) == before


def _published_v2(fleet: Fleet) -> None:
    publish_to_repository(
        fleet.repo, fleet.artifact(version="1.1.0", release_counter=2), fleet.release, now=NOW
    )


def test_replayed_older_snapshot_is_rejected(primed: Fleet) -> None:
    _published_v2(primed)
    primed.device().refresh(NOW)
    ts = primed.repo.timestamp().signed
    # a freshly signed timestamp (compromised timestamp key) pointing at the previous snapshot
    _write_timestamp(primed, version=ts.version + 1, snapshot_version=ts.snapshot_meta.version - 1)
    _rejected(primed, primed.device(), reason="BadVersionNumberError")


def test_replayed_older_targets_is_rejected(primed: Fleet) -> None:
    _published_v2(primed)
    primed.device().refresh(NOW)
    snap = primed.repo.snapshot()
    # compromised online keys: a new snapshot that lists the old targets version again
    snap.signed.version += 1
    snap.signed.meta["targets.json"] = MetaFile(version=1)
    snap.sign(primed.signers.snapshot)
    (primed.repo.metadata_dir / f"{snap.signed.version}.snapshot.json").write_bytes(snap.to_bytes())
    _write_timestamp(
        primed, version=primed.repo.timestamp().signed.version + 1, snapshot_version=snap.signed.version
    )
    _rejected(primed, primed.device(), reason="BadVersionNumberError")


def test_expired_metadata_freeze_is_rejected(primed: Fleet) -> None:
    before = _trusted(primed)
    _rejected(primed, primed.device(), now=NOW + timedelta(days=2), reason="ExpiredMetadataError")
    assert _trusted(primed) == before


def test_timestamp_signed_by_unknown_key_is_rejected(primed: Fleet) -> None:
    ts = primed.repo.timestamp().signed
    _write_timestamp(
        primed,
        version=ts.version + 1,
        snapshot_version=ts.snapshot_meta.version,
        signer=CryptoSigner.generate_ed25519(),
    )
    _rejected(primed, primed.device(), reason="UnsignedMetadataError")


def test_release_key_signing_timestamp_is_outside_its_delegation(primed: Fleet) -> None:
    ts = primed.repo.timestamp().signed
    _write_timestamp(
        primed, version=ts.version + 1, snapshot_version=ts.snapshot_meta.version, signer=primed.release
    )
    _rejected(primed, primed.device(), reason="UnsignedMetadataError")


def test_release_key_signing_a_new_root_is_rejected(primed: Fleet) -> None:
    root = Metadata[Root].from_bytes(primed.keyset.root_bytes)
    root.signed.version = 2
    root.signed.add_key(primed.release.public_key, "timestamp")
    root.sign(primed.release)
    (primed.repo.metadata_dir / "2.root.json").write_bytes(root.to_bytes())
    _rejected(primed, primed.device(), reason="UnsignedMetadataError")


def test_duplicated_signature_is_not_counted_twice(primed: Fleet) -> None:
    ts = primed.repo.timestamp().signed
    _write_timestamp(primed, version=ts.version + 1, snapshot_version=ts.snapshot_meta.version)
    path = primed.repo.metadata_dir / "timestamp.json"
    doc = json.loads(path.read_bytes())
    doc["signatures"] = doc["signatures"] * 2
    path.write_bytes(json.dumps(doc).encode())
    _rejected(primed, primed.device())


def test_mix_and_match_targets_version_is_rejected(primed: Fleet) -> None:
    _published_v2(primed)
    # the mirror serves version 1's (validly signed) targets under version 2's name
    v1 = (primed.repo.metadata_dir / "1.targets.json").read_bytes()
    (primed.repo.metadata_dir / "2.targets.json").write_bytes(v1)
    _rejected(primed, primed.device())


def test_oversized_timestamp_is_rejected(primed: Fleet) -> None:
    path = primed.repo.metadata_dir / "timestamp.json"
    doc = json.loads(path.read_bytes())
    doc["signed"]["padding"] = "x" * 100_000
    path.write_bytes(json.dumps(doc).encode())
    _rejected(primed, primed.device(), reason="oversized")


def test_oversized_snapshot_is_cut_at_its_signed_length(primed: Fleet) -> None:
    version = primed.repo.timestamp().signed.snapshot_meta.version
    path = primed.repo.metadata_dir / f"{version}.snapshot.json"
    path.write_bytes(path.read_bytes() + b" " * 10_000)
    primed.tmp.joinpath("fresh").mkdir()
    _rejected(primed, primed.device("fresh"), reason="oversized")


def test_below_threshold_root_is_rejected(tmp_path: Path, mirror_factory) -> None:
    fleet = Fleet(tmp_path, mirror_factory, root_threshold=2, root_keys=3)
    keys, keyset, repo = fleet.keys, fleet.keyset, fleet.repo
    _published(fleet)
    fleet.device().refresh(NOW)
    root = Metadata[Root].from_bytes(keyset.root_bytes)
    root.signed.version = 2
    root.signed.expires = NOW + timedelta(days=30)
    root.sign(load_root_signers(keys)[0])  # one of three, threshold two
    (repo.metadata_dir / "2.root.json").write_bytes(root.to_bytes())
    _rejected(fleet, fleet.device(), reason="UnsignedMetadataError")
    # signed by two of three, it is accepted
    root.sign(load_root_signers(keys)[1], append=True)
    (repo.metadata_dir / "2.root.json").write_bytes(root.to_bytes())
    device = fleet.device()
    device.refresh(NOW)
    assert device.root_version() == 2
    fleet.client.close()


def test_legitimate_root_and_key_rotations_are_followed(primed: Fleet) -> None:
    # online timestamp key rotation: root v2; the server switches to the new key
    root2 = rotate_role_key(primed.keys, "timestamp", now=NOW)
    primed.repo._signers = OnlineSigners(primed.signers.snapshot, load_signer(primed.keys / "timestamp.key"))
    primed.repo.install_root(root2, now=NOW)
    # root key rotation 1-of-1 -> 2-of-3: root v3 signed by the old and the new keys
    root3 = rotate_root_keys(primed.keys, now=NOW, threshold=2, count=3)
    primed.repo.install_root(root3, now=NOW)
    # release key rotation: root v4, then the publisher re-signs targets with the new key
    root4 = rotate_role_key(primed.keys, "release", now=NOW)
    primed.repo.install_root(root4, now=NOW)
    publish_to_repository(
        primed.repo,
        primed.artifact(version="2.0.0", release_counter=3),
        load_signer(primed.keys / "release.key"),
        now=NOW,
    )
    device = primed.device()  # bootstrapped with root v1 from enrollment
    device.refresh(NOW)
    assert device.root_version() == 4
    assert device.target_info("digits/2.0.0/medical-cart-cpu/model.onnx", NOW) is not None
    assert primed.events.codes == []
    assert (primed.tmp / "device" / "metadata" / "root.json").read_bytes() == root4
    assert not (primed.tmp / "device" / "metadata" / "root.json").is_symlink()


def test_snapshot_listing_changed_snapshot_hash_is_rejected(primed: Fleet) -> None:
    _published_v2(primed)
    version = primed.repo.timestamp().signed.snapshot_meta.version
    path = primed.repo.metadata_dir / f"{version}.snapshot.json"
    md = Metadata[Snapshot].from_bytes(path.read_bytes())
    md.signed.expires = NOW + timedelta(days=6)  # same version, different bytes, validly signed
    md.sign(primed.signers.snapshot)
    data = md.to_bytes()
    path.write_bytes(data)
    _rejected(primed, primed.device())
