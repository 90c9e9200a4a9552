"""The publisher verifies the targets it builds on: ``edgefleet publish`` refuses, and signs nothing, when the
repository's current targets were not signed by the release key, were rolled back, or forked; a release-key
rotation is followed through the publisher's own root chain."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, TargetFile, Targets

from edgefleet.cli.main import cli
from edgefleet.trust.errors import UntrustedTargetsError
from edgefleet.trust.keys import load_signer, rotate_role_key
from edgefleet.trust.publish import build_targets
from edgefleet.trust.publisher_trust import (
    LAST_TARGETS_NAME,
    PublisherTrust,
    check_base_targets,
    load_publisher_trust,
)
from edgefleet.trust.target_custom import TargetCustom

from .fleet import CLASS, NOW, Fleet

EVIL = "digits/6.6.6/medical-cart-cpu/model.onnx"


def _tampered(raw: bytes, signer: CryptoSigner | None) -> bytes:
    """The control plane's own entry added to signed targets, re-signed by ``signer`` (or unsigned)."""
    md = Metadata[Targets].from_bytes(raw)
    custom = TargetCustom(
        model="digits",
        version="6.6.6",
        hardware_class=CLASS,
        release_counter=666,
        runtime="onnxruntime",
        manifest_sha256="e" * 64,
    ).to_custom()
    md.signed.targets[EVIL] = TargetFile(
        length=4, hashes={"sha256": hashlib.sha256(b"evil").hexdigest()}, path=EVIL,
        unrecognized_fields={"custom": custom},
    )  # fmt: skip
    md.signatures.clear()
    if signer is not None:
        md.sign(signer)
    return md.to_bytes()


def _trust(fleet: Fleet, kept: bytes | None = None) -> PublisherTrust:
    path = fleet.tmp / "kept.json"
    path.unlink(missing_ok=True)
    if kept is not None:
        path.write_bytes(kept)
    return load_publisher_trust(
        trusted_root=fleet.keys / "root.json",
        release_public_key=fleet.release.public_key,
        last_published=path,
    )


def _signed(fleet: Fleet, previous: Metadata[Targets] | None, signer=None, **kw) -> bytes:
    art = fleet.artifact(**kw)
    return build_targets(previous, art, signer or fleet.release, now=NOW).targets_bytes


# ---- the pure check -------------------------------------------------------------------------------------


def test_targets_signed_by_the_release_key_are_built_on(fleet: Fleet) -> None:
    v1 = _signed(fleet, None)
    assert check_base_targets(None, _trust(fleet), where="x") is None
    assert check_base_targets(v1, _trust(fleet), where="x").signed.version == 1
    assert check_base_targets(v1, _trust(fleet, kept=v1), where="x").signed.version == 1
    v2 = _signed(fleet, Metadata.from_bytes(v1), version="2.0.0", release_counter=2)
    # someone else of the release team published v2: newer than the kept copy, properly signed
    assert check_base_targets(v2, _trust(fleet, kept=v1), where="x").signed.version == 2


@pytest.mark.parametrize("who", ["stranger", "director", "snapshot", "unsigned"])
def test_targets_not_signed_by_the_release_key_are_refused(fleet: Fleet, who: str) -> None:
    v1 = _signed(fleet, None)
    signer = {
        "stranger": CryptoSigner.generate_ed25519(),
        "director": load_signer(fleet.keys / "director.key"),
        "snapshot": fleet.signers.snapshot,
        "unsigned": None,
    }[who]
    with pytest.raises(UntrustedTargetsError) as info:
        check_base_targets(_tampered(v1, signer), _trust(fleet, kept=v1), where="the server")
    assert info.value.code == "targets_not_signed_by_release_key"


def test_a_valid_signature_over_other_bytes_is_refused(fleet: Fleet) -> None:
    v1 = Metadata[Targets].from_bytes(_signed(fleet, None))
    v1.signed.targets.pop(next(iter(v1.signed.targets)))  # the release key's signature kept, content changed
    with pytest.raises(UntrustedTargetsError) as info:
        check_base_targets(v1.to_bytes(), _trust(fleet), where="the server")
    assert info.value.code == "targets_not_signed_by_release_key"


