"""Rollouts through the real ASGI app with simulated devices on the real signed channel, on both databases.

Devices here are driven by hand (poll, report, send telemetry) and the engine is ticked explicitly with an
injected clock, so every transition is observable; tests/e2e drives real agent processes."""

from __future__ import annotations

import json
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


def test_a_large_rollout_refreshes_the_members_planner_statistics_on_postgresql(world, monkeypatch):
    """The engine's queries over a fresh 100,000-member table were planned blind until autovacuum came by;
    creating a large rollout analyzes the members table in its own transaction (PostgreSQL only)."""
    from sqlalchemy import text

    from edgefleet.server.services.rollouts import service

    fleet, _v1, v2, _devices = world
    monkeypatch.setattr(service, "ANALYZE_AFTER_MEMBERS", 6)
    db = fleet.app.state.context.db
    postgres = db.engine.dialect.name == "postgresql"

    def analyzed() -> int:
        with db.engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'rollout_devices'"
            )).scalar_one())  # fmt: skip

    before = analyzed() if postgres else 0
    assert _create(fleet, v2, SLOW_STAGES).status_code == 201
    if postgres:  # statistics reach pg_stat views asynchronously: wait briefly for the counter
        import time

        deadline = time.monotonic() + 10
        while analyzed() == before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert analyzed() == before + 1


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


def test_a_device_enrolling_into_a_new_rollout_counts_in_its_gates(world):
    """With enrolling_devices = new, a late device runs the new artifact at once; it joins the current stage,
    so its failed install halts the rollout like any member's would (it is not invisible to the gates)."""
    fleet, v1, v2, _devices = world
    spec = {"enrolling_devices": "new", "stages": [{"count": 1, "soak_s": 3600}, {"percent": 100}]}
    rid = _create(fleet, v2, spec).json()["id"]
    members_before = sum(s["members"] for s in _rollout(fleet, rid)["stage_detail"])
    late = fleet.enroll()
    assert fleet.poll(*late) == {"default": v2}
    fleet.tick()
    ro = _rollout(fleet, rid)
    assert sum(s["members"] for s in ro["stage_detail"]) == members_before + 1
    assert ro["stage_detail"][0]["members"] == 2
    fleet.report(*late, active=v1, failed=v2)  # the health check failed on the late device
    fleet.tick()
    ro = _rollout(fleet, rid)
    assert ro["status"] == "halted"
    assert ro["halt_reason"]["gate"] == "install_failure_rate"
    assert fleet.poll(*late) == {"default": v1}  # rolled back with the others


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


# --- several hardware classes: each judged against its own envelope and its own previous version ----------

CART, GPU = "medical-cart-cpu", "factory-gateway-gpu"  # envelopes (examples/): 50 ms and 10 ms
ONE_STAGE_ALL = {"stages": [{"percent": 100, "soak_s": 60, "gates": {"min_requests": 10}}]}


@pytest.fixture
def two_classes(fleet):
    """4 cart devices and 2 GPU-gateway devices, each class pinned to its own build of digits 1.0.0, with
    2.0.0 built for both."""
    v1 = {cls: fleet.artifact("1.0.0", hardware_class=cls) for cls in (CART, GPU)}
    v2 = {cls: fleet.artifact("2.0.0", hardware_class=cls) for cls in (CART, GPU)}
    for cls, artifact in v1.items():
        r = fleet.client.put(
            f"/v1/pins/class/{cls}/default", json={"artifact_id": artifact}, headers=fleet.admin
        )
        assert r.status_code == 204, r.text
    devices = {
        cls: [fleet.enroll(fleet.token(hardware_class=cls)) for _ in range(n)]
        for cls, n in ((CART, 4), (GPU, 2))
    }
    return fleet, v1, v2, devices


def _serve_class(fleet, devices, artifact, *, requests, latency_ms):
    for identity, ddir in devices:
        assert fleet.poll(identity, ddir) == {"default": artifact}
        fleet.report(identity, ddir, active=artifact)
        fleet.serve(identity, ddir, artifact, requests=requests, latency_ms=latency_ms)


