"""A rollout's story: every engine evaluation's gate rows are kept (bounded), so the story page draws each
gate's observed value against its threshold over time, the stage boundary, the halt, and the exposed and
rolled-back devices, each chart with its data table."""

from __future__ import annotations

from datetime import timedelta

from edgefleet.server.services.rollouts import history
from edgefleet.server.services.rollouts.history import rollout_story

from .conftest import browser, make_token, sign_in

STAGES = {
    "stages": [
        {"count": 1, "soak_s": 60, "gates": {"min_requests": 10}},
        {"percent": 100, "soak_s": 600, "gates": {"min_requests": 10}},
    ]
}


def _story(fleet, rid):
    with fleet.app.state.context.db.session() as session:
        return rollout_story(session, rid)


def _serve_exposed(fleet, devices, v2, latency_ms):
    for identity, ddir in devices:
        if fleet.poll(identity, ddir).get("default") == v2:
            fleet.report(identity, ddir, active=v2)
            fleet.serve(identity, ddir, v2, requests=40, latency_ms=latency_ms)


def test_the_story_shows_the_gate_rising_past_its_threshold_the_stage_boundary_and_the_halt(world):
    fleet, v1, v2, devices = world
    r = fleet.client.post(
        "/v1/rollouts",
        json={"model": "digits", "targets": {"medical-cart-cpu": v2}, "spec": STAGES},
        headers=fleet.admin,
    )
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    _serve_exposed(fleet, devices, v2, latency_ms=10)  # the canary is as fast as v1
    for _ in range(3):  # waits inside the soak: sampled at most once a minute
        fleet.clock.now += timedelta(seconds=30)
        fleet.tick()
    fleet.clock.now += timedelta(seconds=30)
    fleet.tick()
    assert fleet.client.get(f"/v1/rollouts/{rid}", headers=fleet.admin).json()["stage"] == 1
    fleet.clock.now += timedelta(seconds=90)
    _serve_exposed(fleet, devices, v2, latency_ms=60)  # the whole fleet on v2, six times slower
    fleet.clock.now += timedelta(seconds=5)
    fleet.tick()
    assert fleet.client.get(f"/v1/rollouts/{rid}", headers=fleet.admin).json()["status"] == "halted"
    for identity, ddir in devices[:4]:  # four exposed devices are back on v1, the rest not yet
        fleet.report(identity, ddir, active=v1)
    fleet.clock.now += timedelta(seconds=61)
    fleet.tick()

    story = _story(fleet, rid)
    assert story["halted_at"] is not None
    assert story["actions"].count("wait") < 4  # four waits within 90 s: not one row each
    assert "advance" in story["actions"]
    assert "halt" in story["actions"]
    assert story["actions"][-1] == "rollback"
    assert story["exposed"][0] == 1
    assert story["exposed"][story["actions"].index("halt")] == 6
    assert story["rolled_back"][-1] == 4
    assert story["still_on_new"][-1] == 2
    ratio = next(g for g in story["gates"] if g["name"] == "latency_p95_ratio")
    observed = [v for v in ratio["observed"] if v is not None]
    assert observed[-1] > ratio["threshold"][story["actions"].index("halt")]
    assert ratio["verdict"][story["actions"].index("halt")] == "breach"
    kinds = [e["kind"] for e in story["events"]]
    assert kinds[:1] == ["created"]
    assert "advance" in kinds
    assert "halt" in kinds

    client = browser(fleet)
    sign_in(client, make_token(fleet, "viewer"))
    rollout_page = client.get(f"/dashboard/rollouts/{rid}").text
    assert f"/dashboard/rollouts/{rid}/story" in rollout_page
    page = client.get(f"/dashboard/rollouts/{rid}/story")
    assert page.status_code == 200, page.text
    assert "medical-cart-cpu: latency_p95_ratio" in page.text
    assert 'class="threshold"' in page.text
    assert 'class="marker m-halt"' in page.text
    assert "Data table: Exposed and rolled-back devices" in page.text
    assert client.get("/dashboard/rollouts/ro_0000000000000000/story").status_code == 404


def test_the_history_is_bounded_per_rollout(world, monkeypatch):
    fleet, _v1, v2, _devices = world
    monkeypatch.setattr(history, "MAX_ROWS_PER_ROLLOUT", 5)
    monkeypatch.setattr(history, "SAMPLE_EVERY_S", 0.0)
    r = fleet.client.post(
        "/v1/rollouts",
        json={"model": "digits", "targets": {"medical-cart-cpu": v2}, "spec": STAGES},
        headers=fleet.admin,
    )
    rid = r.json()["id"]
    for _ in range(9):
        fleet.clock.now += timedelta(seconds=1)
        fleet.tick()
    story = _story(fleet, rid)
    assert len(story["times"]) == 5
    assert story["times"] == sorted(story["times"])
    assert story["times"][-1] == fleet.clock.now.isoformat()  # the newest kept, the oldest dropped


def test_the_bound_drops_waits_then_rollback_samples_and_keeps_the_actions(world, monkeypatch):
    from edgefleet.server.store.rollouts import RolloutGateHistoryRow

    fleet, _v1, v2, _devices = world
    monkeypatch.setattr(history, "MAX_ROWS_PER_ROLLOUT", 5)
    r = fleet.client.post(
        "/v1/rollouts",
        json={"model": "digits", "targets": {"medical-cart-cpu": v2}, "spec": STAGES},
        headers=fleet.admin,
    )
    rid = r.json()["id"]
    actions = ["wait", "advance", "rollback", "wait", "halt", "rollback", "rollback", "rollback", "complete"]
    with fleet.app.state.context.db.session() as session, session.begin():
        for i, action in enumerate(actions):
            session.add(
                RolloutGateHistoryRow(
                    rollout_id=rid,
                    at=fleet.clock.now + timedelta(seconds=i),
                    stage=0,
                    action=action,
                    gates=[],
                    exposed=i,
                )
            )
        session.flush()
        history._bound(session, rid)
    story = _story(fleet, rid)
    assert story["actions"] == ["advance", "halt", "rollback", "rollback", "complete"]
    assert story["exposed"] == [1, 4, 6, 7, 8]  # the newest rollback samples are the ones kept
