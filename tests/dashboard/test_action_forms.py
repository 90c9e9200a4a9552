"""Creating rollouts, pins and enrollment tokens from the dashboard, through the real ASGI app: the forms
refuse what the API refuses with the same codes (shown next to their fields, nothing applied), every action
asks first, viewers and forged posts are refused without side effects, and each action is audited."""

from __future__ import annotations

import html as htmlmod
import json
import re

import pytest
from tests.dashboard.conftest import browser, csrf_of, make_token, sign_in

STAGES = {"stages": [{"count": 1, "soak_s": 60}, {"percent": 100, "soak_s": 0}]}


@pytest.fixture
def operator(world):
    client = browser(world[0])
    sign_in(client, make_token(world[0], "operator", "alice"))
    return client


@pytest.fixture
def viewer(world):
    client = browser(world[0])
    sign_in(client, make_token(world[0], "viewer", "victor"))
    return client


def _post(client, path, page_html, **fields):
    return client.post(path, data={"csrf": csrf_of(page_html), **fields}, follow_redirects=False)


def _audit(fleet, **filters):
    return fleet.client.get("/v1/audit", params=filters, headers=fleet.admin).json()["items"]


def _rollouts(fleet):
    return fleet.client.get("/v1/rollouts", headers=fleet.admin).json()["items"]


def _field_error(page: str, field: str) -> str:
    start = page.find(f'id="err-{field}"')
    assert start != -1, f"no error shown next to {field}"
    return htmlmod.unescape(page[start : page.find("</div>", start)])


def _bad_rollouts(v1, v2):
    """(form fields, the same request as an API body, the form field the error belongs to)."""
    good = {"model": "digits", "targets": {"medical-cart-cpu": v2}, "spec": STAGES}
    return [
        ({**good, "spec": {"stages": [{"percent": 0}]}}, "spec"),  # invalid_document: spec.stages.0.percent
        ({**good, "targets": {"medical-cart-cpu": "art_00000000000000ff"}}, "targets"),  # artifact_not_found
        ({**good, "targets": {"jetson-vision-standard": v2}}, "targets"),  # wrong_hardware_class
        ({**good, "model": "m" * 64}, "model"),  # invalid_document: model too long
        ({**good, "slot": "s" * 64}, "slot"),
        ({**good, "selector": {f"k{i}": "v" for i in range(17)}}, "labels"),  # too many labels
    ]


def _as_form(body) -> dict[str, str]:
    return {
        "model": body["model"],
        "targets": "\n".join(f"{c}={a}" for c, a in body["targets"].items()),
        "labels": "\n".join(f"{k}={v}" for k, v in body.get("selector", {}).items()),
        "slot": body.get("slot", "default"),
        "spec": json.dumps(body["spec"]),
    }


def test_the_rollout_form_refuses_what_the_api_refuses_with_its_codes_next_to_the_fields(world, operator):
    fleet, v1, v2, _devices = world
    page = operator.get("/dashboard/rollouts/new").text
    for body, field in _bad_rollouts(v1, v2):
        api = fleet.client.post("/v1/rollouts", json=body, headers=fleet.admin)
        assert api.status_code in (404, 422), api.text
        asked = _post(operator, "/dashboard/rollouts/new", page, **_as_form(body))  # before confirming
        assert asked.status_code == api.status_code, (field, asked.text[:300])
        assert api.json()["code"] in _field_error(asked.text, field)
        # A confirmed post (forged, or the fleet changed since): refused before anything is written.
        r = _post(operator, "/dashboard/rollouts/new", page, confirm="yes", **_as_form(body))
        assert r.status_code == api.status_code, (field, r.text[:300])
        error = api.json()
        assert f'<code id="form-error-code">{error["code"]}</code>' in r.text
        shown = _field_error(r.text, field)
        assert error["code"] in shown
        for entry in error["details"].get("errors", []):  # each problem with its field and what arrived
            assert entry["field"] in shown
            assert entry["expected"] in shown
        if "got" in error["details"]:
            assert str(error["details"]["got"]) in shown
        assert 'aria-invalid="true"' in r.text
        assert _as_form(body)["spec"] in htmlmod.unescape(r.text)  # what was typed stays
    malformed = _post(
        operator,
        "/dashboard/rollouts/new",
        page,
        **{**_as_form(_bad_rollouts(v1, v2)[0][0]), "spec": '{"stages": [NaN]}'},
    )
    assert malformed.status_code == 422
    assert "malformed_json" in _field_error(malformed.text, "spec")
    no_targets = _post(operator, "/dashboard/rollouts/new", page, model="digits", targets="medical-cart-cpu")
    assert "invalid_target" in _field_error(no_targets.text, "targets")
    nul = _post(
        operator, "/dashboard/rollouts/new", page, model="digits", targets="medical-cart-cpu=art_\x00"
    )
    assert (nul.status_code, '<code id="error-code">invalid_form</code>' in nul.text) == (422, True)
    assert _rollouts(fleet) == []
    assert _audit(fleet, action="rollout.create") == []