def test_garbage_is_refused(fleet: Fleet) -> None:
    with pytest.raises(UntrustedTargetsError) as info:
        check_base_targets(b'{"signed": 1}', _trust(fleet), where="the server")
    assert info.value.code == "targets_not_signed_by_release_key"


def test_rollback_and_fork_against_the_kept_copy_are_refused(fleet: Fleet) -> None:
    v1 = _signed(fleet, None)
    v2 = _signed(fleet, Metadata.from_bytes(v1), version="2.0.0", release_counter=2)
    with pytest.raises(UntrustedTargetsError) as info:
        check_base_targets(v1, _trust(fleet, kept=v2), where="the server")
    assert (info.value.code, info.value.details["expected"], info.value.details["got"]) == (
        "targets_rollback",
        ">= 2",
        1,
    )
    with pytest.raises(UntrustedTargetsError) as info:
        check_base_targets(None, _trust(fleet, kept=v2), where="the server")
    assert info.value.code == "targets_rollback"
    other_v2 = _signed(fleet, Metadata.from_bytes(v1), version="2.0.1", release_counter=3)
    with pytest.raises(UntrustedTargetsError) as info:
        check_base_targets(other_v2, _trust(fleet, kept=v2), where="the server")
    assert info.value.code == "targets_fork"


def test_targets_of_a_retired_release_key_only_when_they_are_the_kept_copy(fleet: Fleet) -> None:
    old = _signed(fleet, None)
    rotate_role_key(fleet.keys, "release", now=NOW)  # root v2 names a new release key
    trust = _trust(fleet)
    assert [r.version for r in trust.retired] == [1]
    with pytest.raises(UntrustedTargetsError) as info:
        check_base_targets(old, trust, where="the server")
    assert info.value.code == "targets_signed_by_retired_key"
    assert check_base_targets(old, _trust(fleet, kept=old), where="the server").signed.version == 1
    # a forgery with the retired key is not the kept copy
    forged = _tampered(old, fleet.release)  # fleet.release is the old key object
    with pytest.raises(UntrustedTargetsError) as info:
        check_base_targets(forged, _trust(fleet, kept=old), where="the server")
    assert info.value.code == "targets_signed_by_retired_key"


def test_without_a_root_the_release_key_itself_is_trusted(fleet: Fleet) -> None:
    v1 = _signed(fleet, None)
    trust = load_publisher_trust(
        trusted_root=None, release_public_key=fleet.release.public_key, last_published=fleet.tmp / "none"
    )
    assert check_base_targets(v1, trust, where="x").signed.version == 1
    with pytest.raises(UntrustedTargetsError):
        check_base_targets(_tampered(v1, CryptoSigner.generate_ed25519()), trust, where="x")


# ---- the command, on a repository directory whose current targets were tampered with -------------------


def _publish(fleet: Fleet, *args: str):
    common = ["--release-key", str(fleet.keys / "release.key"), "--repo", str(fleet.repo.directory)]
    return CliRunner().invoke(cli, ["publish", *args, *common, "--online-keys", str(fleet.keys)])


