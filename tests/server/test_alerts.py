"""Alert webhooks end to end through the real app: events written with their cause, sent by the dispatcher
to a real HTTP receiver on loopback that verifies the HMAC signature (one fails, then recovers), the
delivery log, the scan for silent devices, security refusals, and bad input. On both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from tests.alert_receiver import SECRET, Receiver

from edgefleet.agent.channel import DeviceChannel
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.server.services.alerts.dispatcher import HttpxSender, _claim, dispatch_due
from edgefleet.server.services.alerts.outbox import emit
from edgefleet.server.services.alerts.rules import RetryPolicy
from edgefleet.server.services.alerts.scan import ScanPolicy, scan_alerts


@pytest.fixture
def receiver(fleet) -> Iterator[Receiver]:
    r = Receiver(clock=fleet.clock)
    yield r
    r.close()


@pytest.fixture
def sender() -> Iterator[HttpxSender]:
    s = HttpxSender(timeout_s=5)
    yield s
    s.close()


def _hook(fleet, url: str, events: list[str] | None = None, secret: str | None = SECRET) -> dict:
    body: dict = {"name": "ops", "url": url, "events": events or []}
    if secret is not None:
        body["secret"] = secret
    r = fleet.client.post("/v1/webhooks", json=body, headers=fleet.admin)
    assert r.status_code == 201, r.text
    return r.json()


def _dispatch(fleet, sender, policy: RetryPolicy | None = None):
    with fleet.app.state.context.db.session() as session:
        return dispatch_due(session, now=fleet.clock(), sender=sender, policy=policy or RetryPolicy())


def _deliveries(fleet, **params) -> list[dict]:
    r = fleet.client.get("/v1/alerts/deliveries", params=params, headers=fleet.admin)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_a_disabled_artifact_reaches_a_receiver_that_fails_then_recovers(fleet, receiver, sender) -> None:
    receiver.fail_first = 2
    hook = _hook(fleet, receiver.url, ["artifact.disabled"])
    assert "secret" not in hook  # given by the caller: never echoed back
    art = fleet.artifact("1.0.0")
    r = fleet.client.patch(
        f"/v1/artifacts/{art}", json={"disabled": True, "reason": "bad"}, headers=fleet.admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["kill_switch"] == {"rolls_back": 0, "degrades": 0, "withdrawn": 0, "withdrawn_modes": {}}
    (pending,) = _deliveries(fleet)
    assert (pending["status"], pending["attempts"], pending["event"]["kind"]) == (
        "pending",
        0,
        "artifact.disabled",
    )

    assert _dispatch(fleet, sender).retried == 1  # 503
    assert _dispatch(fleet, sender).retried == 0  # not due yet: backoff
    (log,) = _deliveries(fleet)
    assert (log["status"], log["attempts"], log["last_status_code"]) == ("pending", 1, 503)
    fleet.clock.now += timedelta(minutes=11)  # past the capped backoff
    assert _dispatch(fleet, sender).retried == 1
    fleet.clock.now += timedelta(minutes=11)
    assert _dispatch(fleet, sender).delivered == 1
    (done,) = _deliveries(fleet, status="delivered")
    assert (done["attempts"], done["last_status_code"], done["last_error"]) == (3, 204, None)
    assert [x["verified"] for x in receiver.received] == [True, True, True]
    assert {x["delivery"] for x in receiver.received} == {str(done["id"])}  # receivers dedupe on it
    event = receiver.received[-1]["event"]
    assert (event["kind"], event["subject"], event["data"]["reason"]) == ("artifact.disabled", art, "bad")
    fleet.clock.now += timedelta(hours=1)
    assert _dispatch(fleet, sender) == type(_dispatch(fleet, sender))()  # nothing sent twice


def test_a_delivery_is_given_up_after_max_attempts_and_recorded(fleet, receiver, sender) -> None:
    receiver.fail_first = 1000
    hook = _hook(fleet, receiver.url)
    assert fleet.client.post(f"/v1/webhooks/{hook['id']}/test", headers=fleet.admin).status_code == 202
    policy = RetryPolicy(base_s=1, cap_s=2, max_attempts=3)
    for _ in range(3):
        _dispatch(fleet, sender, policy)
        fleet.clock.now += timedelta(seconds=3)
    (gave_up,) = _deliveries(fleet, status="gave_up")
    assert (gave_up["attempts"], gave_up["last_error"], gave_up["next_attempt_at"]) == (3, "HTTP 503", None)
    assert len(receiver.received) == 3
    assert _dispatch(fleet, sender, policy) == type(_dispatch(fleet, sender, policy))()


def test_an_unreachable_receiver_is_retried_with_the_error_recorded(fleet, sender) -> None:
    dead = Receiver(clock=fleet.clock)
    url = dead.url
    dead.close()  # nothing listens there now
    hook = _hook(fleet, url)
    fleet.client.post(f"/v1/webhooks/{hook['id']}/test", headers=fleet.admin)
    assert _dispatch(fleet, sender).retried == 1
    (log,) = _deliveries(fleet)
    assert log["last_status_code"] is None
    assert log["last_error"].startswith("ConnectError")


def test_a_dispatcher_that_dies_mid_send_leaves_the_delivery_to_the_next(fleet, receiver, sender) -> None:
    hook = _hook(fleet, receiver.url)
    fleet.client.post(f"/v1/webhooks/{hook['id']}/test", headers=fleet.admin)
    with fleet.app.state.context.db.session() as session:
        assert len(_claim(session, now=fleet.clock(), lease_s=60, batch=10)) == 1  # then "crashes"
    assert _dispatch(fleet, sender).delivered == 0  # leased by the dead one
    fleet.clock.now += timedelta(seconds=61)
    assert _dispatch(fleet, sender).delivered == 1
    assert len(receiver.received) == 1


def test_an_event_rolls_back_with_its_cause(fleet) -> None:
    _hook(fleet, "http://127.0.0.1:9/unused")

    def failing_change(session) -> None:
        with session.begin():
            emit(session, "test", subject="x", now=fleet.clock())
            raise RuntimeError("the change failed")

    with fleet.app.state.context.db.session() as session, pytest.raises(RuntimeError):
        failing_change(session)
    assert _deliveries(fleet) == []


def _kinds(receiver: Receiver) -> list[str]:
    return sorted(x["kind"] for x in receiver.received)


def test_rollout_halt_silent_devices_and_security_refusals_alert_once(fleet, receiver, sender) -> None:
    _hook(fleet, receiver.url)
    v1, v2 = fleet.artifact("1.0.0"), fleet.artifact("2.0.0")
    fleet.client.put("/v1/pins/class/medical-cart-cpu/default", json={"artifact_id": v1}, headers=fleet.admin)
    devices = [fleet.enroll() for _ in range(2)]
    for identity, ddir in devices:
        fleet.poll(identity, ddir)
    r = fleet.client.post(
        "/v1/rollouts", json={"model": "digits", "targets": {"medical-cart-cpu": v2}}, headers=fleet.admin
    )
    assert r.status_code == 201, r.text
    fleet.client.patch(f"/v1/artifacts/{v2}", json={"disabled": True}, headers=fleet.admin)
    fleet.tick()
    fleet.tick()  # halted once: one event
    _dispatch(fleet, sender)
    assert _kinds(receiver) == ["artifact.disabled", "rollout.halted"]
    halted = next(x["event"] for x in receiver.received if x["kind"] == "rollout.halted")
    assert halted["data"]["reason"]["gate"] == "artifact_disabled"

    # a forged call (another key) for a real device, then a revoked device calling: security events
    (identity, ddir), (other, other_dir) = devices
    forged = DeviceChannel(
        "http://testserver",
        device_id=identity.device_id,
        key=other_dir.read_key(),
        transport=fleet.client._transport,
        clock=lambda: fleet.clock().timestamp(),
    )
    for _ in range(3):  # one alert per device and code per window, not one per request
        with pytest.raises(EdgefleetError) as refused:
            forged.request("GET", "/v1/device/desired-state")
        assert refused.value.code == "bad_signature"
    fleet.client.post(f"/v1/devices/{other.device_id}/revoke", json={"reason": "stolen"}, headers=fleet.admin)
    with pytest.raises(EdgefleetError) as refused:
        fleet.poll(other, other_dir)
    assert refused.value.code == "device_revoked"
    _dispatch(fleet, sender)
    security = [x["event"]["data"] for x in receiver.received if x["kind"] == "security"]
    assert sorted((s["code"], s["device_id"]) for s in security) == sorted(
        [("bad_signature", identity.device_id), ("device_revoked", other.device_id)]
    )

    # silence: the live device alerts once per silence; the revoked one never
    policy = ScanPolicy(device_silent_s=900, rollout_stall_s=1800)
    fleet.clock.now += timedelta(seconds=901)
    with fleet.app.state.context.db.session() as session:
        assert scan_alerts(session, now=fleet.clock(), policy=policy) == 1  # halted rollout is not stalled
        assert scan_alerts(session, now=fleet.clock() + timedelta(seconds=30), policy=policy) == 0
    _dispatch(fleet, sender)
    offline = [x["event"]["data"] for x in receiver.received if x["kind"] == "device.offline"]
    assert [(o["device_id"], o["threshold_s"]) for o in offline] == [(identity.device_id, 900)]
    assert all(x["verified"] for x in receiver.received)


def test_a_rollout_stuck_in_one_stage_alerts_once_per_stage(fleet) -> None:
    v1, v2 = fleet.artifact("1.0.0"), fleet.artifact("2.0.0")
    fleet.client.put("/v1/pins/class/medical-cart-cpu/default", json={"artifact_id": v1}, headers=fleet.admin)
    identity, ddir = fleet.enroll()
    fleet.poll(identity, ddir)
    r = fleet.client.post(
        "/v1/rollouts", json={"model": "digits", "targets": {"medical-cart-cpu": v2}}, headers=fleet.admin
    )
    rid = r.json()["id"]
    _hook(fleet, "http://127.0.0.1:9/unused", ["rollout.stalled"])
    policy = ScanPolicy(device_silent_s=10**6, rollout_stall_s=1800)
    fleet.clock.now += timedelta(seconds=1801)
    with fleet.app.state.context.db.session() as session:
        assert scan_alerts(session, now=fleet.clock(), policy=policy) == 1
        assert scan_alerts(session, now=fleet.clock() + timedelta(hours=1), policy=policy) == 0
    (stalled,) = _deliveries(fleet, kind="rollout.stalled")
    assert stalled["event"]["data"]["rollout_id"] == rid
    assert stalled["event"]["data"]["stage"] == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "a", "url": "ftp://example.com/x"}, "invalid_webhook_url"),
        ({"name": "a", "url": "example.com/hook"}, "invalid_webhook_url"),
        ({"name": "a", "url": "http:///nohost"}, "invalid_webhook_url"),
        ({"name": "a", "url": "https://user:pw@example.com/"}, "invalid_webhook_url"),
        ({"name": "a", "url": "http://[::1/hook"}, "invalid_webhook_url"),  # was a 500 (urlsplit)
        ({"name": "a", "url": "http://example.com:99999/"}, "invalid_webhook_url"),
        ({"name": "a", "url": "http://example.com:x/"}, "invalid_webhook_url"),
        ({"name": "a", "url": "http://example.com/a b"}, "invalid_webhook_url"),
        ({"name": "a", "url": "http://example.com/\n"}, "invalid_webhook_url"),
        ({"name": "a", "url": "https://example.com/", "events": ["rollout.exploded"]}, "unknown_alert_event"),
        ({"name": "a", "url": "https://example.com/", "secret": "short"}, "invalid_webhook_secret"),
        ({"name": "Bad Name", "url": "https://example.com/"}, "invalid_name"),
    ],
)
def test_bad_webhooks_are_refused_with_a_stable_code_and_nothing_stored(fleet, body, code) -> None:
    r = fleet.client.post("/v1/webhooks", json=body, headers=fleet.admin)
    assert (r.status_code, r.json()["code"]) == (422, code), r.text
    assert "pw" not in r.text
    assert "short" not in r.text
    assert fleet.client.get("/v1/webhooks", headers=fleet.admin).json()["items"] == []


def test_webhook_lifecycle_roles_and_secrets(fleet) -> None:
    viewer = fleet.client.post("/v1/tokens", json={"name": "v", "role": "viewer"}, headers=fleet.admin)
    as_viewer = {"authorization": f"Bearer {viewer.json()['token']}"}
    body = {"name": "ops", "url": "https://hooks.example.com/edgefleet"}
    r = fleet.client.post("/v1/webhooks", json=body, headers=as_viewer)
    assert (r.status_code, r.json()["code"]) == (403, "permission_denied"), r.text
    created = fleet.client.post("/v1/webhooks", json=body, headers=fleet.admin)
    assert created.status_code == 201
    secret = created.json()["secret"]  # generated by the server: shown once
    assert len(secret) >= 32
    listed = fleet.client.get("/v1/webhooks", headers=fleet.admin)
    assert secret not in listed.text
    assert "secret" not in listed.json()["items"][0]
    again = fleet.client.post("/v1/webhooks", json=body, headers=fleet.admin)
    assert (again.status_code, again.json()["code"]) == (409, "webhook_exists")
    assert fleet.client.get("/v1/alerts/deliveries", headers=as_viewer).status_code == 200
    hook_id = created.json()["id"]
    assert fleet.client.delete(f"/v1/webhooks/{hook_id}", headers=as_viewer).status_code == 403
    assert fleet.client.delete(f"/v1/webhooks/{hook_id}", headers=fleet.admin).status_code == 204
    gone = fleet.client.delete(f"/v1/webhooks/{hook_id}", headers=fleet.admin)
    assert (gone.status_code, gone.json()["code"]) == (404, "webhook_not_found")
    bad = fleet.client.get("/v1/alerts/deliveries", params={"status": "lost"}, headers=fleet.admin)
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_query")
    audit = fleet.client.get("/v1/audit", headers=as_viewer)  # the audit log is a viewer's to read
    actions = [a["action"] for a in audit.json()["items"]]
    assert actions[:2] == ["webhook.delete", "webhook.create"]
    # ... so it keeps the URL's origin only: a path often carries the receiver's own token
    assert audit.json()["items"][1]["details"]["url"] == "https://hooks.example.com"
    assert "/edgefleet" not in audit.text


def test_a_devices_own_security_events_alert_once_a_window(fleet) -> None:
    """A desired state or TUF metadata the device refused arrives as a telemetry ``security`` event."""
    _hook(fleet, "http://127.0.0.1:9/unused", ["security"])
    identity, ddir = fleet.enroll()
    now = fleet.clock()

    def event(sequence: int, code: str) -> dict:
        return {
            "boot_id": "boot1",
            "sequence": sequence,
            "kind": "event",
            "event": {"at": now.isoformat(), "kind": "security", "code": code, "details": {"generation": 7}},
        }

    batch = {
        "device_id": identity.device_id,
        "sent_at": now.isoformat(),
        "records": [
            event(1, "bad_director_signature"),
            event(2, "bad_director_signature"),  # the same window: one alert
            {**event(3, "x"), "event": {"at": now.isoformat(), "kind": "update", "code": "activated"}},
        ],
    }
    channel = fleet.channel(identity, ddir)
    channel.request("POST", "/v1/device/telemetry", json_body=batch)
    channel.request("POST", "/v1/device/telemetry", json_body=batch)  # a resent batch: nothing new
    (delivery,) = _deliveries(fleet, kind="security")
    data = delivery["event"]["data"]
    assert (data["source"], data["code"], data["device_id"]) == (
        "device",
        "bad_director_signature",
        identity.device_id,
    )
    assert data["details"] == {"generation": 7}