@pytest.mark.parametrize(
    ("latency_ms", "outcome"),
    [
        # (class -> (1.0.0 ms, 2.0.0 ms)). The GPU class is 3x slower than its own 1.0.0, still inside its
        # 10 ms envelope; it sends 2 % of the requests, so a p95 merged with the cart class would hide it.
        ({CART: (20.0, 20.0), GPU: (3.0, 9.0)}, ("halted", "latency_p95_ratio", GPU)),
        # Each class inside its own envelope and near its own 1.0.0; the cart class's 35 ms would breach the
        # GPU class's 10 ms envelope, and must not be held to it.
        ({CART: (30.0, 35.0), GPU: (5.0, 5.0)}, ("completed", None, None)),
    ],
)
def test_a_multi_class_rollout_judges_each_class_on_its_own(two_classes, latency_ms, outcome):
    fleet, v1, v2, devices = two_classes
    requests = {CART: 400, GPU: 20}
    for cls, members in devices.items():
        _serve_class(fleet, members, v1[cls], requests=requests[cls], latency_ms=latency_ms[cls][0])
    fleet.clock.now += timedelta(minutes=5)
    r = fleet.client.post(
        "/v1/rollouts", json={"model": "digits", "targets": v2, "spec": ONE_STAGE_ALL}, headers=fleet.admin
    )
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    for cls, members in devices.items():
        _serve_class(fleet, members, v2[cls], requests=requests[cls], latency_ms=latency_ms[cls][1])
    fleet.clock.now += timedelta(seconds=61)
    fleet.tick()
    ro = _rollout(fleet, rid)
    status, gate, hardware_class = outcome
    assert ro["status"] == status, ro["halt_reason"] or ro["last_decision"]
    health = ro["last_decision"]["health"]["by_class"]
    assert {cls: h["class_p95_ms"] for cls, h in health.items()} == {CART: 50.0, GPU: 10.0}
    if status == "halted":
        reason = ro["halt_reason"]
        assert (reason["gate"], reason["hardware_class"]) == (gate, hardware_class)
        assert reason["observed"] > 2.5
        assert reason["baseline_p95_ms"] == pytest.approx(health[GPU]["baseline_p95_ms"], rel=0.01)
        assert ro["last_decision"]["health"]["hardware_class"] == GPU  # the top level shows the named class
        halt_event = ro["events"][-1]
        assert (halt_event["kind"], halt_event["details"]["hardware_class"]) == ("halt", GPU)
        # Both classes are rolled back to their own 1.0.0 at their next poll.
        for cls, members in devices.items():
            assert all(fleet.poll(i, d) == {"default": v1[cls]} for i, d in members)
    else:
        for cls, members in devices.items():
            assert all(fleet.poll(i, d) == {"default": v2[cls]} for i, d in members)


def test_a_class_that_sent_no_telemetry_holds_the_stage(two_classes):
    """The cart class's evidence does not let the GPU class's devices through unobserved."""
    fleet, _v1, v2, devices = two_classes
    r = fleet.client.post(
        "/v1/rollouts", json={"model": "digits", "targets": v2, "spec": ONE_STAGE_ALL}, headers=fleet.admin
    )
    rid = r.json()["id"]
    _serve_class(fleet, devices[CART], v2[CART], requests=100, latency_ms=10)
    for identity, ddir in devices[GPU]:
        assert fleet.poll(identity, ddir) == {"default": v2[GPU]}
        fleet.report(identity, ddir, active=v2[GPU])  # installed, but serves nothing
    fleet.clock.now += timedelta(seconds=61)
    fleet.tick()
    ro = _rollout(fleet, rid)
    assert ro["status"] == "running"
    reason = ro["last_decision"]["reason"]
    assert (reason["note"], reason["hardware_class"], reason["requests"]) == ("not enough evidence", GPU, 0)


# --- a device offline during the halt comes back to the rolled-back state ----------------------------------


