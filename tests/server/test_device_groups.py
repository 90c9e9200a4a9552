"""Device groups and lifecycle through the real ASGI app: relabel (one, by selector), decommission, pins by
selector, rollouts by selector, inventory reports and fleet filters; each change audited, bad input refused
with stable codes and nothing half-applied."""

from __future__ import annotations

import pytest

from edgefleet.protocol.errors import AuthenticationError


def _code(response) -> str:
    return response.json()["code"]


def _enroll(fleet, **labels):
    return fleet.enroll(fleet.token(labels=labels))


def _ids(fleet, **params) -> list[str]:
    r = fleet.client.get("/v1/devices", params=params, headers=fleet.admin)
    assert r.status_code == 200, r.text
    return [d["id"] for d in r.json()["items"]]


def _audit(fleet, **params) -> list[dict]:
    return fleet.client.get("/v1/audit", params=params, headers=fleet.admin).json()["items"]


def _viewer(fleet) -> dict:
    r = fleet.client.post("/v1/tokens", json={"name": "watcher", "role": "viewer"}, headers=fleet.admin)
    assert r.status_code == 201, r.text
    return {"authorization": f"Bearer {r.json()['token']}"}


def test_relabel_one_device_is_audited_and_moves_it_between_selections(fleet):
    (a, _), (b, _) = _enroll(fleet, site="plant-3", line="1"), _enroll(fleet, site="plant-3", line="2")
    r = fleet.client.patch(
        f"/v1/devices/{a.device_id}/labels", json={"set": {"line": "2"}, "remove": []}, headers=fleet.admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["labels"] == {"site": "plant-3", "line": "2"}
    assert sorted(_ids(fleet, selector="site=plant-3,line=2")) == sorted([a.device_id, b.device_id])
    assert _ids(fleet, selector="line!=2") == []
    row = _audit(fleet, action="device.relabel")[0]
    assert row["target"] == a.device_id
    assert row["details"]["before"] == {"site": "plant-3", "line": "1"}
    assert row["details"]["after"] == {"site": "plant-3", "line": "2"}


def test_relabel_by_selector_changes_every_match_or_none(fleet):
    devices = [_enroll(fleet, site="plant-3", line=str(i))[0] for i in range(3)]
    other, _ = _enroll(fleet, site="plant-4")
    preview = fleet.client.post(
        "/v1/devices/relabel",
        json={"selector": "site=plant-3,line in (0,1)", "set": {"zone": "north"}, "dry_run": True},
        headers=fleet.admin,
    ).json()
    assert preview["matched"] == 2
    assert preview["dry_run"] is True
    assert _ids(fleet, selector="zone=north") == []  # a dry run changes nothing

    done = fleet.client.post(
        "/v1/devices/relabel",
        json={"selector": "site=plant-3,line in (0,1)", "set": {"zone": "north"}, "remove": ["line"]},
        headers=fleet.admin,
    )
    assert done.status_code == 200, done.text
    assert done.json()["matched"] == 2
    assert sorted(_ids(fleet, selector="zone=north")) == sorted(d.device_id for d in devices[:2])
    assert other.device_id not in _ids(fleet, selector="zone")
    assert len(_audit(fleet, action="device.relabel")) == 2

    # A change that would break one device's labels (34 labels, 32 allowed) changes none of them.
    many = {f"k{i}": "v" for i in range(30)}
    r = fleet.client.patch(
        f"/v1/devices/{devices[2].device_id}/labels", json={"set": many}, headers=fleet.admin
    )
    assert r.status_code == 200, r.text
    r = fleet.client.post(
        "/v1/devices/relabel",
        json={"selector": "site=plant-3", "set": {"x": "1", "y": "2"}},
        headers=fleet.admin,
    )
    assert r.status_code == 422, r.text
    assert _code(r) == "invalid_labels"
    assert r.json()["details"]["device_id"] == devices[2].device_id
    assert _ids(fleet, selector="x") == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"selector": "", "set": {"a": "b"}}, "invalid_document"),
        ({"selector": "   ", "set": {"a": "b"}}, "empty_selector"),
        ({"selector": "site=", "set": {"a": "b"}}, "invalid_selector"),
        ({"selector": "site=a,site=b", "set": {"a": "b"}}, "selector_conflict"),
        ({"selector": "site=nowhere", "set": {"a": "b"}}, "selector_matches_nothing"),
        ({"selector": "site=plant-3"}, "invalid_labels"),
        ({"selector": "site=plant-3", "set": {"a": "b"}, "remove": ["a"]}, "invalid_labels"),
        ({"selector": "site=plant-3", "set": {"Bad Key": "b"}}, "invalid_labels"),
    ],
)
def test_bad_relabels_are_refused_with_stable_codes(fleet, body, code):
    _enroll(fleet, site="plant-3")
    r = fleet.client.post("/v1/devices/relabel", json=body, headers=fleet.admin)
    assert r.status_code == 422, r.text
    assert _code(r) == code
    assert _audit(fleet, action="device.relabel") == []


