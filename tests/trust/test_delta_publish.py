"""Publishing deltas: signed as targets of their own, found by the device by its base's hash, and never a
chain."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import numpy as np
import pytest
from click.testing import CliRunner
from tests.trust.fleet import NOW, Fleet

from edgefleet.cli.main import cli
from edgefleet.trust.delta import apply_delta
from edgefleet.trust.errors import TargetsRejectedError
from edgefleet.trust.publish import PreparedDelta, build_targets
from edgefleet.trust.target_custom import custom_of, delta_target_path, is_delta_path

PREFIX2 = "digits/2.0.0/medical-cart-cpu"


def _publish(fleet: Fleet, *args: str):
    common = ["--release-key", str(fleet.keys / "release.key"), "--repo", str(fleet.repo.directory)]
    return CliRunner().invoke(cli, ["publish", *args, *common, "--online-keys", str(fleet.keys)])


def _models() -> tuple[bytes, bytes]:
    rng = np.random.default_rng(0)
    v1 = rng.bytes(64 * 1024)
    v2 = bytearray(v1)
    v2[-512:] = rng.bytes(512)  # a new "head"
    return v1, bytes(v2)


def test_publish_signs_a_delta_the_device_finds_by_hash_and_rebuilds(fleet: Fleet, tmp_path) -> None:
    v1, v2 = _models()
    art1 = fleet.artifact(model_bytes=v1)
    assert _publish(fleet, str(art1)).exit_code == 0
    art2 = fleet.artifact(version="2.0.0", release_counter=2, model_bytes=v2)
    result = _publish(fleet, str(art2))
    assert result.exit_code == 0, result.output
    assert f"delta {PREFIX2}/deltas/" in result.output

    device = fleet.device()
    now = datetime.now(timezone.utc)
    device.refresh(now)
    base_sha = hashlib.sha256(v1).hexdigest()
    path = delta_target_path(PREFIX2, "model.onnx", base_sha)
    info = device.signed_targets(now)[path]
    custom = custom_of(info)
    assert custom.delta is not None
    assert custom.delta.base_path == "digits/1.0.0/medical-cart-cpu/model.onnx"
    assert (custom.delta.result_sha256, custom.delta.result_length) == (
        hashlib.sha256(v2).hexdigest(),
        len(v2),
    )
    assert info.length < 0.1 * len(v2)  # 512 changed bytes of 64 KiB
    delta = device.download_to(info, tmp_path / "dl", now=now)
    base = tmp_path / "base"
    base.write_bytes(v1)
    out = apply_delta(delta, base, tmp_path / "model.onnx", custom.delta)
    assert out.read_bytes() == v2


def test_no_delta_is_signed_with_delta_bases_0(fleet: Fleet) -> None:
    v1, v2 = _models()
    assert _publish(fleet, str(fleet.artifact(model_bytes=v1))).exit_code == 0
    art2 = fleet.artifact(version="2.0.0", release_counter=2, model_bytes=v2)
    assert _publish(fleet, str(art2), "--delta-bases", "0").exit_code == 0
    targets = fleet.repo.targets()
    assert targets is not None
    assert not [p for p in targets.signed.targets if is_delta_path(p)]


def test_a_chain_of_deltas_is_never_signed(fleet: Fleet, tmp_path) -> None:
    v1, v2 = _models()
    assert _publish(fleet, str(fleet.artifact(model_bytes=v1))).exit_code == 0
    art2 = fleet.artifact(version="2.0.0", release_counter=2, model_bytes=v2)
    assert _publish(fleet, str(art2)).exit_code == 0
    current = fleet.repo.targets()
    assert current is not None
    first_delta = next(p for p in current.signed.targets if is_delta_path(p))
    info = current.signed.targets[first_delta]
    old = custom_of(info).delta
    assert old is not None
    art3 = fleet.artifact(version="3.0.0", release_counter=3, model_bytes=v2 + b"x")
    chained = old.model_copy(
        update={
            "base_path": first_delta,
            "base_sha256": info.hashes["sha256"],
            "base_length": info.length,
            "result_path": "digits/3.0.0/medical-cart-cpu/model.onnx",
        }
    )
    fake = tmp_path / "chain.efdelta"
    fake.write_bytes(b"x")
    with pytest.raises(TargetsRejectedError) as err:
        build_targets(
            current,
            art3,
            fleet.release,
            now=NOW,
            deltas=[
                PreparedDelta(
                    delta_target_path("digits/3.0.0/medical-cart-cpu", "model.onnx", info.hashes["sha256"]),
                    fake,
                    chained,
                )
            ],
        )
    assert err.value.code == "delta_rejected"