@pytest.mark.parametrize("installed_before_going_offline", [True, False])
def test_a_device_offline_during_a_halt_comes_back_to_the_previous_artifact(
    world, installed_before_going_offline
):
    fleet, v1, v2, devices = world
    spec = {"stages": [{"count": 2, "soak_s": 60, "gates": {"min_requests": 10}}, {"percent": 100}]}
    rid = _create(fleet, v2, spec).json()["id"]
    exposed = [(i, d) for i, d in devices if fleet.poll(i, d) == {"default": v2}]
    assert len(exposed) == 2
    (away, away_dir), (slow, slow_dir) = exposed
    if installed_before_going_offline:
        fleet.report(away, away_dir, active=v2)  # then it goes silent, still running 2.0.0
    fleet.clock.now += timedelta(minutes=20)  # everyone else keeps polling; ``away`` does not
    for identity, ddir in devices:
        if identity.device_id != away.device_id:
            fleet.poll(identity, ddir)
    fleet.report(slow, slow_dir, active=v2)
    fleet.serve(slow, slow_dir, v2, requests=40, latency_ms=30)  # 3x slower than 1.0.0 on this device
    [result] = fleet.tick()
    assert result.action == "halt"
    away_row = fleet.client.get(f"/v1/devices/{away.device_id}", headers=fleet.admin).json()
    assert away_row["status"] == "offline"  # it was offline when the rollout halted
    generation_at_halt = away_row["desired_generation"]

    fleet.clock.now += timedelta(hours=2)  # long after the halt, ``away`` comes back
    for _ in range(3):  # and whatever the engine does meanwhile, it never gets 2.0.0 back
        fleet.tick()
        assert fleet.poll(away, away_dir) == {"default": v1}
    fleet.report(away, away_dir, active=v1)  # it rolls back
    after = fleet.client.get(f"/v1/devices/{away.device_id}", headers=fleet.admin).json()
    assert after["status"] == "online"
    assert after["desired_generation"] > generation_at_halt
    desired = fleet.client.get(f"/v1/devices/{away.device_id}/desired-state", headers=fleet.admin).json()
    assert v2 not in json.dumps(desired)
    ro = _rollout(fleet, rid)
    assert ro["status"] == "halted"
    assert ro["stage_detail"][0]["members"] == 2


# --- one active rollout per (hardware class, slot), whatever the model --------------------------------------

ALL_AT_ONCE = {"stages": [{"percent": 100, "soak_s": 0}]}


def _other_model_artifact(fleet):
    from edgefleet.client import EdgefleetClient
    from edgefleet.sim.artifacts import register_stand_in_artifact

    token = fleet.admin["authorization"].split()[1]
    client = EdgefleetClient(str(fleet.client.base_url), token, transport=fleet.client._transport)
    return register_stand_in_artifact(client, model="other", version="1.0.0", hardware_class=CART)


def _create_for(fleet, model, artifact, slot="default"):
    body = {"model": model, "targets": {CART: artifact}, "slot": slot, "spec": ALL_AT_ONCE}
    return fleet.client.post("/v1/rollouts", json=body, headers=fleet.admin)


def test_two_models_cannot_roll_out_into_one_slot_of_a_class_at_once(world):
    fleet, _v1, v2, _devices = world
    other = _other_model_artifact(fleet)
    first = _create_for(fleet, "digits", v2).json()["id"]
    r = _create_for(fleet, "other", other)
    assert r.status_code == 409
    body = r.json()
    assert body["code"] == "rollout_slot_conflict"
    assert body["details"]["expected"] == "no active rollout per (hardware class, slot)"
    assert body["details"]["got"] == [{"rollout": first, "hardware_class": CART, "slot": "default"}]
    aux = _create_for(fleet, "other", other, slot="aux")
    assert aux.status_code == 201  # another slot of the class is free
    for rid in (first, aux.json()["id"]):
        assert fleet.client.post(f"/v1/rollouts/{rid}/abort", json={}, headers=fleet.admin).status_code == 200
    assert _create_for(fleet, "other", other).status_code == 201  # the slot is free again