def _ok(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def _signed_files(fleet: Fleet) -> list[str]:
    return sorted(p.name for p in fleet.repo.metadata_dir.glob("*.targets.json"))


def test_publish_refuses_tampered_targets_and_signs_nothing(fleet: Fleet) -> None:
    assert "version 1" in _ok(_publish(fleet, str(fleet.artifact())))
    kept = (fleet.keys / LAST_TARGETS_NAME).read_bytes()
    current = fleet.repo.metadata_path("1.targets.json")
    assert current.read_bytes() == kept
    current.write_bytes(_tampered(kept, CryptoSigner.generate_ed25519()))  # the server's own entry

    result = _publish(fleet, str(fleet.artifact(version="2.0.0", release_counter=2)))
    assert result.exit_code == 1
    assert "targets_not_signed_by_release_key" in result.output
    assert "--from-targets" in result.output  # how to recover
    assert _signed_files(fleet) == ["1.targets.json"], "nothing signed or uploaded"
    assert (fleet.keys / LAST_TARGETS_NAME).read_bytes() == kept
    assert _publish(fleet, "--resign").exit_code == 1

    # recovery: build on the copy the publisher kept; the forged entry is not carried over
    out = _ok(_publish(fleet, str(fleet.artifact(version="2.0.0", release_counter=2)), "--from-targets",
                       str(fleet.keys / LAST_TARGETS_NAME)))  # fmt: skip
    assert "version 2" in out
    targets = fleet.repo.targets().signed.targets
    assert EVIL not in targets
    assert "digits/2.0.0/medical-cart-cpu/model.onnx" in targets


def test_publish_refuses_a_rolled_back_repository(fleet: Fleet) -> None:
    _ok(_publish(fleet, str(fleet.artifact())))
    _ok(_publish(fleet, str(fleet.artifact(version="2.0.0", release_counter=2))))
    # the server goes back to targets v1 (validly signed, but it lacks 2.0.0)
    v1 = fleet.repo.metadata_path("1.targets.json").read_bytes()
    with fleet.repo._locked():
        fleet.repo._write_snapshot_and_timestamp(
            NOW, targets_meta=MetaFile(1, len(v1), {"sha256": hashlib.sha256(v1).hexdigest()})
        )
    assert fleet.repo.targets_version() == 1
    result = _publish(fleet, str(fleet.artifact(version="3.0.0", release_counter=3)))
    assert result.exit_code == 1
    assert "targets_rollback" in result.output
    assert _signed_files(fleet) == ["1.targets.json", "2.targets.json"]
    # recovery from the kept v2: the new version is above everything seen
    out = _ok(_publish(fleet, "--resign", "--from-targets", str(fleet.keys / LAST_TARGETS_NAME)))
    assert "version 3" in out
    assert "digits/2.0.0/medical-cart-cpu/model.onnx" in fleet.repo.targets().signed.targets


def test_release_key_rotation_then_resign(fleet: Fleet) -> None:
    _ok(_publish(fleet, str(fleet.artifact())))
    rotate_role_key(fleet.keys, "release", now=NOW)
    fleet.repo.install_root((fleet.keys / "2.root.json").read_bytes(), now=NOW)
    # the targets are still signed by the retired key, and they are the copy this publisher kept: re-signed
    assert "version 2" in _ok(_publish(fleet, "--resign"))
    # from now on the current targets carry the new key's signature
    _ok(_publish(fleet, str(fleet.artifact(version="2.0.0", release_counter=2))))
    assert fleet.repo.targets_version() == 3


def test_a_publisher_without_the_kept_copy_after_a_rotation_must_decide(fleet: Fleet) -> None:
    _ok(_publish(fleet, str(fleet.artifact())))
    rotate_role_key(fleet.keys, "release", now=NOW)
    fleet.repo.install_root((fleet.keys / "2.root.json").read_bytes(), now=NOW)
    (fleet.keys / LAST_TARGETS_NAME).unlink()
    result = _publish(fleet, "--resign")
    assert result.exit_code == 1
    assert "targets_signed_by_retired_key" in result.output
    # the operator reviewed the server's copy and builds on it explicitly
    reviewed = fleet.tmp / "reviewed-1.targets.json"
    reviewed.write_bytes(fleet.repo.metadata_path("1.targets.json").read_bytes())
    assert "version 2" in _ok(_publish(fleet, "--resign", "--from-targets", str(reviewed)))


def test_release_floor_option(fleet: Fleet) -> None:
    art = fleet.artifact(release_counter=4)
    out = _ok(_publish(fleet, str(art), "--release-floor", "3"))
    assert f"release floor digits/{CLASS} >= 3" in out
    signed = json.loads(fleet.repo.metadata_path("1.targets.json").read_bytes())["signed"]
    assert signed["x-edgefleet-release-floors"] == {f"digits/{CLASS}": 3}
    out = _ok(_publish(fleet, "--resign", "--release-floor", f"digits/{CLASS}=4"))
    assert ">= 4" in out
    result = _publish(fleet, "--resign", "--release-floor", f"digits/{CLASS}=2")
    assert result.exit_code == 1
    assert "release_floor_lowered" in result.output
    result = _publish(fleet, "--resign", "--release-floor", "7")
    assert result.exit_code == 2  # a bare N needs the artifact
    result = _publish(fleet, "--resign", "--release-floor", "Digits=x")
    assert result.exit_code == 5
    assert "invalid_release_floors" in result.output
    assert fleet.repo.targets_version() == 2