def test_an_operator_creates_a_rollout_after_confirming(world, operator):
    fleet, v1, v2, _devices = world
    page = operator.get("/dashboard/rollouts/new").text
    form = {
        **_as_form({"model": "digits", "targets": {"medical-cart-cpu": v2}, "spec": STAGES}),
        "labels": "site=site-0",
    }
    asked = _post(operator, "/dashboard/rollouts/new", page, **form)
    assert asked.status_code == 200
    assert "Start a rollout of digits?" in asked.text
    shown = htmlmod.unescape(asked.text)
    assert "1 device(s) → 100 %" in shown
    assert f"from digits 1.0.0 ({v1}) to digits 2.0.0 ({v2})" in shown
    assert _rollouts(fleet) == []  # asking is not doing
    confirm_fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', asked.text))
    confirm_fields = {k: htmlmod.unescape(v) for k, v in confirm_fields.items()}
    assert confirm_fields["confirm"] == "yes"
    assert json.loads(confirm_fields["spec"]) == STAGES
    edit = operator.post("/dashboard/rollouts/new", data={**confirm_fields, "edit": "yes"})
    assert (edit.status_code, 'id="rollout-form"' in edit.text) == (200, True)  # "Edit": the form, filled in
    assert f"medical-cart-cpu={v2}" in edit.text
    assert _rollouts(fleet) == []
    done = operator.post("/dashboard/rollouts/new", data=confirm_fields, follow_redirects=False)
    assert done.status_code == 303, done.text[:300]
    rid = done.headers["location"].split("/")[-1].split("?")[0]
    created = fleet.client.get(f"/v1/rollouts/{rid}", headers=fleet.admin).json()
    assert (created["status"], created["selector"], created["created_by"]) == (
        "running",
        {"site": "site-0"},
        "alice",
    )
    assert created["targets"] == {"medical-cart-cpu": {"from": v1, "to": v2}}
    assert created["spec"]["stages"][0]["count"] == 1
    assert "Rollout created" in operator.get(done.headers["location"]).text
    (row,) = _audit(fleet, action="rollout.create")
    assert (row["actor"], row["target"]) == ("alice", rid)
    # The same request again is refused by the use case (one active rollout per model and class), on the form.
    again = operator.post("/dashboard/rollouts/new", data=confirm_fields, follow_redirects=False)
    assert again.status_code == 409
    assert "rollout_conflict" in _field_error(again.text, "targets")
    assert len(_rollouts(fleet)) == 1