def test_should_two_rollouts_share_a_slot_the_oldest_decides(world):
    """Creation refuses it; if a race ever let it happen, every device still gets one stable answer."""
    from edgefleet.server.services.director_epoch import bump_director_epoch
    from edgefleet.server.store.rollouts import RolloutRow

    fleet, _v1, v2, devices = world
    other = _other_model_artifact(fleet)
    oldest = _create_for(fleet, "digits", v2).json()["id"]
    fleet.clock.now += timedelta(seconds=1)
    newer = _create_for(fleet, "other", other, slot="aux").json()["id"]
    with fleet.app.state.context.db.session() as session, session.begin():
        session.get(RolloutRow, newer).slot = "default"  # what a lost race would leave behind
        bump_director_epoch(session)
    for _ in range(2):
        assert all(fleet.poll(i, d) == {"default": v2} for i, d in devices), oldest


def test_the_engine_reads_each_members_slot_facts_as_its_newest_report_says(world):
    """The engine reads members as narrow facts extracted from the reports by the database
    (``rollouts.progress.member_facts``): they follow each new report, name the rollout's slot (or its
    shadow slot), and leave revoked devices out."""
    from edgefleet.server.services.rollouts.progress import member_facts

    fleet, v1, v2, devices = world
    r = _create(fleet, v2, SLOW_STAGES)
    assert r.status_code == 201, r.text
    rollout_id = r.json()["id"]

    def facts(slot="default"):
        with fleet.app.state.context.db.session() as session, session.begin():
            return {f.device_id: f for f in member_facts(session, rollout_id, slot)}

    before = facts()
    assert set(before) == {identity.device_id for identity, _ in devices}
    assert {(f.active, f.failed_artifact, f.state, f.behind) for f in before.values()} == {
        (v1, None, "idle", None)
    }
    (done, done_dir), (failed, failed_dir), (shadowed, shadowed_dir), (revoked, _) = devices[:4]
    fleet.report(done, done_dir, active=v2, previous=v1)
    fleet.report(failed, failed_dir, active=v1, failed=v2)
    fleet.report(shadowed, shadowed_dir, active=v1, shadow=v2)
    r = fleet.client.post(
        f"/v1/devices/{revoked.device_id}/revoke", json={"reason": "stolen"}, headers=fleet.admin
    )
    assert r.status_code == 200, r.text
    after = facts()
    assert revoked.device_id not in after
    assert len(after) == len(devices) - 1
    assert after[done.device_id].active == v2
    assert (after[failed.device_id].active, after[failed.device_id].failed_artifact) == (v1, v2)
    assert after[done.device_id].stage == before[done.device_id].stage
    assert after[done.device_id].hardware_class == "medical-cart-cpu"
    assert json.loads(after[done.device_id].labels or "{}") == {"site": "site-0"}
    shadow = facts("default.shadow")
    assert shadow[shadowed.device_id].active == v2
    assert shadow[done.device_id].active is None  # no shadow slot reported


def test_a_rollout_an_engine_evaluated_less_than_a_tick_ago_is_skipped(world):
    """Replicas share the work: under the row lock, a rollout evaluated less than ``min_interval_s`` ago
    (by any engine: the stamp is in the database) is skipped; the first tick after that evaluates it."""
    from edgefleet.server.services.rollouts import engine

    fleet, _v1, v2, _devices = world
    r = _create(fleet, v2, SLOW_STAGES)
    assert r.status_code == 201, r.text
    rollout_id = r.json()["id"]
    db, thresholds = fleet.app.state.context.db, fleet.app.state.devices.thresholds

    def tick(at):
        with db.session() as session:
            return engine.tick_rollout(session, rollout_id, now=at, thresholds=thresholds, min_interval_s=1.0)

    first = fleet.clock()
    assert tick(first) is not None
    assert tick(first + timedelta(seconds=0.5)) is None  # another replica, half a tick later: skipped
    assert tick(first - timedelta(seconds=0.2)) is None  # took its ``now`` before the lock was free
    assert tick(first + timedelta(seconds=1)) is not None
    with db.session() as session, session.begin():
        from edgefleet.server.store.rollouts import RolloutRow

        assert session.get(RolloutRow, rollout_id).last_evaluated_at == first + timedelta(seconds=1)
    # the engine's own loop with no interval (tests, one process) evaluates every time
    with db.session() as session:
        assert [t.rollout_id for t in engine.tick(session, now=first, thresholds=thresholds)] == [rollout_id]