def test_a_viewer_cannot_relabel_decommission_or_pin(fleet):
    identity, _ = _enroll(fleet, site="plant-3")
    viewer = _viewer(fleet)
    calls = [
        ("PATCH", f"/v1/devices/{identity.device_id}/labels", {"set": {"a": "b"}}),
        ("POST", "/v1/devices/relabel", {"selector": "site=plant-3", "set": {"a": "b"}}),
        ("POST", f"/v1/devices/{identity.device_id}/decommission", {"reason": "x"}),
        ("POST", "/v1/pins/by-selector", {"selector": "site=plant-3", "artifact_id": "art_x"}),
    ]
    for method, path, body in calls:
        r = fleet.client.request(method, path, json=body, headers=viewer)
        assert r.status_code == 403, (path, r.text)
    assert fleet.client.get(f"/v1/devices/{identity.device_id}", headers=viewer).json()["labels"] == {
        "site": "plant-3"
    }


def test_decommission_revokes_hides_and_keeps_the_audit(fleet):
    gone, gone_dir = _enroll(fleet, site="plant-3")
    kept, _ = _enroll(fleet, site="plant-3")
    r = fleet.client.post(
        f"/v1/devices/{gone.device_id}/decommission", json={"reason": "replaced"}, headers=fleet.admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "revoked"
    assert r.json()["decommissioned_at"]
    # Its signed calls are refused at once.
    with pytest.raises(AuthenticationError) as info:
        fleet.channel(gone, gone_dir).request("GET", "/v1/device/desired-state")
    assert info.value.code == "device_revoked"
    # Hidden from fleet views and counts by default, retrievable with an explicit flag and by id.
    listed = fleet.client.get("/v1/devices", headers=fleet.admin).json()
    assert [d["id"] for d in listed["items"]] == [kept.device_id]
    assert listed["total"] == 1
    assert gone.device_id not in _ids(fleet, status="revoked")
    assert gone.device_id in _ids(fleet, include_decommissioned="true")
    assert fleet.client.get(f"/v1/devices/{gone.device_id}", headers=fleet.admin).status_code == 200
    health = fleet.client.get("/v1/fleet/health", headers=fleet.admin)
    if health.status_code == 200:
        assert "revoked" not in health.json().get("devices", {}).get("by_status", {})
    # Nor can it be relabelled or selected any more; the audit keeps it.
    r = fleet.client.patch(
        f"/v1/devices/{gone.device_id}/labels", json={"set": {"a": "b"}}, headers=fleet.admin
    )
    assert r.status_code == 422
    assert _code(r) == "device_decommissioned"
    row = _audit(fleet, target=gone.device_id, action="device.decommission")[0]
    assert row["details"]["reason"] == "replaced"
    assert row["details"]["labels"] == {"site": "plant-3"}


def test_pins_by_selector_pin_every_match_all_or_nothing(fleet):
    art = fleet.artifact("1.0.0")
    (a, a_dir), (b, b_dir) = _enroll(fleet, site="plant-3"), _enroll(fleet, site="plant-3")
    (c, c_dir) = _enroll(fleet, site="plant-4")
    r = fleet.client.post(
        "/v1/pins/by-selector", json={"selector": "site=plant-3", "artifact_id": art}, headers=fleet.admin
    )
    assert r.status_code == 200, r.text
    assert sorted(r.json()["devices"]) == sorted([a.device_id, b.device_id])
    assert fleet.poll(a, a_dir) == {"default": art}
    assert fleet.poll(b, b_dir) == {"default": art}
    assert fleet.poll(c, c_dir) == {}
    row = _audit(fleet, action="pin.set")[0]
    assert row["target"] == "selector:site=plant-3"
    assert row["details"]["matched"] == 2

    cleared = fleet.client.post(
        "/v1/pins/by-selector",
        json={"selector": "site=plant-3", "artifact_id": None, "hardware_class": "medical-cart-cpu"},
        headers=fleet.admin,
    )
    assert cleared.status_code == 200, cleared.text
    assert fleet.poll(a, a_dir) == {}

    for body, code in [
        ({"selector": "site=plant-9", "artifact_id": art}, "selector_matches_nothing"),
        ({"selector": "site=plant-3", "artifact_id": None}, "invalid_scope"),
        ({"selector": "site=plant-3,", "artifact_id": art}, "invalid_selector"),
    ]:
        r = fleet.client.post("/v1/pins/by-selector", json=body, headers=fleet.admin)
        assert r.status_code == 422, r.text
        assert _code(r) == code


def test_rollouts_target_devices_by_a_selector_expression(fleet):
    v1, v2 = fleet.artifact("1.0.0"), fleet.artifact("2.0.0")
    fleet.client.put("/v1/pins/class/medical-cart-cpu/default", json={"artifact_id": v1}, headers=fleet.admin)
    (a, a_dir), (b, b_dir) = (
        _enroll(fleet, site="plant-3", line="1"),
        _enroll(fleet, site="plant-3", line="2"),
    )
    body = {
        "model": "digits",
        "targets": {"medical-cart-cpu": v2},
        "selector": "site=plant-3,line!=2",
        "spec": {"stages": [{"percent": 100, "soak_s": 60}]},
    }
    r = fleet.client.post("/v1/rollouts", json=body, headers=fleet.admin)
    assert r.status_code == 201, r.text
    assert r.json()["selector"] == "site=plant-3,line!=2"
    assert fleet.poll(a, a_dir) == {"default": v2}
    assert fleet.poll(b, b_dir) == {"default": v1}
    fleet.client.post(f"/v1/rollouts/{r.json()['id']}/abort", json={}, headers=fleet.admin)

    for selector, code in [
        ("line=9", "selector_matches_nothing"),
        ("line==", "invalid_selector"),
        ("  ", "empty_selector"),
    ]:
        r = fleet.client.post("/v1/rollouts", json={**body, "selector": selector}, headers=fleet.admin)
        assert r.status_code == 422, r.text
        assert _code(r) == code


def _report(fleet, identity, ddir, **extra) -> None:
    fleet.reports = getattr(fleet, "reports", 0) + 1
    body = {
        "sequence": fleet.reports,
        "boot_id": "boot-" + identity.device_id,
        "reported_at": fleet.clock().isoformat(),
        "agent_version": extra.pop("agent_version", "0.1.0"),
        **extra,
    }
    fleet.channel(identity, ddir).request("POST", "/v1/device/report", json_body=body)


def test_inventory_is_reported_and_filters_the_fleet(fleet):
    (arm, arm_dir), (x86, x86_dir), (silent, _) = _enroll(fleet), _enroll(fleet), _enroll(fleet)
    _report(
        fleet,
        arm,
        arm_dir,
        agent_version="0.2.0",
        host={
            "os": "linux",
            "os_version": "Ubuntu 22.04",
            "cpu": {"model": "Cortex-A78AE", "arch": "aarch64", "cores": 8},
        },
        runtimes={
            "onnxruntime": {
                "version": "1.20.1",
                "execution_providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
            }
        },
    )
    _report(
        fleet,
        x86,
        x86_dir,
        host={"os": "linux", "cpu": {"model": "Xeon", "arch": "x86_64", "cores": 4}},
        runtimes={"openvino": {"version": "2024.6.0", "execution_providers": ["CPUExecutionProvider"]}},
    )
    device = fleet.client.get(f"/v1/devices/{arm.device_id}", headers=fleet.admin).json()
    assert device["inventory"]["cpu_model"] == "Cortex-A78AE"
    assert device["inventory"]["cores"] == 8
    assert device["inventory"]["runtimes"] == {"onnxruntime": "1.20.1"}
    assert device["agent_version"] == "0.2.0"

    assert _ids(fleet, arch="aarch64") == [arm.device_id]
    assert sorted(_ids(fleet, os="linux")) == sorted([arm.device_id, x86.device_id])
    assert _ids(fleet, runtime="openvino") == [x86.device_id]
    assert _ids(fleet, runtime="onnxruntime=1.20.1") == [arm.device_id]
    assert _ids(fleet, runtime="onnxruntime=1.19.0") == []
    assert _ids(fleet, provider="CUDAExecutionProvider") == [arm.device_id]
    assert _ids(fleet, agent_version="0.2.0") == [arm.device_id]
    assert silent.device_id not in _ids(fleet, os="linux")
    listed = fleet.client.get("/v1/devices", params={"os": "linux", "limit": 1}, headers=fleet.admin).json()
    assert listed["total"] == 2
    assert len(listed["items"]) == 1

    for params in ({"runtime": "onnxruntime="}, {"arch": "x86;drop"}):
        r = fleet.client.get("/v1/devices", params=params, headers=fleet.admin)
        assert r.status_code == 422
        assert _code(r) == "invalid_inventory_filter"


def test_an_inventory_over_its_bounds_is_refused_and_changes_nothing(fleet):
    identity, ddir = _enroll(fleet)
    from edgefleet.protocol.errors import EdgefleetError

    with pytest.raises(EdgefleetError) as info:
        _report(fleet, identity, ddir, host={"os": "linux", "cpu": {"model": "x" * 129, "arch": "aarch64"}})
    assert info.value.code == "invalid_document"
    device = fleet.client.get(f"/v1/devices/{identity.device_id}", headers=fleet.admin).json()
    assert device["inventory"] is None


def test_get_of_the_relabel_path_is_a_405_naming_post(fleet):
    r = fleet.client.get("/v1/devices/relabel", headers=fleet.admin)
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert fleet.client.get("/v1/devices/dev_" + "0" * 20, headers=fleet.admin).status_code == 404
