"""The fleet's download accounting for model deltas (pure sums) and the classes' running artifacts API."""

from __future__ import annotations

from edgefleet.protocol import parse_classes_toml
from edgefleet.server.services.transfer_savings import fallback_reasons, summarize_transfers


def _event(artifact: str, full: int, got: int, deltas: int = 0, fallbacks: str | None = None) -> dict:
    out = {"artifact": artifact, "full_bytes": full, "bytes_downloaded": got, "delta_files": deltas}
    if fallbacks:
        out["delta_fallbacks"] = fallbacks
    return out


def test_sums_count_each_device_install_once_and_only_the_target():
    events = [
        ("d1", _event("art_b", 1000, 1000, 0, "model.onnx=delta_corrupt")),  # a first attempt...
        ("d1", _event("art_b", 1000, 40, 1)),  # ...retried: the newest counts
        ("d2", _event("art_b", 1000, 1000, 0, "model.onnx=delta_base_missing;golden.npz=delta_base_missing")),
        ("d3", _event("art_a", 1000, 1000)),  # another artifact
        ("d4", {"artifact": "art_b", "reused": True}),  # nothing downloaded, no sizes: not an install here
    ]
    totals = summarize_transfers(events, {"art_b"})
    assert totals == {
        "installs": 2,
        "installs_through_delta": 1,
        "full_bytes": 2000,
        "bytes_downloaded": 1040,
        "bytes_saved": 960,
        "saved_fraction": 0.48,
        "delta_fallbacks": {"delta_base_missing": 2},
    }
    assert summarize_transfers([], {"art_b"})["saved_fraction"] == 0.0


def test_fallback_reasons_read_the_flat_form_and_ignore_garbage():
    assert fallback_reasons("a/b.onnx=delta_chain;x") == {"a/b.onnx": "delta_chain"}
    assert fallback_reasons(None) == {}


def test_running_artifacts_of_an_unknown_class_is_a_404(api, classes_toml):
    docs = [c.to_dict() for c in parse_classes_toml(classes_toml)]
    api.client.post("/v1/classes/apply", json={"classes": docs}, headers=api.admin)
    viewer = api.token("viewer")
    r = api.client.get("/v1/classes/medical-cart-cpu/running", headers=viewer)
    assert r.status_code == 200
    assert r.json() == {"items": []}  # no device reported anything yet
    r = api.client.get("/v1/classes/no-such-class/running", headers=viewer)
    assert r.status_code == 404
    assert r.json()["code"] == "class_not_found"
    assert api.client.get("/v1/classes/medical-cart-cpu/running?limit=99", headers=viewer).status_code == 422
