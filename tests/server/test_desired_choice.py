"""The director's content for one device: chosen artifacts, digested by id, parsed once when signed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.protocol.desired_state import DesiredState
from edgefleet.protocol.manifest import ArtifactManifest
from edgefleet.server.services.desired_state import DesiredChoice
from edgefleet.server.store.registry import ArtifactRow
from edgefleet.sim.artifacts import stand_in_manifest
from edgefleet.trust.director import sign_desired_state, verify_desired_state

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
CLASS = "medical-cart-cpu"


def _row(artifact_id: str, version: str) -> ArtifactRow:
    manifest = stand_in_manifest(
        model="digits",
        version=version,
        hardware_class=CLASS,
        files={"model.onnx": version.encode() * 8, "golden.npz": b"golden"},
    )
    return ArtifactRow(id=artifact_id, manifest=manifest.to_dict(), hardware_class=CLASS)


def test_the_digest_moves_with_the_chosen_artifacts_not_with_their_parsing() -> None:
    a, b = _row("art_a", "1.0.0"), _row("art_b", "1.1.0")
    base = DesiredChoice(CLASS, {"main": a}, [])
    assert base.digest() == DesiredChoice(CLASS, {"main": _row("art_a", "1.0.0")}, []).digest()
    assert base.digest() != DesiredChoice(CLASS, {"main": b}, []).digest()
    assert base.digest() != DesiredChoice(CLASS, {"shadow": a}, []).digest()
    assert base.digest() != DesiredChoice(CLASS, {"main": a}, ["art_b"]).digest()


def test_each_manifest_is_parsed_once_and_signed_as_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    choice = DesiredChoice(CLASS, {"main": _row("art_a", "1.0.0"), "shadow": _row("art_b", "1.1.0")}, [])
    parsed: list[str] = []
    original = ArtifactManifest.parse.__func__  # type: ignore[attr-defined]

    def counting(cls: type[ArtifactManifest], data: object) -> ArtifactManifest:
        parsed.append(data["version"])  # type: ignore[index]
        return original(cls, data)

    monkeypatch.setattr(ArtifactManifest, "parse", classmethod(counting))
    assignments = choice.assignments()
    state = DesiredState(
        device_id="dev_1",
        hardware_class=CLASS,
        generation=1,
        issued_at=NOW,
        expires_at=NOW + timedelta(hours=1),
        slots=assignments,
        disabled_artifacts=[],
    )
    monkeypatch.undo()
    assert sorted(parsed) == ["1.0.0", "1.1.0"]
    assert state.slots["main"] is assignments["main"]  # not validated a second time
    main = state.slots["main"]
    assert main.target_path == "digits/1.0.0/medical-cart-cpu/model.onnx"
    assert (main.sha256, main.length) == (main.manifest.file("model.onnx").sha256, 40)

    key = Ed25519PrivateKey.generate()
    verified = verify_desired_state(
        sign_desired_state(state, key),
        director_key=key.public_key(),
        device_id="dev_1",
        last_generation=0,
        now=NOW,
        time_floor=None,
    )
    assert verified == state