def test_pins_are_listed_set_and_cleared_after_confirming(world, operator):
    fleet, v1, v2, devices = world
    device_id = devices[0][0].device_id
    listed = fleet.client.get("/v1/pins", headers=fleet.admin).json()
    assert [(p["scope"], p["target"], p["artifact_id"]) for p in listed["items"]] == [
        ("class", "medical-cart-cpu", v1)
    ]
    page = operator.get("/dashboard/pins").text
    assert 'data-pin="class:medical-cart-cpu:default"' in page
    fields = {"scope": "device", "target": device_id, "slot": "default", "artifact_id": v2}
    asked = _post(operator, "/dashboard/pins/set", page, **fields)
    assert asked.status_code == 200
    assert f"Pin device {device_id} to {v2}?" in asked.text
    assert "digits 2.0.0" in asked.text  # the artifact, by name
    assert fleet.poll(*devices[0]) == {"default": v1}  # asking is not doing
    done = _post(operator, "/dashboard/pins/set", asked.text, confirm="yes", **fields)
    assert (done.status_code, done.headers["location"]) == (303, "/dashboard/pins?done=pin_set")
    assert fleet.poll(*devices[0]) == {"default": v2}
    assert fleet.poll(*devices[1]) == {"default": v1}
    pins = fleet.client.get("/v1/pins", params={"scope": "device"}, headers=fleet.admin).json()["items"]
    assert [(p["target"], p["artifact_id"], p["created_by"]) for p in pins] == [(device_id, v2, "alice")]
    (row,) = _audit(fleet, action="pin.set", target=f"device:{device_id}")
    assert (row["actor"], row["details"]["artifact_id"]) == ("alice", v2)

    page = operator.get("/dashboard/pins").text
    where = {"scope": "device", "target": device_id, "slot": "default"}
    asked = _post(operator, "/dashboard/pins/clear", page, **where)
    assert asked.status_code == 200
    assert fleet.poll(*devices[0]) == {"default": v2}
    done = _post(operator, "/dashboard/pins/clear", asked.text, confirm="yes", **where)
    assert (done.status_code, done.headers["location"]) == (303, "/dashboard/pins?done=pin_clear")
    assert fleet.poll(*devices[0]) == {"default": v1}
    assert fleet.client.get("/v1/pins", params={"scope": "device"}, headers=fleet.admin).json()["total"] == 0
    assert _audit(fleet, action="pin.clear")[0]["actor"] == "alice"


PIN_REFUSALS = [
    ({"scope": "class", "target": "jetson-vision-standard"}, "wrong_hardware_class", "artifact_id"),
    ({"scope": "device", "target": "dev_00000000000000000000"}, "device_not_found", "target"),
    ({"scope": "region", "target": "medical-cart-cpu"}, "invalid_scope", "scope"),
    ({"scope": "class", "target": "medical-cart-cpu", "slot": "Bad Slot"}, "invalid_name", "slot"),
    ({"scope": "class", "target": "x" * 64}, "invalid_document", "target"),
    (
        {"scope": "class", "target": "medical-cart-cpu", "artifact_id": "a" * 21},
        "invalid_document",
        "artifact_id",
    ),
    (
        {"scope": "class", "target": "medical-cart-cpu", "artifact_id": "art_00000000000000ff"},
        "artifact_not_found",
        "artifact_id",
    ),
]


def test_a_refused_pin_shows_its_code_next_to_the_field_and_changes_nothing(world, operator):
    fleet, _v1, v2, _devices = world
    page = operator.get("/dashboard/pins").text
    for fields, code, field in PIN_REFUSALS:
        body = {"slot": "default", "artifact_id": v2, **fields}
        r = _post(operator, "/dashboard/pins/set", page, confirm="yes", **body)
        assert r.status_code in (404, 422), r.text[:300]
        assert code in _field_error(r.text, field), code
        assert "Nothing was changed" in r.text
    pins = fleet.client.get("/v1/pins", headers=fleet.admin).json()["items"]
    assert [p["target"] for p in pins] == ["medical-cart-cpu"]
    assert [a["actor"] for a in _audit(fleet, action="pin.set")] == ["bootstrap-admin"]  # the fixture's pin


