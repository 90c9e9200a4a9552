"""Rollouts through the real ASGI app with simulated devices on the real signed channel, on both databases.

Devices here are driven by hand (poll, report, send telemetry) and the engine is ticked explicitly with an
injected clock, so every transition is observable; tests/e2e drives real agent processes."""

from __future__ import annotations

from datetime import timedelta

import pytest

SLOW_STAGES = {
    "stages": [
        {"count": 1, "soak_s": 60, "gates": {"min_requests": 10}},
        {"percent": 50, "soak_s": 60, "gates": {"min_requests": 10}},
        {"percent": 100, "soak_s": 0, "gates": {"min_requests": 10}},
    ]
}


@pytest.fixture
def world(fleet):
    v1 = fleet.artifact("1.0.0")
    v2 = fleet.artifact("2.0.0")
    r = fleet.client.put(
        "/v1/pins/class/medical-cart-cpu/default", json={"artifact_id": v1}, headers=fleet.admin
    )
    assert r.status_code == 204
    devices = [fleet.enroll(fleet.token(labels={"site": f"site-{i % 2}"})) for i in range(6)]
    for identity, ddir in devices:
        assert fleet.poll(identity, ddir) == {"default": v1}
        fleet.report(identity, ddir, active=v1)
        fleet.serve(identity, ddir, v1, requests=50, latency_ms=10)
    fleet.clock.now += timedelta(minutes=5)
    return fleet, v1, v2, devices


def _create(fleet, v2, spec=None, **extra):
    body = {"model": "digits", "targets": {"medical-cart-cpu": v2}, **extra}
    if spec is not None:
        body["spec"] = spec
    return fleet.client.post("/v1/rollouts", json=body, headers=fleet.admin)


def _step(fleet, devices, target, *, latency_ms=10.0, fail=False):
    """Every device polls; those told to run ``target`` install it (or fail) and serve traffic."""
    exposed = 0
    for identity, ddir in devices:
        slots = fleet.poll(identity, ddir)
        if slots.get("default") == target:
            exposed += 1
            if fail:
                fleet.report(identity, ddir, active=None, failed=target)
            else:
                fleet.report(identity, ddir, active=target)
                fleet.serve(identity, ddir, target, requests=40, latency_ms=latency_ms)
        else:
            fleet.report(identity, ddir, active=slots.get("default"))
    return exposed


def _rollout(fleet, rollout_id):
    return fleet.client.get(f"/v1/rollouts/{rollout_id}", headers=fleet.admin).json()


def test_a_good_model_rolls_out_to_everyone_in_stages(world):
    fleet, _v1, v2, devices = world
    r = _create(fleet, v2, SLOW_STAGES)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    assert [s["members"] for s in r.json()["stage_detail"]] == [1, 2, 3]
    exposures = []
    for _ in range(10):
        exposures.append(_step(fleet, devices, v2))
        fleet.clock.now += timedelta(seconds=61)
        fleet.tick()
        if _rollout(fleet, rid)["status"] == "completed":
            break
    assert exposures[:3] == [1, 3, 6]
    ro = _rollout(fleet, rid)
    assert ro["status"] == "completed"
    assert [e["kind"] for e in ro["events"]] == ["created", "advance", "advance", "complete"]
    # Completion moved the class pin: new and old devices alike now get v2.
    newcomer = fleet.enroll()
    assert fleet.poll(*newcomer) == {"default": v2}


def test_a_slow_model_is_halted_in_its_first_stage_and_rolled_back(world):
    fleet, v1, v2, devices = world
    rid = _create(fleet, v2, SLOW_STAGES).json()["id"]
    assert _step(fleet, devices, v2, latency_ms=30) == 1  # 3x slower than v1 on the same devices
    fleet.clock.now += timedelta(seconds=5)
    [result] = fleet.tick()
    assert result.action == "halt"
    ro = _rollout(fleet, rid)
    assert ro["status"] == "halted"
    reason = ro["halt_reason"]
    assert reason["gate"] == "latency_p95_ratio"
    assert reason["observed"] > 2.5
    assert reason["threshold"] == 1.5
    assert reason["stage"] == 0
    # Within one poll, every device (the exposed one included) is told to run v1 again.
    assert all(fleet.poll(i, d) == {"default": v1} for i, d in devices)
    # And a second rollout may now start (the halted one released its lock).
    assert _create(fleet, v2, SLOW_STAGES).status_code == 201


