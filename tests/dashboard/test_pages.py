"""The dashboard through the real ASGI app with real enrolled devices on the signed channel: sign-in and
its cookie, every page, operator actions with confirmation, viewers refused, CSRF and origin checks."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from tests.dashboard.conftest import browser, csrf_of, make_token, sign_in

SLOW_STAGES = {
    "stages": [
        {"count": 1, "soak_s": 60, "gates": {"min_requests": 10}},
        {"percent": 50, "soak_s": 60, "gates": {"min_requests": 10}},
        {"percent": 100, "soak_s": 0, "gates": {"min_requests": 10}},
    ]
}


def _rollout(fleet, v2, spec=SLOW_STAGES):
    r = fleet.client.post(
        "/v1/rollouts",
        json={"model": "digits", "targets": {"medical-cart-cpu": v2}, "spec": spec},
        headers=fleet.admin,
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _status(fleet, rid):
    return fleet.client.get(f"/v1/rollouts/{rid}", headers=fleet.admin).json()["status"]


def _post(client, path, page_html, **fields):
    return client.post(path, data={"csrf": csrf_of(page_html), **fields}, follow_redirects=False)


@pytest.fixture
def operator(world):
    fleet = world[0]
    client = browser(fleet)
    sign_in(client, make_token(fleet, "operator", "alice"))
    return client


@pytest.fixture
def viewer(world):
    fleet = world[0]
    client = browser(fleet)
    sign_in(client, make_token(fleet, "viewer", "victor"))
    return client


def test_pages_need_a_session(world):
    fleet, v1, _v2, devices = world
    client = browser(fleet)
    for path in ("/dashboard/", "/dashboard/audit", f"/dashboard/devices/{devices[0][0].device_id}"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/dashboard/login?next=")
    r = client.post(f"/dashboard/artifacts/{v1}/disable", data={"csrf": "x"}, follow_redirects=False)
    assert r.status_code == 303
    assert fleet.client.get(f"/v1/artifacts/{v1}", headers=fleet.admin).json()["disabled"] is False
    # A forged or tampered cookie is no session either.
    client.cookies.set("ef_session", "A" * 80, path="/dashboard")
    assert client.get("/dashboard/", follow_redirects=False).status_code == 303


def test_sign_in_sets_a_strict_http_only_cookie_and_secure_over_https(world):
    fleet = world[0]
    token = make_token(fleet, "viewer", "vera")
    for https in (False, True):
        client = browser(fleet, https=https)
        page = client.get("/dashboard/login")
        r = client.post(
            "/dashboard/login",
            data={"csrf": csrf_of(page.text), "token": token, "next": "/dashboard/audit"},
            follow_redirects=False,
        )
        assert (r.status_code, r.headers["location"]) == (303, "/dashboard/audit")
        cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("ef_session="))
        attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "samesite", "path", "max-age"} <= attrs
        assert "samesite=strict" in cookie.lower()
        assert "path=/dashboard" in cookie.lower()
        assert ("secure" in attrs) is https
        assert token not in cookie
        assert client.get("/dashboard/audit").status_code == 200


def test_sign_in_refuses_a_bad_token_and_a_missing_form_token(world):
    fleet = world[0]
    client = browser(fleet)
    page = client.get("/dashboard/login")
    r = client.post("/dashboard/login", data={"csrf": csrf_of(page.text), "token": "efop_wrong"})
    assert r.status_code == 401
    assert "not valid" in r.text
    assert "ef_session" not in r.headers.get("set-cookie", "")
    r = client.post("/dashboard/login", data={"token": fleet.admin["authorization"].split()[1]})
    assert r.status_code == 403
    assert "csrf_failed" in r.text


def test_every_page_renders_what_the_fleet_holds(world, operator):
    fleet, v1, v2, devices = world
    rid = _rollout(fleet, v2)
    page = operator.get(f"/dashboard/rollouts/{rid}/live").text
    assert "The engine has not evaluated this rollout's gates yet" in page
    fleet.tick()  # the engine's first evaluation (every rollout_tick_s): the gates it judged are shown
    device_id = devices[0][0].device_id
    pages = {
        "/dashboard/": ["medical-cart-cpu", "digits 1.0.0", rid, "Model versions in the field"],
        "/dashboard/fleet/health": [
            "Model health, last hour",
            "medical-cart-cpu",
            "300",
            "Input faults",
            "requests but no success for 10 min: <strong>0</strong>",
        ],
        "/dashboard/rollouts": [rid, "running"],
        f"/dashboard/rollouts/{rid}": ["stage 1 of 3", "Gates of stage 1", "Latency p95 vs previous version"],
        f"/dashboard/rollouts/{rid}/live": ["stage 1 of 3"],
        "/dashboard/devices": [device_id, "site="],
        f"/dashboard/devices/{device_id}": [
            device_id,
            "Slots",
            "digits 1.0.0",
            "Latency p95",
            "Field health",
        ],
        "/dashboard/devices?status=stale&hardware_class=medical-cart-cpu": [device_id],  # 5 min silent
        "/dashboard/models": ["digits", "Version 2.0.0", v2],
        f"/dashboard/artifacts/{v1}": ["Measured metrics", "model.onnx", "onnxruntime"],
        "/dashboard/audit": ["rollout.create", rid, "bootstrap-admin"],
        f"/dashboard/audit?target={rid}": ["rollout.create"],
    }
    for path, expected in pages.items():
        r = operator.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
        assert r.headers["cache-control"] == "no-store"
        for text in expected:
            assert text in r.text, (path, text)
    assert operator.get("/dashboard/rollouts/ro_0000000000000000").status_code == 404
    assert operator.get("/dashboard/devices/not-a-device").status_code == 404


def test_an_operator_aborts_a_rollout_after_confirming(world, operator):
    fleet, v1, v2, devices = world
    rid = _rollout(fleet, v2)
    page = operator.get(f"/dashboard/rollouts/{rid}").text
    assert "Abort…" in page
    first = _post(operator, f"/dashboard/rollouts/{rid}/abort", page)
    assert first.status_code == 200
    assert "Abort rollout" in first.text
    assert _status(fleet, rid) == "running"  # asking is not doing
    done = _post(
        operator, f"/dashboard/rollouts/{rid}/abort", first.text, confirm="yes", reason="customer complaint"
    )
    assert (done.status_code, done.headers["location"]) == (303, f"/dashboard/rollouts/{rid}?done=abort")
    assert _status(fleet, rid) == "aborted"
    shown = operator.get(done.headers["location"]).text
    assert "Rollout aborted" in shown
    assert "operator_abort" in shown
    assert "customer complaint" in shown
    assert "Rollback" in shown
    audit = fleet.client.get("/v1/audit", params={"target": rid}, headers=fleet.admin).json()["items"]
    assert (audit[0]["action"], audit[0]["actor"]) == ("rollout.abort", "alice")
    assert all(fleet.poll(i, d) == {"default": v1} for i, d in devices)


def test_pause_resume_promote_ask_first_then_act(world, operator):
    fleet, _v1, v2, _devices = world
    rid = _rollout(fleet, v2)
    for action, before, status in (
        ("pause", "running", "paused"),
        ("resume", "paused", "running"),
        ("promote", "running", "running"),
    ):
        page = operator.get(f"/dashboard/rollouts/{rid}").text
        asked = _post(operator, f"/dashboard/rollouts/{rid}/{action}", page)
        assert asked.status_code == 200, asked.text
        assert 'name="confirm" value="yes"' in asked.text
        assert _status(fleet, rid) == before  # asking is not doing
        r = _post(operator, f"/dashboard/rollouts/{rid}/{action}", asked.text, confirm="yes", reason="r")
        assert (r.status_code, r.headers["location"]) == (303, f"/dashboard/rollouts/{rid}?done={action}")
        assert _status(fleet, rid) == status
    audit = fleet.client.get("/v1/audit", params={"target": rid}, headers=fleet.admin).json()["items"]
    assert [a["action"] for a in audit[:3]] == ["rollout.promote", "rollout.resume", "rollout.pause"]
    assert {a["actor"] for a in audit[:3]} == {"alice"}


def test_a_viewer_sees_but_is_refused_the_same_action(world, viewer):
    fleet, _v1, v2, devices = world
    rid = _rollout(fleet, v2)
    page = viewer.get(f"/dashboard/rollouts/{rid}").text
    assert "Abort…" not in page
    assert "actions need the operator role" in page
    for path, fields in (
        (f"/dashboard/rollouts/{rid}/abort", {"confirm": "yes"}),
        (f"/dashboard/rollouts/{rid}/pause", {}),
        (f"/dashboard/devices/{devices[0][0].device_id}/revoke", {"confirm": "yes"}),
        (f"/dashboard/artifacts/{v2}/disable", {"confirm": "yes"}),
    ):
        r = _post(viewer, path, page, **fields)
        assert r.status_code == 403, path
        assert "permission_denied" in r.text
        assert "operator" in r.text
    assert _status(fleet, rid) == "running"
    assert fleet.client.get(f"/v1/artifacts/{v2}", headers=fleet.admin).json()["disabled"] is False


def test_forms_without_the_sessions_csrf_token_or_from_another_origin_are_refused(world, operator):
    fleet, _v1, v2, _devices = world
    rid = _rollout(fleet, v2)
    path = f"/dashboard/rollouts/{rid}/pause"
    assert operator.post(path, data={"reason": ""}, follow_redirects=False).status_code == 403
    assert operator.post(path, data={"csrf": "guess"}, follow_redirects=False).status_code == 403
    page = operator.get(f"/dashboard/rollouts/{rid}").text
    r = operator.post(
        path, data={"csrf": csrf_of(page)}, headers={"origin": "https://evil.example"}, follow_redirects=False
    )
    assert r.status_code == 403
    r = operator.post(path, content=b'{"csrf": "x"}', headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert _status(fleet, rid) == "running"


def test_revoking_the_token_ends_its_sessions_at_once(world):
    fleet = world[0]
    r = fleet.client.post("/v1/tokens", json={"name": "temp", "role": "operator"}, headers=fleet.admin)
    token, token_id = r.json()["token"], r.json()["id"]
    client = browser(fleet)
    sign_in(client, token)
    assert client.get("/dashboard/").status_code == 200
    assert fleet.client.delete(f"/v1/tokens/{token_id}", headers=fleet.admin).status_code in (200, 204)
    assert client.get("/dashboard/", follow_redirects=False).status_code == 303


def test_the_device_page_says_which_slot_is_behind_and_why(world, operator):
    fleet, v1, v2, devices = world
    identity, ddir = devices[0]
    page = operator.get(f"/dashboard/devices/{identity.device_id}").text
    assert "Behind its desired state" not in page
    body = {
        "sequence": 99,
        "boot_id": "boot-" + identity.device_id,
        "reported_at": fleet.clock().isoformat(),
        "status": "updating",
        "slots": {
            "default": {
                "active": v1,
                "desired": v2,
                "state": "refused:rolled_back",
                "behind": "refused:rolled_back",
                "retrying": False,
            }
        },
    }
    fleet.channel(identity, ddir).request("POST", "/v1/device/report", json_body=body)
    page = operator.get(f"/dashboard/devices/{identity.device_id}").text
    assert "Behind its desired state" in page
    assert "<code>refused:rolled_back</code>" in page
    assert "waiting for a new desired state" in page
    assert f'href="/dashboard/artifacts/{v2}">digits 2.0.0</a>' in page  # the desired version, by name
    assert "updating" in page
    listed = operator.get("/dashboard/devices").text
    assert "default behind: <code>refused:rolled_back</code>" in listed
    assert listed.count(" behind: <code>") == 1  # the other five devices are up to date


def test_revoke_a_device_and_disable_an_artifact(world, operator):
    fleet, _v1, v2, devices = world
    identity, ddir = devices[0]
    page = operator.get(f"/dashboard/devices/{identity.device_id}").text
    asked = _post(operator, f"/dashboard/devices/{identity.device_id}/revoke", page)
    assert "Revoke device" in asked.text
    r = _post(
        operator,
        f"/dashboard/devices/{identity.device_id}/revoke",
        asked.text,
        confirm="yes",
        reason="stolen",
    )
    assert r.status_code == 303
    shown = operator.get(r.headers["location"]).text
    assert "stolen" in shown
    assert "revoked" in shown
    with pytest.raises(Exception, match="revoked"):
        fleet.poll(identity, ddir)

    page = operator.get(f"/dashboard/artifacts/{v2}").text
    asked = _post(operator, f"/dashboard/artifacts/{v2}/disable", page)
    r = _post(operator, f"/dashboard/artifacts/{v2}/disable", asked.text, confirm="yes", reason="bad build")
    assert r.status_code == 303
    assert fleet.client.get(f"/v1/artifacts/{v2}", headers=fleet.admin).json()["disabled"] is True
    page = operator.get(f"/dashboard/artifacts/{v2}").text
    assert "bad build" in page
    r = _post(operator, f"/dashboard/artifacts/{v2}/enable", page)  # not destructive: no confirmation
    assert r.status_code == 303
    assert fleet.client.get(f"/v1/artifacts/{v2}", headers=fleet.admin).json()["disabled"] is False


def test_an_operator_rolls_a_device_back_to_its_previous_version_after_confirming(world, operator, viewer):
    fleet, v1, v2, devices = world
    identity, ddir = devices[0]
    page = operator.get(f"/dashboard/devices/{identity.device_id}").text
    assert "Roll back…" not in page  # it reported no previous version
    fleet.report(identity, ddir, active=v2, previous=v1)
    page = operator.get(f"/dashboard/devices/{identity.device_id}").text
    assert "Roll back…" in page
    asked = _post(operator, f"/dashboard/devices/{identity.device_id}/rollback", page)
    assert "Roll device" in asked.text
    assert fleet.poll(identity, ddir) == {"default": v1}  # asking changed nothing yet (class pin is v1)
    fleet.client.put(
        f"/v1/pins/device/{identity.device_id}/default", json={"artifact_id": v2}, headers=fleet.admin
    )
    assert fleet.poll(identity, ddir) == {"default": v2}
    r = _post(operator, f"/dashboard/devices/{identity.device_id}/rollback", asked.text, confirm="yes")
    assert r.status_code == 303
    assert "previous version" in operator.get(r.headers["location"]).text
    assert fleet.poll(identity, ddir) == {"default": v1}
    audit = fleet.client.get("/v1/audit", headers=fleet.admin).json()["items"]
    assert any(e["action"] == "device.rollback" and e["actor"] == "alice" for e in audit)
    # A viewer is refused the same action.
    page = viewer.get(f"/dashboard/devices/{identity.device_id}").text
    assert "Roll back…" not in page
    refused = _post(viewer, f"/dashboard/devices/{identity.device_id}/rollback", page, confirm="yes")
    assert refused.status_code == 403


def test_a_halted_rollout_shows_its_gate_numbers_and_rollback(world, operator):
    fleet, _v1, v2, devices = world
    rid = _rollout(fleet, v2)
    for identity, ddir in devices:
        if fleet.poll(identity, ddir).get("default") == v2:
            fleet.report(identity, ddir, active=v2)
            fleet.serve(identity, ddir, v2, requests=40, latency_ms=30)  # 3x slower than v1
    fleet.clock.now += timedelta(seconds=5)
    fleet.tick()
    assert _status(fleet, rid) == "halted"
    live = operator.get(f"/dashboard/rollouts/{rid}/live").text
    assert 'data-final="true"' in live
    assert "latency_p95_ratio" in live
    assert re.search(r'data-gate="latency_p95_ratio"[^>]*>', live)
    assert 'class="gate gate-breach" data-gate="latency_p95_ratio"' in live
    assert "Rollback" in live
    full = operator.get(f"/dashboard/rollouts/{rid}").text
    assert "data-live-src" not in full  # a finished rollout stops polling
    for identity, ddir in devices:
        fleet.report(identity, ddir, active=fleet.poll(identity, ddir)["default"])
    live = operator.get(f"/dashboard/rollouts/{rid}/live").text
    assert re.search(r"<td class=\"n\">1</td><td class=\"n\">0</td><td class=\"n\">0</td>", live)


def test_static_files_are_served_from_a_fixed_list(world):
    fleet = world[0]
    client = browser(fleet)
    r = client.get("/dashboard/static/uPlot.iife.min.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert (
        client.get(
            "/dashboard/static/uPlot.iife.min.js", headers={"if-none-match": r.headers["etag"]}
        ).status_code
        == 304
    )
    assert "MIT" in client.get("/dashboard/static/uPlot.LICENSE").text
    assert client.get("/dashboard/static/..%2Fpages.py").status_code == 404
    assert client.get("/dashboard/static/session.py").status_code == 404


def test_logout_clears_the_session(world, operator):
    page = operator.get("/dashboard/").text
    r = _post(operator, "/dashboard/logout", page)
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/login")
    assert operator.get("/dashboard/", follow_redirects=False).status_code == 303


def _two_class_rollout(world):
    """The cart devices of ``world`` plus two GPU gateways, and one rollout of 2.0.0 over both classes."""
    fleet, _v1, v2, carts = world
    gpu = "factory-gateway-gpu"
    gpu_v1, gpu_v2 = fleet.artifact("1.0.0", hardware_class=gpu), fleet.artifact("2.0.0", hardware_class=gpu)
    r = fleet.client.put(f"/v1/pins/class/{gpu}/default", json={"artifact_id": gpu_v1}, headers=fleet.admin)
    assert r.status_code == 204
    gateways = [fleet.enroll(fleet.token(hardware_class=gpu)) for _ in range(2)]
    r = fleet.client.post(
        "/v1/rollouts",
        json={
            "model": "digits",
            "targets": {"medical-cart-cpu": v2, gpu: gpu_v2},
            "spec": {
                "stages": [
                    {"percent": 100, "soak_s": 600, "gates": {"min_requests": 9, "max_latency_p95_ratio": 9}}
                ]
            },
        },
        headers=fleet.admin,
    )
    assert r.status_code == 201, r.text
    return fleet, r.json()["id"], gpu, (carts, v2), (gateways, gpu_v2)


def _gate_row(live: str, gate: str, hardware_class: str) -> str:
    match = re.search(
        rf'<tr class="gate gate-(\w+)" data-gate="{gate}" data-class="{hardware_class}">.*?</tr>', live, re.S
    )
    assert match, (gate, hardware_class)
    return match.group(0)


def test_a_rollout_over_two_classes_shows_each_class_against_its_own_envelope(world, operator):
    """Carts (50 ms envelope) at 35 ms are fine even though the GPU gateways' envelope is 10 ms; the page
    judges each class on its own devices, as the engine does, instead of one merged p95 and the tightest
    envelope."""
    fleet, rid, gpu, (carts, v2), (gateways, gpu_v2) = _two_class_rollout(world)
    for devices, target, latency_ms in ((carts, v2, 35), (gateways, gpu_v2, 5)):
        for identity, ddir in devices:
            assert fleet.poll(identity, ddir) == {"default": target}
            fleet.report(identity, ddir, active=target)
            fleet.serve(identity, ddir, target, requests=40, latency_ms=latency_ms)
    fleet.clock.now += timedelta(seconds=5)
    fleet.tick()
    live = operator.get(f"/dashboard/rollouts/{rid}/live").text
    assert "Gates of stage 1 · medical-cart-cpu" in live
    assert f"Gates of stage 1 · {gpu}" in live
    assert "gate-ok" in _gate_row(live, "latency_p95_ms", "medical-cart-cpu")
    assert "50" in _gate_row(live, "latency_p95_ms", "medical-cart-cpu")  # the carts' own envelope
    assert "gate-ok" in _gate_row(live, "latency_p95_ms", gpu)
    assert "10" in _gate_row(live, "latency_p95_ms", gpu)
    assert _status(fleet, rid) == "running"


def _one_gateway_fails_its_install(world, *, cart_requests=0):
    """``_two_class_rollout`` where every cart installs (and serves ``cart_requests`` each) and one of the two
    gateways fails its install; the engine has evaluated once."""
    fleet, rid, gpu, (carts, v2), (gateways, gpu_v2) = _two_class_rollout(world)
    for identity, ddir in carts:
        fleet.poll(identity, ddir)
        fleet.report(identity, ddir, active=v2)
        if cart_requests:
            fleet.serve(identity, ddir, v2, requests=cart_requests, latency_ms=35)
    (bad, bad_dir), (good, good_dir) = gateways
    fleet.poll(bad, bad_dir)
    fleet.report(bad, bad_dir, active=None, failed=gpu_v2)
    fleet.poll(good, good_dir)
    fleet.report(good, good_dir, active=gpu_v2)
    fleet.clock.now += timedelta(seconds=5)
    fleet.tick()
    return fleet, rid, gpu


def test_install_failures_are_shown_in_the_class_they_happened_in(world, operator):
    fleet, rid, gpu = _one_gateway_fails_its_install(world)
    assert _status(fleet, rid) == "halted"
    live = operator.get(f"/dashboard/rollouts/{rid}/live").text
    assert "gate-breach" in _gate_row(live, "install_failure_rate", gpu)
    assert ">0.5" in _gate_row(live, "install_failure_rate", gpu)  # 1 of the 2 gateways, not 1 of 8
    assert "gate-ok" in _gate_row(live, "install_failure_rate", "medical-cart-cpu")


def test_the_artifact_page_shows_the_build_report_its_manifest_carries(world, operator):
    import hashlib

    from edgefleet.client import EdgefleetClient
    from edgefleet.protocol.manifest import ArtifactManifest
    from edgefleet.sim.artifacts import stand_in_manifest

    fleet = world[0]
    client = EdgefleetClient(
        str(fleet.client.base_url), fleet.admin["authorization"].split()[1], transport=fleet.client._transport
    )
    files = {"model.onnx": b"onnx-3", "golden.npz": b"golden-3"}
    for data in files.values():
        client.upload_blob_bytes(data, sha256=hashlib.sha256(data).hexdigest())
    client.create_version("digits", "3.0.0", source_sha256=hashlib.sha256(files["model.onnx"]).hexdigest())
    body = stand_in_manifest(model="digits", version="3.0.0", hardware_class="medical-cart-cpu", files=files)
    report = {
        "measured_on": "this machine",
        "chosen": "fp32",
        "summary": "optimization did not help: fp32 kept",
        "candidates": [
            {
                "name": "fp32",
                "precision": "fp32",
                "size_bytes": 100,
                "latency_p50_ms": 1.5,
                "agreement": 1.0,
                "task_value": 0.98,
                "eligible": True,
                "reasons": [],
            },
            {
                "name": "int8-static-minmax-pc",
                "precision": "int8",
                "size_bytes": 40,
                "latency_p50_ms": 1.9,
                "agreement": 0.99,
                "task_value": 0.97,
                "eligible": False,
                "reasons": ["slower than fp32"],
            },
        ],
    }
    art = client.register_artifact(ArtifactManifest.parse({**body.to_dict(), "build_report": report})).id
    page = operator.get(f"/dashboard/artifacts/{art}").text
    assert "Build report" in page
    assert "optimization did not help" in page
    int8 = re.search(r'<tr data-candidate="int8-static-minmax-pc">.*?</tr>', page, re.S).group(0)
    assert "refused: slower than fp32" in int8
    chosen = re.search(r'<tr data-candidate="fp32"[^>]*>.*?</tr>', page, re.S).group(0)
    assert "<strong>chosen</strong>" in chosen
    # a stand-in artifact without one simply has no such section
    assert "Build report" not in operator.get(f"/dashboard/artifacts/{world[1]}").text


VERDICTS = ("ok", "breach", "waiting", "off")


def _cli_verdicts(text: str) -> dict[tuple[str, str], str]:
    """(class, gate) -> verdict, read back from the CLI's status view (one table per class)."""
    out: dict[tuple[str, str], str] = {}
    for block in text.split("\n\n"):
        heading, _, table = block.partition("\n")
        if not heading.startswith("gates of class "):
            continue
        hardware_class = heading.removeprefix("gates of class ").strip()
        for line in table.splitlines()[1:]:
            tokens = line.split()
            out[(hardware_class, tokens[0])] = next(t for t in tokens[1:] if t in VERDICTS)
    return out