def test_an_enrollment_token_is_shown_once_and_enrolls_a_device(world, operator):
    fleet, _v1, _v2, _devices = world
    page = operator.get("/dashboard/enrollment-tokens/new").text
    assert '<option value="medical-cart-cpu">' in page  # the known classes are offered
    fields = {
        "hardware_class": "medical-cart-cpu",
        "labels": "site=site-9\nline=3",
        "serial": "",
        "ttl_s": "600",
        "uses": "2",
    }
    asked = _post(operator, "/dashboard/enrollment-tokens/new", page, **fields)
    assert asked.status_code == 200
    assert "efen_" not in asked.text  # asking is not doing
    before = _audit(fleet, action="enrollment_token.create")
    created = _post(operator, "/dashboard/enrollment-tokens/new", asked.text, confirm="yes", **fields)
    assert created.status_code == 200
    assert created.headers["cache-control"] == "no-store"
    token = re.search(r'<code id="enrollment-token">(efen_[^<]+)</code>', created.text).group(1)
    token_id = re.search(r'<dd id="enrollment-token-id">(enr_[0-9a-f]+)</dd>', created.text).group(1)
    after = _audit(fleet, action="enrollment_token.create")
    assert len(after) == len(before) + 1
    row = after[0]  # newest first
    assert (row["actor"], row["target"]) == ("alice", token_id)
    assert row["details"]["labels"] == {"site": "site-9", "line": "3"}
    assert token not in json.dumps(_audit(fleet))  # never in the audit log
    for path in ("/dashboard/audit", "/dashboard/enrollment-tokens/new", "/dashboard/"):
        assert token not in operator.get(path).text  # never shown again
    identity, _ddir = fleet.enroll(token)
    device = fleet.client.get(f"/v1/devices/{identity.device_id}", headers=fleet.admin).json()
    assert device["labels"] == {"site": "site-9", "line": "3"}


TOKEN_REFUSALS = [
    ({"hardware_class": "no-such-class"}, "class_not_found", "hardware_class"),
    ({"ttl_s": "10"}, "invalid_document", "ttl_s"),
    ({"ttl_s": "soon"}, "invalid_document", "ttl_s"),
    ({"uses": "0"}, "invalid_document", "uses"),
    ({"labels": "Site=1"}, "invalid_labels", "labels"),
    ({"labels": "site"}, "invalid_labels", "labels"),
    ({"serial": "a b"}, "invalid_serial", "serial"),
]


def test_a_refused_enrollment_token_shows_the_apis_code_next_to_the_field(world, operator):
    fleet = world[0]
    page = operator.get("/dashboard/enrollment-tokens/new").text
    before = _audit(fleet, action="enrollment_token.create")
    for fields, code, field in TOKEN_REFUSALS:
        body = {
            "hardware_class": "medical-cart-cpu",
            "ttl_s": "3600",
            "uses": "1",
            "labels": "",
            "serial": "",
        }
        r = _post(operator, "/dashboard/enrollment-tokens/new", page, confirm="yes", **{**body, **fields})
        assert r.status_code in (404, 422), r.text[:300]
        assert code in _field_error(r.text, field), code
        assert "efen_" not in r.text
    assert _audit(fleet, action="enrollment_token.create") == before


def _every_action(fleet, v2, devices, rid):
    """Each dashboard action of issue 19 with fields that an operator's confirmed post would carry out."""
    device_id = devices[0][0].device_id
    rollout = {**_as_form({"model": "digits", "targets": {"medical-cart-cpu": v2}, "spec": STAGES})}
    return [
        ("/dashboard/rollouts/new", rollout),
        (f"/dashboard/rollouts/{rid}/pause", {}),
        (f"/dashboard/rollouts/{rid}/resume", {}),
        (f"/dashboard/rollouts/{rid}/promote", {}),
        (f"/dashboard/rollouts/{rid}/abort", {}),
        (
            "/dashboard/pins/set",
            {"scope": "device", "target": device_id, "slot": "default", "artifact_id": v2},
        ),
        ("/dashboard/pins/clear", {"scope": "class", "target": "medical-cart-cpu", "slot": "default"}),
        (
            "/dashboard/enrollment-tokens/new",
            {"hardware_class": "medical-cart-cpu", "ttl_s": "600", "uses": "1"},
        ),
    ]


def _api_rollout(fleet, v2) -> str:
    body = {"model": "digits", "targets": {"medical-cart-cpu": v2}, "spec": STAGES}
    r = fleet.client.post("/v1/rollouts", json=body, headers=fleet.admin)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _nothing_changed(fleet, rid, audit_before):
    assert [r["id"] for r in _rollouts(fleet)] == [rid]
    rollout = fleet.client.get(f"/v1/rollouts/{rid}", headers=fleet.admin).json()
    assert (rollout["status"], [e["kind"] for e in rollout["events"]]) == ("running", ["created"])
    pins = fleet.client.get("/v1/pins", headers=fleet.admin).json()["items"]
    assert [(p["scope"], p["target"]) for p in pins] == [("class", "medical-cart-cpu")]
    assert _audit(fleet) == audit_before


