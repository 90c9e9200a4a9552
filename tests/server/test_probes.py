"""Probe jobs through the real app, on SQLite and PostgreSQL: bad input refused before anything is sent, the
director names the probe to the chosen devices only, devices report once, unsent candidates are a security
event, and too few reports by the deadline are partial."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from tests.dashboard.conftest import browser, make_token, sign_in
from tests.server.fleet import fleet, fleet_settings  # noqa: F401  (fixtures)

from edgefleet.protocol.errors import EdgefleetError
from edgefleet.server.services.probes import probe_status
from edgefleet.trust.keys import load_signer
from edgefleet.trust.publish import publish_to_repository

CLASS = "medical-cart-cpu"
CANDIDATES = ["fp32", "int8-dynamic"]


def _bundle(root: Path, *, hardware_class: str = CLASS, declared_length: int | None = None) -> dict:
    """A probe bundle directory (artifact-shaped) with real files; returns its manifest."""
    root.mkdir(parents=True)
    files = {
        "probe.json": json.dumps({"candidates": CANDIDATES}).encode(),
        "validation.npz": b"validation-inputs",
        "candidates/fp32.onnx": b"fp32-model" * 10,
        "candidates/int8-dynamic.onnx": b"int8-model" * 5,
    }
    entries = []
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        entries.append({"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "length": len(data)})
    if declared_length is not None:
        entries[1]["length"] = declared_length
    manifest = {
        "schema_version": 1,
        "model": "digits.probe",
        "version": "p1-1.0.0",
        "hardware_class": hardware_class,
        "runtime": {"name": "onnxruntime", "execution_providers": ["CPUExecutionProvider"]},
        "entrypoint": "candidates/fp32.onnx",
        "files": entries,
        "signature": {
            "inputs": [{"name": "input", "dtype": "float32", "shape": ["batch", 1, 8, 8]}],
            "outputs": [{"name": "probabilities", "dtype": "float32", "shape": ["batch", 10]}],
        },
        "optimization": {"source_sha256": "0" * 64, "candidate": "probe"},
        "health_check": {"golden_file": "validation.npz", "latency_ceiling_ms": 50.0},
        "release_counter": 1,
        "probe": {"candidates": CANDIDATES, "build_version": "1.0.0"},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def _publish(fleet, root: Path) -> None:  # noqa: F811
    settings = fleet.app.state.context.settings
    signer = load_signer(settings.data_dir / "keys" / "release.key")
    publish_to_repository(fleet.app.state.tuf.repo, root, signer, now=fleet.clock())


def _create(fleet, manifest: dict, **body):  # noqa: F811
    return fleet.client.post(
        "/v1/probes", json={"hardware_class": CLASS, "manifest": manifest, **body}, headers=fleet.admin
    )


def _results(probe_id: str, names: list[str], now: datetime) -> dict:
    return {
        "schema_version": 1,
        "probe_id": probe_id,
        "started_at": now.isoformat(),
        "finished_at": now.isoformat(),
        "candidates": [
            {
                "name": n,
                "status": "measured",
                "latency": [{"batch": 1, "runs": 3, "p50_ms": 1.0, "p95_ms": 1.2, "p99_ms": 1.3}],
                "latency_samples_ms": [1.0, 1.1, 0.9],
            }
            for n in names
        ],
    }


def _probe_order(fleet, identity, ddir):  # noqa: F811
    envelope = fleet.channel(identity, ddir).request("GET", "/v1/device/desired-state").json()
    return envelope["signed"].get("probe")


NOW = datetime(2026, 12, 4, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("asked", "reported", "offset_s", "status"),
    [
        (2, 0, -10, "running"),
        (2, 1, -10, "running"),
        (2, 2, -10, "complete"),
        (2, 2, 10, "complete"),
        (2, 1, 10, "partial"),
        (2, 0, 10, "expired"),
    ],
)
def test_probe_status_rule(asked, reported, offset_s, status):
    deadline = NOW - timedelta(seconds=offset_s)
    assert probe_status(asked=asked, reported=reported, deadline_at=deadline, now=NOW) == status


def test_bad_probes_are_refused_before_anything_is_stored(fleet, tmp_path):  # noqa: F811
    manifest = _bundle(tmp_path / "bundle")
    r = _create(fleet, manifest)
    assert (r.status_code, r.json()["code"]) == (409, "no_enrolled_device")
    identity, _ddir = fleet.enroll()
    r = fleet.client.post(
        "/v1/probes", json={"hardware_class": "no-such-class", "manifest": manifest}, headers=fleet.admin
    )
    assert (r.status_code, r.json()["code"]) == (404, "class_not_found")
    other = _bundle(tmp_path / "other", hardware_class="intel-lowpower-detector")
    r = _create(fleet, other)
    assert (r.status_code, r.json()["code"]) == (422, "build_class_mismatch")
    assert r.json()["details"]["expected"] == CLASS
    huge = _bundle(tmp_path / "huge", declared_length=3 * 1024**3)  # validation inputs: 3 GiB > 2 GiB
    r = _create(fleet, huge)
    assert (r.status_code, r.json()["code"]) == (422, "probe_exceeds_storage_budget")
    r = _create(fleet, manifest)  # the bundle is not signed into the TUF targets
    assert (r.status_code, r.json()["code"]) == (409, "probe_bundle_not_signed")
    r = fleet.client.post(
        f"/v1/devices/{identity.device_id}/revoke", json={"reason": "stolen"}, headers=fleet.admin
    )
    assert r.status_code == 200
    _publish(fleet, tmp_path / "bundle")
    r = _create(fleet, manifest, device_ids=[identity.device_id])
    assert (r.status_code, r.json()["code"]) == (409, "device_revoked")
    r = _create(fleet, manifest)  # the only device is revoked
    assert (r.status_code, r.json()["code"]) == (409, "no_enrolled_device")
    assert fleet.client.get("/v1/probes", headers=fleet.admin).json()["items"] == []


def test_a_probe_reaches_the_chosen_devices_and_collects_their_figures(fleet, tmp_path):  # noqa: F811
    manifest = _bundle(tmp_path / "bundle")
    _publish(fleet, tmp_path / "bundle")
    (a, a_dir), (b, b_dir), (c, c_dir) = fleet.enroll(), fleet.enroll(), fleet.enroll()
    dry = _create(fleet, manifest, devices=2, dry_run=True)
    assert dry.status_code == 201
    assert len(dry.json()["devices"]) == 2
    assert fleet.client.get("/v1/probes", headers=fleet.admin).json()["items"] == []
    r = _create(fleet, manifest, device_ids=[a.device_id, b.device_id], deadline_s=600, sustained_s=5)
    assert r.status_code == 201, r.text
    probe = r.json()
    assert probe["status"] == "running"
    assert probe["devices_asked"] == 2
    order = _probe_order(fleet, a, a_dir)
    assert order["probe_id"] == probe["id"]
    assert order["sustained_s"] == 5
    assert order["bundle"]["manifest"]["path"] == "digits.probe/p1-1.0.0/medical-cart-cpu/manifest.json"
    assert _probe_order(fleet, c, c_dir) is None  # not asked
    # A device reporting a candidate it was not sent: refused, recorded as a security event.
    channel = fleet.channel(a, a_dir)
    path = f"/v1/device/probes/{probe['id']}/results"
    with pytest.raises(EdgefleetError) as refused:
        channel.request("POST", path, json_body=_results(probe["id"], ["fp32", "int8-evil"], fleet.clock()))
    assert refused.value.code == "probe_candidate_not_sent"
    audit = fleet.client.get("/v1/audit", params={"limit": 50}, headers=fleet.admin).json()["items"]
    event = next(row for row in audit if row["action"] == "security.probe_results_refused")
    assert event["actor"] == a.device_id
    assert event["details"]["candidates"] == ["int8-evil"]
    # A device the probe was not sent to cannot report into it.
    with pytest.raises(EdgefleetError) as stranger:
        fleet.channel(c, c_dir).request(
            "POST", path, json_body=_results(probe["id"], ["fp32"], fleet.clock())
        )
    assert stranger.value.code == "probe_not_assigned"
    answer = channel.request("POST", path, json_body=_results(probe["id"], CANDIDATES, fleet.clock())).json()
    assert answer == {"accepted": True, "duplicate": False}
    again = channel.request("POST", path, json_body=_results(probe["id"], ["fp32"], fleet.clock())).json()
    assert again["duplicate"] is True  # the first report stays
    assert _probe_order(fleet, a, a_dir) is None  # reported: the order is gone from its desired state
    shown = fleet.client.get(f"/v1/probes/{probe['id']}", headers=fleet.admin).json()
    assert shown["status"] == "running"
    assert shown["devices_reported"] == 1
    reported = next(d for d in shown["devices"] if d["device_id"] == a.device_id)
    assert [c["name"] for c in reported["results"]["candidates"]] == CANDIDATES
    assert reported["measured_on"] == "device"
    # b never answers: at the deadline the probe is partial, never complete.
    fleet.clock.now += timedelta(seconds=601)
    shown = fleet.client.get(f"/v1/probes/{probe['id']}", headers=fleet.admin).json()
    assert shown["status"] == "partial"
    assert shown["partial"] is True
    with pytest.raises(EdgefleetError) as late:
        fleet.channel(b, b_dir).request(
            "POST", path, json_body=_results(probe["id"], CANDIDATES, fleet.clock())
        )
    assert late.value.code == "probe_expired"
    # The dashboard shows the probe and each device's figures as the service judged them.
    viewer = browser(fleet)
    sign_in(viewer, make_token(fleet, "viewer"))
    listing = viewer.get("/dashboard/probes")
    assert listing.status_code == 200
    assert probe["id"] in listing.text
    page = viewer.get(f"/dashboard/probes/{probe['id']}")
    assert page.status_code == 200
    assert "Partial: fewer devices than asked" in page.text
    assert 'data-candidate="int8-dynamic"' in page.text
    assert "Waiting for this device." in page.text  # b never reported
