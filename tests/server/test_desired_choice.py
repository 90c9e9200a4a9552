"""The director's content for one device: each slot names its artifact's manifest by TUF target."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.desired_state import DesiredState, TargetHashes, TargetRef
from edgefleet.server.services.desired_state import DesiredChoice, content_digest
from edgefleet.server.store.registry import ArtifactRow
from edgefleet.sim.artifacts import stand_in_manifest
from edgefleet.trust.director import sign_desired_state, verify_desired_state

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
CLASS = "medical-cart-cpu"
SIGNED = TargetRef(
    path="digits/1.0.0/medical-cart-cpu/manifest.json", length=900, hashes=TargetHashes(sha256="ab" * 32)
)


def _row(artifact_id: str, version: str) -> ArtifactRow:
    manifest = stand_in_manifest(
        model="digits",
        version=version,
        hardware_class=CLASS,
        files={"model.onnx": version.encode() * 8, "golden.npz": b"golden"},
    )
    return ArtifactRow(
        id=artifact_id, manifest=manifest.to_dict(), manifest_sha256="cd" * 32, hardware_class=CLASS
    )


def _signed(path: str) -> TargetRef | None:
    return SIGNED if path == SIGNED.path else None


def test_a_slot_names_the_signed_manifest_target_when_the_release_is_published() -> None:
    choice = DesiredChoice(CLASS, {"main": _row("art_a", "1.0.0"), "next": _row("art_b", "1.1.0")}, [])
    slots = choice.assignments(_signed)
    assert slots["main"].artifact_id == "art_a"
    assert slots["main"].manifest == SIGNED  # what the release key signed, path, length and hashes
    # not published: named by the registered manifest; the device will refuse it (not in its TUF metadata)
    unpublished = slots["next"].manifest
    assert unpublished.path == "digits/1.1.0/medical-cart-cpu/manifest.json"
    assert unpublished.sha256 == "cd" * 32
    assert unpublished.length == len(canonical_json(_row("art_b", "1.1.0").manifest))


def test_the_digest_moves_with_what_a_device_is_told() -> None:
    row = _row("art_a", "1.0.0")
    base = DesiredChoice(CLASS, {"main": row}, []).assignments(_signed)
    digest = content_digest(CLASS, base, [])
    assert digest == content_digest(CLASS, DesiredChoice(CLASS, {"main": row}, []).assignments(_signed), [])
    unpublished = DesiredChoice(CLASS, {"main": row}, []).assignments(lambda _p: None)
    assert content_digest(CLASS, unpublished, []) != digest  # publishing the release re-issues the state
    assert content_digest(CLASS, {"other": base["main"]}, []) != digest
    assert content_digest(CLASS, base, ["art_b"]) != digest


def test_the_signed_state_carries_the_typed_assignments_as_built() -> None:
    slots = DesiredChoice(CLASS, {"main": _row("art_a", "1.0.0")}, []).assignments(_signed)
    state = DesiredState(
        device_id="dev_1",
        hardware_class=CLASS,
        generation=1,
        issued_at=NOW,
        expires_at=NOW + timedelta(hours=1),
        slots=slots,
        disabled_artifacts=[],
    )
    assert state.slots["main"] is slots["main"]  # not validated a second time
    key = Ed25519PrivateKey.generate()
    verified = verify_desired_state(
        sign_desired_state(state, key),
        director_key=key.public_key(),
        device_id="dev_1",
        last_generation=0,
        now=NOW,
        time_floor=None,
    )
    assert verified.to_dict() == state.to_dict()  # the device reads it as its struct (protocol.wire)
    signed = canonical_json(sign_desired_state(state, key)["signed"]).decode()
    assert "files" not in signed  # no manifest inside: the device takes it from TUF