def test_a_viewer_sees_no_action_and_is_refused_each_one(world, viewer):
    fleet, _v1, v2, devices = world
    rid = _api_rollout(fleet, v2)
    audit_before = _audit(fleet)
    for path in ("/dashboard/rollouts", f"/dashboard/rollouts/{rid}", "/dashboard/pins"):
        page = viewer.get(path).text
        for label in ("New rollout", "Pause", "Promote", "Abort…", "Clear…", "Set pin…"):
            assert f">{label}" not in page, (path, label)
        if path != "/dashboard/rollouts":
            assert "operator role" in page
    for path in ("/dashboard/rollouts/new", "/dashboard/enrollment-tokens/new"):
        r = viewer.get(path)
        assert r.status_code == 403
        assert '<code id="error-code">permission_denied</code>' in r.text
    page = viewer.get("/dashboard/pins").text
    for path, fields in _every_action(fleet, v2, devices, rid):
        for confirm in ({}, {"confirm": "yes"}):  # the button's post and a forged confirmation
            r = _post(viewer, path, page, **fields, **confirm)
            assert r.status_code == 403, (path, r.text[:300])
            assert '<code id="error-code">permission_denied</code>' in r.text, path
            assert "efen_" not in r.text
    _nothing_changed(fleet, rid, audit_before)


def test_posts_without_the_sessions_csrf_token_are_refused_without_side_effects(world, operator):
    fleet, _v1, v2, devices = world
    rid = _api_rollout(fleet, v2)
    audit_before = _audit(fleet)
    for path, fields in _every_action(fleet, v2, devices, rid):
        for csrf in ({}, {"csrf": "forged-token"}):
            r = operator.post(path, data={**fields, **csrf, "confirm": "yes"}, follow_redirects=False)
            assert r.status_code == 403, (path, r.text[:300])
            assert '<code id="error-code">csrf_failed</code>' in r.text, path
        page = operator.get("/dashboard/pins").text
        r = operator.post(
            path,
            data={**fields, "csrf": csrf_of(page), "confirm": "yes"},
            headers={"origin": "https://evil.example"},
            follow_redirects=False,
        )
        assert (r.status_code, "csrf_failed" in r.text) == (403, True), path
    _nothing_changed(fleet, rid, audit_before)


def test_the_rollout_form_targets_a_label_selector(world, operator):
    fleet, _v1, v2, devices = world
    page = operator.get("/dashboard/rollouts/new").text
    assert 'name="selector"' in page
    form = {
        **_as_form({"model": "digits", "targets": {"medical-cart-cpu": v2}, "spec": STAGES}),
        "selector": "site in (site-0), !retired",
    }
    for bad, code in (("site=", "invalid_selector"), ("site=a,site=b", "selector_conflict")):
        refused = _post(operator, "/dashboard/rollouts/new", page, **{**form, "selector": bad})
        assert refused.status_code == 422
        assert code in _field_error(refused.text, "selector")
    nothing = _post(
        operator, "/dashboard/rollouts/new", page, confirm="yes", **{**form, "selector": "site=x"}
    )
    assert nothing.status_code == 422
    assert "selector_matches_nothing" in _field_error(nothing.text, "selector")
    both = _post(operator, "/dashboard/rollouts/new", page, **{**form, "labels": "site=site-0"})
    assert "invalid_selector" in _field_error(both.text, "selector")
    assert _rollouts(fleet) == []
    asked = _post(operator, "/dashboard/rollouts/new", page, **form)
    assert "site in (site-0),!retired" in htmlmod.unescape(asked.text)  # canonical form on the confirmation
    done = _post(operator, "/dashboard/rollouts/new", page, confirm="yes", **form)
    assert done.status_code == 303, done.text[:300]
    (created,) = _rollouts(fleet)
    assert created["selector"] == "site in (site-0),!retired"
    detail = fleet.client.get(f"/v1/rollouts/{created['id']}", headers=fleet.admin).json()
    assert sum(int(s.get("members", 0)) for s in detail["stage_detail"]) == len(
        devices[::2]
    )  # the site-0 half
