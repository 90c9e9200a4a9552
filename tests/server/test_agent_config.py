"""Remote agent configuration and update windows on the control plane, through the real ASGI app: layers,
precedence, bounds, overlapping and empty selectors, the signed desired state, and urgent rollouts."""

from __future__ import annotations

import pytest
from tests.server.fleet import EXAMPLES

from edgefleet.protocol.hardware_class import parse_classes_toml
from edgefleet.protocol.selector import parse_selector
from edgefleet.server.services.agent_config import selectors_overlap


def _signed(fleet, identity, ddir) -> dict:
    return fleet.channel(identity, ddir).request("GET", "/v1/device/desired-state").json()["signed"]


def _set(fleet, scope, target, settings, headers=None):
    body = {"scope": scope, "target": target, "settings": settings}
    return fleet.client.put("/v1/config", json=body, headers=headers or fleet.admin)


def test_layers_merge_device_over_selector_over_class_into_the_signed_state(fleet):
    identity, ddir = fleet.enroll(fleet.token(labels={"site": "ward-3", "line": "2"}))
    other, other_dir = fleet.enroll(fleet.token(labels={"site": "ward-4"}))
    assert "config" not in _signed(fleet, identity, ddir) or _signed(fleet, identity, ddir)["config"] is None
    assert _set(fleet, "class", "medical-cart-cpu", {"poll_interval_s": 60, "log_level": "info"}).is_success
    assert _set(fleet, "selector", "site=ward-3", {"poll_interval_s": 30, "shadow_fraction": 0.2}).is_success
    r = _set(fleet, "device", identity.device_id, {"poll_interval_s": 10})
    assert r.json() == {
        "scope": "device", "target": identity.device_id, "selector": None,
        "settings": {"poll_interval_s": 10.0},
    }  # fmt: skip
    assert _signed(fleet, identity, ddir)["config"] == {
        "log_level": "info", "poll_interval_s": 10.0, "shadow_fraction": 0.2,
    }  # fmt: skip
    assert _signed(fleet, other, other_dir)["config"] == {"log_level": "info", "poll_interval_s": 60.0}
    view = fleet.client.get(f"/v1/devices/{identity.device_id}/config", headers=fleet.admin).json()
    assert view["config"]["sources"] == {
        "log_level": "class:medical-cart-cpu",
        "poll_interval_s": f"device:{identity.device_id}",
        "shadow_fraction": "selector:site=ward-3",
    }
    assert view["config"]["applied"] is None  # the device has not reported it yet
    assert view["config"]["in_sync"] is False
    unset = fleet.client.post(
        "/v1/config/unset",
        json={"scope": "device", "target": identity.device_id, "settings": []},
        headers=fleet.admin,
    )
    assert unset.json() == {"layer": None}
    assert _signed(fleet, identity, ddir)["config"]["poll_interval_s"] == 30.0
    listed = fleet.client.get("/v1/config", headers=fleet.admin).json()
    assert [(i["scope"], i["target"]) for i in listed["items"]] == [
        ("class", "medical-cart-cpu"), ("selector", "site=ward-3"),
    ]  # fmt: skip
    assert listed["settings"]["poll_interval_s"] == {
        "expected": "float in [1, 86400]", "live": True, "help": "seconds between desired-state polls",
    }  # fmt: skip
    assert listed["settings"]["telemetry_max_bytes"]["live"] is False
    assert "config.set" in fleet_audit(fleet)


def fleet_audit(fleet) -> list[str]:
    return [row["action"] for row in fleet.client.get("/v1/audit", headers=fleet.admin).json()["items"]]


@pytest.mark.parametrize(
    ("scope", "target", "settings", "status", "code"),
    [
        ("class", "medical-cart-cpu", {"poll_interval_s": 0.001}, 422, "config_out_of_bounds"),
        ("class", "medical-cart-cpu", {"poll_interval_s": "fast"}, 422, "invalid_config_value"),
        ("class", "medical-cart-cpu", {"trial_min_requests": 1.5}, 422, "invalid_config_value"),
        ("class", "medical-cart-cpu", {"log_level": "chatty"}, 422, "config_out_of_bounds"),
        ("class", "medical-cart-cpu", {"colour": "red"}, 422, "unknown_config_key"),
        ("class", "medical-cart-cpu", {}, 422, "invalid_config_value"),
        ("class", "no-such-class", {"poll_interval_s": 60}, 404, "class_not_found"),
        ("device", "dev_00000000000000000000", {"poll_interval_s": 60}, 404, "device_not_found"),
        ("selector", "   ", {"poll_interval_s": 60}, 422, "empty_selector"),
        ("selector", "site=(a", {"poll_interval_s": 60}, 422, "invalid_selector"),
        ("selector", "site=a,site=b", {"poll_interval_s": 60}, 422, "selector_conflict"),
    ],
)
def test_bad_configuration_is_refused_with_a_stable_code_and_nothing_is_written(
    fleet, scope, target, settings, status, code
):
    # a valid setting beside the bad one: nothing of the request may be applied
    body = {**settings, "log_level": "debug"} if "log_level" not in settings and settings else settings
    r = _set(fleet, scope, target, body)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    if code in ("config_out_of_bounds", "invalid_config_value", "unknown_config_key") and settings:
        assert "expected" in r.json()["details"]
        assert "got" in r.json()["details"]
    assert fleet.client.get("/v1/config", headers=fleet.admin).json()["items"] == []