def test_the_api_the_dashboard_and_the_cli_show_the_same_verdicts_for_the_same_rollout(world, operator):
    """One evaluation, three renderings: the API's JSON (the engine's rows), the dashboard's live part and
    the CLI's status view agree on every gate of every class, and none of them re-judges a gate."""
    from edgefleet.cli.rollout_cmd import render_rollout
    from edgefleet.client.rollouts import RolloutInfo

    fleet, rid, gpu = _one_gateway_fails_its_install(world, cart_requests=1)  # under min_requests (9) in all
    wire = fleet.client.get(f"/v1/rollouts/{rid}", headers=fleet.admin).json()
    assert wire["status"] == "halted"
    api = {(g["hardware_class"], g["name"]): g["verdict"] for g in wire["last_decision"]["gates"]}
    live = operator.get(f"/dashboard/rollouts/{rid}/live").text
    dashboard = {
        (cls, gate): verdict
        for verdict, gate, cls in re.findall(
            r'<tr class="gate gate-(\w+)" data-gate="(\w+)" data-class="([^"]+)">', live
        )
    }
    cli = _cli_verdicts(render_rollout(RolloutInfo.model_validate(wire)))
    assert api == dashboard == cli
    assert set(api.values()) == set(VERDICTS)  # every kind of verdict is on show
    assert api[(gpu, "install_failure_rate")] == "breach"
    requests = next(
        g
        for g in wire["last_decision"]["gates"]
        if g["name"] == "requests" and g["hardware_class"] == "medical-cart-cpu"
    )
    assert 0 < requests["observed"] < 9
    assert api[("medical-cart-cpu", "error_rate")] == "waiting"  # under min_requests: never judged early
    assert wire["halt_reason"]["gate"] == "install_failure_rate"