def test_a_model_that_fails_its_health_check_stops_at_the_first_stage(world):
    fleet, v1, v2, devices = world
    rid = _create(fleet, v2, SLOW_STAGES).json()["id"]
    assert _step(fleet, devices, v2, fail=True) == 1
    fleet.tick()
    ro = _rollout(fleet, rid)
    assert ro["status"] == "halted"
    assert ro["halt_reason"]["gate"] == "install_failure_rate"
    assert all(fleet.poll(i, d) == {"default": v1} for i, d in devices)


def test_error_rate_gate(world):
    fleet, _v1, v2, devices = world
    rid = _create(fleet, v2, SLOW_STAGES).json()["id"]
    for identity, ddir in devices:
        if fleet.poll(identity, ddir).get("default") == v2:
            fleet.report(identity, ddir, active=v2)
            fleet.serve(identity, ddir, v2, requests=100, latency_ms=10, errors=9)
    fleet.tick()
    assert _rollout(fleet, rid)["halt_reason"]["gate"] == "error_rate"


def test_offline_devices_are_pending_and_the_deadline_policy_applies(world):
    fleet, _v1, v2, devices = world
    spec = {
        "stages": [
            {
                "percent": 50,
                "soak_s": 0,
                "deadline_s": 600,
                "on_deadline": "proceed",
                "gates": {"min_requests": 1},
            },
            {"percent": 100, "soak_s": 0, "gates": {"min_requests": 1}},
        ]
    }
    rid = _create(fleet, v2, spec).json()["id"]
    members = []
    for identity, ddir in devices:
        if fleet.poll(identity, ddir).get("default") == v2:
            members.append((identity, ddir))
    offline, online = members[0], members[1:]
    for identity, ddir in online:
        fleet.report(identity, ddir, active=v2)
        fleet.serve(identity, ddir, v2, requests=20, latency_ms=10)
    fleet.tick()
    ro = _rollout(fleet, rid)
    assert ro["stage"] == 0
    assert ro["last_decision"]["pending"] == [offline[0].device_id]
    assert ro["stage_detail"][0]["pending"] == 1
    assert ro["stage_detail"][0]["failed"] == 0  # never counted as a failure
    fleet.clock.now += timedelta(seconds=601)
    fleet.tick()
    assert _rollout(fleet, rid)["stage"] == 1


def test_one_active_rollout_per_model_and_class(world):
    fleet, _v1, v2, _devices = world
    assert _create(fleet, v2).status_code == 201
    r = _create(fleet, v2)
    assert r.status_code == 409
    assert r.json()["code"] == "rollout_conflict"


def test_operator_actions_are_audited_and_abort_rolls_back(world):
    fleet, v1, v2, devices = world
    spec = {"stages": [{"count": 1, "soak_s": 0, "manual_promotion": True}, {"percent": 100, "soak_s": 0}]}
    rid = _create(fleet, v2, spec).json()["id"]
    _step(fleet, devices, v2)
    fleet.tick()
    assert _rollout(fleet, rid)["last_decision"]["reason"]["note"] == "awaiting manual promotion"
    for action, status in (("pause", "paused"), ("resume", "running"), ("promote", "running")):
        r = fleet.client.post(f"/v1/rollouts/{rid}/{action}", json={}, headers=fleet.admin)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == status
    fleet.tick()
    assert _rollout(fleet, rid)["stage"] == 1
    r = fleet.client.post(
        f"/v1/rollouts/{rid}/abort", json={"reason": "customer complaint"}, headers=fleet.admin
    )
    assert r.json()["status"] == "aborted"
    assert all(fleet.poll(i, d) == {"default": v1} for i, d in devices)
    again = fleet.client.post(f"/v1/rollouts/{rid}/resume", json={}, headers=fleet.admin)
    assert (again.status_code, again.json()["code"]) == (409, "invalid_transition")
    actions = [
        a["action"]
        for a in fleet.client.get("/v1/audit", params={"target": rid}, headers=fleet.admin).json()["items"]
    ]
    assert actions == [
        "rollout.abort",
        "rollout.advance",
        "rollout.promote",
        "rollout.resume",
        "rollout.pause",
        "rollout.create",
    ]