def test_a_poll_interval_of_one_millisecond_says_what_was_expected_and_what_arrived(fleet):
    r = _set(fleet, "class", "medical-cart-cpu", {"poll_interval_s": 0.001})
    assert r.json()["details"] == {
        "expected": "float in [1, 86400]",
        "got": 0.001,
        "setting": "poll_interval_s",
    }


def test_overlapping_selectors_that_set_the_same_setting_are_refused(fleet):
    assert _set(fleet, "selector", "site=ward-3", {"poll_interval_s": 30}).is_success
    r = _set(fleet, "selector", "line=2", {"poll_interval_s": 20})  # a device on ward 3, line 2: which?
    assert r.status_code == 409
    assert r.json()["code"] == "config_selector_overlap"
    assert r.json()["details"]["got"]["overlaps"] == "site=ward-3"
    assert _set(fleet, "selector", "line=2", {"log_level": "debug"}).is_success  # different settings: fine
    assert _set(fleet, "selector", "site=ward-4", {"poll_interval_s": 20}).is_success  # disjoint: fine
    assert _set(fleet, "selector", "site notin (ward-3,ward-4),line!=2", {"poll_interval_s": 9}).is_success


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("site=a", "line=2", True),
        ("site=a,line=2", "site=b", False),
        ("site=a", "site!=a", False),
        ("site in (a,b)", "site notin (a,b)", False),
        ("site in (a,b)", "site notin (a)", True),
        ("camera", "!camera", False),
        ("!camera", "camera=x", False),
        ("site!=a", "site!=b", True),
    ],
)
def test_selector_overlap_is_judged_on_the_shared_grammar(a, b, overlap):
    assert selectors_overlap(parse_selector(a), parse_selector(b)) is overlap
    assert selectors_overlap(parse_selector(b), parse_selector(a)) is overlap


def test_viewers_read_but_cannot_set_configuration(fleet):
    viewer = {"authorization": f"Bearer {_token(fleet, 'viewer')}"}
    assert fleet.client.get("/v1/config", headers=viewer).status_code == 200
    r = _set(fleet, "class", "medical-cart-cpu", {"poll_interval_s": 60}, headers=viewer)
    assert r.status_code == 403
    r = fleet.client.post(
        "/v1/config/unset", json={"scope": "class", "target": "medical-cart-cpu"}, headers=viewer
    )
    assert r.status_code == 403


def _token(fleet, role: str) -> str:
    r = fleet.client.post("/v1/tokens", json={"name": f"t-{role}", "role": role}, headers=fleet.admin)
    assert r.status_code == 201, r.text
    return r.json()["token"]


def test_the_device_window_and_its_label_override_travel_in_the_signed_state(fleet):
    text = EXAMPLES.read_text().replace(
        'update_window = "any"\ntelemetry_bytes_per_s = 2048',
        'update_window = "22:00-05:00 local"\n'
        'window_overrides = [{labels = {line = "2"}, update_window = "sun 01:00-05:00"}]\n'
        "telemetry_bytes_per_s = 2048",
    )
    classes = [c.to_dict() for c in parse_classes_toml(text)]
    assert fleet.client.post("/v1/classes/apply", json={"classes": classes}, headers=fleet.admin).is_success
    line2, line2_dir = fleet.enroll(fleet.token(labels={"line": "2"}))
    plain, plain_dir = fleet.enroll(fleet.token())
    assert _signed(fleet, line2, line2_dir)["update_window"] == "sun 01:00-05:00"
    assert _signed(fleet, plain, plain_dir)["update_window"] == "22:00-05:00 local"
    view = fleet.client.get(f"/v1/devices/{plain.device_id}/config", headers=fleet.admin).json()
    assert view["update_window"]["window"] == "22:00-05:00 local"
    assert view["update_window"]["timezone"] is None  # not reported yet: read in UTC


def test_a_class_whose_window_does_not_parse_is_refused_and_nothing_is_applied(fleet):
    classes = [c.to_dict() for c in parse_classes_toml(EXAMPLES.read_text())]
    classes[0]["update_window"] = "2am to 4am"
    r = fleet.client.post("/v1/classes/apply", json={"classes": classes}, headers=fleet.admin)
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_update_window"
    assert r.json()["details"]["field"] == "update_window"


def test_an_urgent_rollout_exempts_its_slot_from_windows_and_is_audited(fleet):
    v1, v2 = fleet.artifact("1.0.0"), fleet.artifact("2.0.0")
    fleet.client.put("/v1/pins/class/medical-cart-cpu/default", json={"artifact_id": v1}, headers=fleet.admin)
    identity, ddir = fleet.enroll(fleet.token())
    assert _signed(fleet, identity, ddir)["window_exempt_slots"] == []
    body = {
        "model": "digits",
        "targets": {"medical-cart-cpu": v2},
        "spec": {"stages": [{"percent": 100}], "ignore_windows": True},
    }
    r = fleet.client.post("/v1/rollouts", json=body, headers=fleet.admin)
    assert r.status_code == 201, r.text
    signed = _signed(fleet, identity, ddir)
    assert signed["slots"]["default"]["artifact_id"] == v2
    assert signed["window_exempt_slots"] == ["default"]
    assert "rollout.windows_overridden" in fleet_audit(fleet)