def _download_event(fleet, identity, ddir, artifact: str, **details) -> None:
    """One ``install_download_done`` event as the agent sends it (agent/observed.py), signed."""
    fleet.sequence = getattr(fleet, "sequence", 0) + 1
    record = {
        "boot_id": "boot1",
        "sequence": fleet.sequence,
        "kind": "event",
        "event": {
            "at": fleet.clock().isoformat(),
            "kind": "update",
            "code": "install_download_done",
            "details": {"slot": "default", "artifact": artifact, "step": "download", **details},
        },
    }
    batch = {"device_id": identity.device_id, "sent_at": fleet.clock().isoformat(), "records": [record]}
    fleet.channel(identity, ddir).request("POST", "/v1/device/telemetry", json_body=batch)


def test_the_rollout_page_shows_the_bytes_deltas_saved(world, operator):
    fleet, _v1, v2, devices = world
    rid = _rollout(fleet, v2, {"stages": [{"percent": 100, "soak_s": 60, "gates": {"min_requests": 10}}]})
    (a, a_dir), (b, b_dir) = devices[0], devices[1]
    mib = 1024 * 1024
    _download_event(fleet, a, a_dir, v2, full_bytes=10 * mib, bytes_downloaded=mib // 2, delta_files=1)
    _download_event(
        fleet, b, b_dir, v2, full_bytes=10 * mib, bytes_downloaded=10 * mib, delta_files=0,
        delta_fallbacks="model.onnx=delta_base_missing",
    )  # fmt: skip
    _download_event(fleet, a, a_dir, "art_other", full_bytes=mib, bytes_downloaded=mib, delta_files=0)
    transfer = fleet.client.get(f"/v1/rollouts/{rid}", headers=fleet.admin).json()["transfer"]
    assert transfer["installs"] == 2
    assert transfer["bytes_saved"] == 10 * mib - mib // 2
    page = operator.get(f"/dashboard/rollouts/{rid}").text
    line = re.sub(r"\s+", " ", page[page.index('id="transfer"') :].split("</p>")[0])
    assert "2 installs, 1 through deltas" in line
    assert "10.5 MiB downloaded of 20.0 MiB in full" in line
    assert "48 % saved" in line
    assert "delta_base_missing 1" in line