def test_viewers_cannot_steer_rollouts(world):
    fleet, _v1, v2, _devices = world
    viewer = fleet.client.post(
        "/v1/tokens", json={"name": "eyes", "role": "viewer"}, headers=fleet.admin
    ).json()["token"]
    r = fleet.client.post(
        "/v1/rollouts",
        json={"model": "digits", "targets": {"medical-cart-cpu": v2}},
        headers={"authorization": f"Bearer {viewer}"},
    )
    assert r.status_code == 403


@pytest.mark.parametrize(("policy", "expected"), [("old", "v1"), ("new", "v2")])
def test_devices_enrolling_during_a_rollout_get_a_deterministic_answer(world, policy, expected):
    fleet, v1, v2, _devices = world
    spec = {"enrolling_devices": policy, "stages": [{"count": 1, "soak_s": 0}, {"percent": 100, "soak_s": 0}]}
    _create(fleet, v2, spec)
    late = fleet.enroll()
    assert fleet.poll(*late) == {"default": {"v1": v1, "v2": v2}[expected]}


def test_disabling_the_target_artifact_halts_the_rollout(world):
    fleet, _v1, v2, _devices = world
    rid = _create(fleet, v2, SLOW_STAGES).json()["id"]
    fleet.client.patch(f"/v1/artifacts/{v2}", json={"disabled": True, "reason": "kill"}, headers=fleet.admin)
    fleet.tick()
    ro = _rollout(fleet, rid)
    assert ro["status"] == "halted"
    assert ro["halt_reason"]["gate"] == "artifact_disabled"


def test_bad_rollout_requests(world):
    fleet, _v1, v2, _devices = world
    other_class = fleet.artifact("3.0.0", hardware_class="intel-lowpower-detector")
    r = fleet.client.post(
        "/v1/rollouts",
        json={"model": "digits", "targets": {"medical-cart-cpu": other_class}},
        headers=fleet.admin,
    )
    assert (r.status_code, r.json()["code"]) == (422, "wrong_hardware_class")
    r = fleet.client.post(
        "/v1/rollouts",
        json={"model": "digits", "targets": {"medical-cart-cpu": "art_nope"}},
        headers=fleet.admin,
    )
    assert (r.status_code, r.json()["code"]) == (404, "artifact_not_found")
    r = fleet.client.post(
        "/v1/rollouts",
        json={
            "model": "digits",
            "targets": {"medical-cart-cpu": v2},
            "spec": {"stages": [{"count": 1, "percent": 5}]},
        },
        headers=fleet.admin,
    )
    assert r.status_code == 422


SHADOW_FIRST = {
    "stages": [
        {
            "count": 2,
            "soak_s": 0,
            "shadow": True,
            "gates": {"min_shadow_agreement": 0.98, "min_requests": 30},
        },
        {"percent": 100, "soak_s": 0, "gates": {"min_requests": 1}},
    ]
}


@pytest.mark.parametrize(("agreement", "outcome"), [(0.995, "advance"), (0.80, "halt")])
def test_a_shadow_stage_runs_the_candidate_beside_the_current_version(world, agreement, outcome):
    fleet, v1, v2, devices = world
    rid = _create(fleet, v2, SHADOW_FIRST).json()["id"]
    shadowing = []
    for identity, ddir in devices:
        envelope = fleet.channel(identity, ddir).request("GET", "/v1/device/desired-state").json()["signed"]
        slots = {slot: a["artifact_id"] for slot, a in envelope["slots"].items()}
        assert slots["default"] == v1  # everyone keeps serving 1.0.0
        if slots.get("default.shadow") == v2:
            shadowing.append((identity, ddir))
    assert len(shadowing) == 2
    for identity, ddir in shadowing:
        fleet.report(identity, ddir, active=v1, shadow=v2)
        fleet.serve(
            identity, ddir, v2, requests=0, latency_ms=1, shadow_compared=40, shadow_agreement=agreement
        )
    fleet.tick()
    ro = _rollout(fleet, rid)
    if outcome == "advance":
        assert ro["stage"] == 1
        assert all(fleet.poll(i, d) == {"default": v2} for i, d in shadowing)  # now serving, shadow slot gone
    else:
        assert ro["status"] == "halted"
        assert ro["halt_reason"]["gate"] == "shadow_agreement"
        assert ro["halt_reason"]["observed"] == pytest.approx(0.8)
        assert all(fleet.poll(i, d) == {"default": v1} for i, d in devices)
