"""Devices through the real ASGI app: enrollment, signed channel, desired state, reports, revocation."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.agent.channel import DeviceChannel
from edgefleet.agent.enroll import enroll
from edgefleet.protocol.errors import AuthenticationError, ConflictError, InvalidDocumentError
from edgefleet.protocol.request_signing import sign_request
from edgefleet.server.store.devices import DeviceRow
from edgefleet.trust.director import load_public_key_pem, public_key_pem, verify_desired_state

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hardware-classes.toml"


def _code(response: httpx.Response) -> str:
    return response.json()["code"]


def test_enrollment_registers_a_key_the_device_generated(fleet):
    identity, ddir = fleet.enroll(fleet.token(labels={"site": "ward-3"}))
    assert identity.hardware_class == "medical-cart-cpu"
    assert identity.labels == {"site": "ward-3"}
    assert ddir.key_path.stat().st_mode & 0o777 == 0o600
    stored_class = ddir.read_hardware_class()  # the enrollment answer carries the class's document
    assert stored_class is not None
    assert stored_class.name == "medical-cart-cpu"
    device = fleet.client.get(f"/v1/devices/{identity.device_id}", headers=fleet.admin).json()
    assert device["status"] == "online"
    # The server holds only the public half.
    with fleet.app.state.context.db.session() as session:
        stored = session.get(DeviceRow, identity.device_id)
    assert "PRIVATE" not in stored.public_key_pem
    assert load_public_key_pem(stored.public_key_pem) is not None


def test_enroll_refuses_an_enrolled_data_dir_unless_forced(fleet):
    identity, ddir = fleet.enroll()
    with pytest.raises(ConflictError) as info:
        enroll(
            server_url="http://testserver",
            token=fleet.token(),
            data_dir=ddir.root,
            transport=fleet.client._transport,
        )
    assert info.value.code == "already_enrolled"
    again = enroll(
        server_url="http://testserver",
        token=fleet.token(),
        data_dir=ddir.root,
        transport=fleet.client._transport,
        force=True,
    )
    assert again.device_id != identity.device_id


@pytest.mark.parametrize(
    ("make_token", "enroll_kwargs", "code"),
    [
        ("used", {}, "enrollment_token_used"),
        ("expired", {}, "enrollment_token_expired"),
        ("serial", {"serial": "SN-OTHER"}, "enrollment_serial_mismatch"),
        ("garbage", {}, "invalid_enrollment_token"),
    ],
)
def test_bad_enrollment_tokens_are_refused(fleet, make_token, enroll_kwargs, code):
    if make_token == "used":
        token = fleet.token()
        fleet.enroll(token)
    elif make_token == "expired":
        token = fleet.token(ttl_s=60)
        fleet.clock.now += timedelta(seconds=61)
    elif make_token == "serial":
        token = fleet.token(serial="SN-1234")
    else:
        token = "efen_" + "x" * 43
    with pytest.raises(AuthenticationError) as info:
        fleet.enroll(token, **enroll_kwargs)
    assert info.value.code == code


def test_a_serial_bound_token_enrolls_that_serial(fleet):
    identity, _ = fleet.enroll(fleet.token(serial="SN-1234"), serial="SN-1234")
    assert (
        fleet.client.get(f"/v1/devices/{identity.device_id}", headers=fleet.admin).json()["serial"]
        == "SN-1234"
    )


def test_token_for_an_unknown_class_is_refused(fleet):
    r = fleet.client.post("/v1/enrollment-tokens", json={"hardware_class": "toaster"}, headers=fleet.admin)
    assert r.status_code == 404
    assert _code(r) == "class_not_found"


def test_concurrent_enrollments_with_a_single_use_token_give_one_device(fleet):
    token = fleet.token(uses=1)
    results: list[str] = []

    def attempt(i: int) -> None:
        key = Ed25519PrivateKey.generate()
        r = fleet.client.post(
            "/v1/enroll", json={"token": token, "public_key_pem": public_key_pem(key.public_key())}
        )
        results.append(str(r.status_code))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["201"] + ["401"] * 7
    assert fleet.client.get("/v1/devices", headers=fleet.admin).json()["total"] == 1


def test_failed_enrollments_are_rate_limited(fleet):
    for _ in range(10):
        r = fleet.client.post("/v1/enroll", json={"token": "efen_nope", "public_key_pem": "x"})
        assert r.status_code in (401, 422)
    r = fleet.client.post("/v1/enroll", json={"token": "efen_nope", "public_key_pem": "x"})
    assert r.status_code == 429
    assert _code(r) == "enrollment_rate_limited"
    assert r.json()["details"]["retry_after_s"] >= 1
    assert r.headers["retry-after"] == str(r.json()["details"]["retry_after_s"])  # as docs/devices.md says


def test_desired_state_follows_pins_and_answers_304_when_unchanged(fleet):
    identity, ddir = fleet.enroll()
    channel = fleet.channel(identity, ddir)
    first = channel.request("GET", "/v1/device/desired-state")
    assert first.headers["etag"] == '"1"'
    state = verify_desired_state(
        first.json(),
        director_key=identity.director_key,
        device_id=identity.device_id,
        last_generation=0,
        now=fleet.clock(),
        time_floor=None,
    )
    assert state.slots == {}
    assert (
        channel.request("GET", "/v1/device/desired-state", headers={"if-none-match": '"1"'}).status_code
        == 304
    )

    art = fleet.artifact("1.0.0")
    r = fleet.client.put(
        "/v1/pins/class/medical-cart-cpu/default", json={"artifact_id": art}, headers=fleet.admin
    )
    assert r.status_code == 204, r.text
    second = channel.request("GET", "/v1/device/desired-state", headers={"if-none-match": '"1"'})
    assert second.status_code == 200
    state2 = verify_desired_state(
        second.json(),
        director_key=identity.director_key,
        device_id=identity.device_id,
        last_generation=1,
        now=fleet.clock(),
        time_floor=None,
    )
    assert state2.generation == 2
    assert state2.slots["default"].artifact_id == art
    # not published to TUF in this fleet: named by the registered manifest (a device refuses it until it is)
    assert state2.slots["default"].manifest.path == "digits/1.0.0/medical-cart-cpu/manifest.json"

    # A device pin wins over the class pin.
    art2 = fleet.artifact("1.1.0")
    fleet.client.put(
        f"/v1/pins/device/{identity.device_id}/default", json={"artifact_id": art2}, headers=fleet.admin
    )
    third = channel.request("GET", "/v1/device/desired-state").json()
    assert third["signed"]["generation"] == 3
    assert third["signed"]["slots"]["default"]["artifact_id"] == art2

    # Disabling the artifact removes it fleet-wide at the next poll.
    fleet.client.patch(f"/v1/artifacts/{art2}", json={"disabled": True, "reason": "bad"}, headers=fleet.admin)
    fourth = channel.request("GET", "/v1/device/desired-state").json()
    assert fourth["signed"]["slots"] == {}
    assert fourth["signed"]["disabled_artifacts"] == [art2]


def test_desired_state_is_reissued_before_it_expires(fleet):
    identity, ddir = fleet.enroll()
    channel = fleet.channel(identity, ddir)
    assert channel.request("GET", "/v1/device/desired-state").headers["etag"] == '"1"'
    fleet.clock.now += timedelta(days=3)
    assert (
        channel.request("GET", "/v1/device/desired-state", headers={"if-none-match": '"1"'}).status_code
        == 304
    )
    fleet.clock.now += timedelta(days=1)  # past half of the 7-day lifetime
    assert (
        channel.request("GET", "/v1/device/desired-state", headers={"if-none-match": '"1"'}).headers["etag"]
        == '"2"'
    )


def test_pinning_an_artifact_of_another_class_is_refused(fleet):
    identity, _ = fleet.enroll()
    art = fleet.artifact("1.0.0", hardware_class="intel-lowpower-detector")
    r = fleet.client.put(
        f"/v1/pins/device/{identity.device_id}/default", json={"artifact_id": art}, headers=fleet.admin
    )
    assert r.status_code == 422
    assert _code(r) == "wrong_hardware_class"


def test_device_a_cannot_read_or_write_device_b(fleet):
    a, a_dir = fleet.enroll()
    b, _ = fleet.enroll()
    # A signs with its own key but claims to be B: the signature does not verify under B's key.
    forged = DeviceChannel(
        "http://testserver",
        device_id=b.device_id,
        key=a_dir.read_key(),
        transport=fleet.client._transport,
        clock=lambda: fleet.clock().timestamp(),
    )
    with pytest.raises(AuthenticationError) as info:
        forged.request("GET", "/v1/device/desired-state")
    assert info.value.code == "bad_signature"
    with pytest.raises(AuthenticationError):
        forged.request(
            "POST",
            "/v1/device/report",
            json_body={"sequence": 1, "boot_id": "x", "reported_at": fleet.clock().isoformat()},
        )
    assert fleet.client.get(f"/v1/devices/{b.device_id}", headers=fleet.admin).json()["report"] is None
    # A's own channel only ever sees A's document.
    doc = fleet.channel(a, a_dir).request("GET", "/v1/device/desired-state").json()
    assert doc["signed"]["device_id"] == a.device_id


def test_replayed_and_unsigned_requests_are_refused(fleet):
    identity, ddir = fleet.enroll()
    headers = sign_request(
        ddir.read_key(),
        device_id=identity.device_id,
        method="GET",
        path="/v1/device/desired-state",
        body=b"",
        now_s=fleet.clock().timestamp(),
    )
    assert fleet.client.get("/v1/device/desired-state", headers=headers).status_code == 200
    replay = fleet.client.get("/v1/device/desired-state", headers=headers)
    assert replay.status_code == 401
    assert _code(replay) == "replayed_request"
    unsigned = fleet.client.get("/v1/device/desired-state")
    assert (unsigned.status_code, _code(unsigned)) == (401, "unsigned_request")
    old = sign_request(
        ddir.read_key(),
        device_id=identity.device_id,
        method="GET",
        path="/v1/device/desired-state",
        body=b"",
        now_s=fleet.clock().timestamp() - 3600,
    )
    stale = fleet.client.get("/v1/device/desired-state", headers=old)
    assert (stale.status_code, _code(stale)) == (401, "clock_skew")


def test_a_revoked_device_is_refused_at_its_next_request(fleet):
    identity, ddir = fleet.enroll()
    channel = fleet.channel(identity, ddir)
    channel.request("GET", "/v1/device/desired-state")
    r = fleet.client.post(
        f"/v1/devices/{identity.device_id}/revoke", json={"reason": "stolen"}, headers=fleet.admin
    )
    assert r.json()["status"] == "revoked"
    with pytest.raises(AuthenticationError) as info:
        channel.request("GET", "/v1/device/desired-state")
    assert info.value.code == "device_revoked"


def test_reports_are_idempotent_and_keep_the_newest(fleet):
    identity, ddir = fleet.enroll()
    channel = fleet.channel(identity, ddir)
    report = {"sequence": 2, "boot_id": "boot1", "reported_at": fleet.clock().isoformat(), "status": "ok"}
    assert channel.request("POST", "/v1/device/report", json_body=report).json() == {"accepted": True}
    assert channel.request("POST", "/v1/device/report", json_body=report).json() == {"accepted": False}
    older = {**report, "sequence": 1, "status": "error"}
    assert channel.request("POST", "/v1/device/report", json_body=older).json() == {"accepted": False}
    stored = fleet.client.get(f"/v1/devices/{identity.device_id}", headers=fleet.admin).json()["report"]
    assert stored["sequence"] == 2
    assert stored["status"] == "ok"
    # A new boot starts its sequence again and is accepted.
    reboot = {**report, "sequence": 1, "boot_id": "boot2"}
    assert channel.request("POST", "/v1/device/report", json_body=reboot).json() == {"accepted": True}
    # A malformed report is a 422 with field details, and changes nothing.
    with pytest.raises(InvalidDocumentError) as info:
        channel.request("POST", "/v1/device/report", json_body={"sequence": -1})
    assert info.value.code == "invalid_document"
    assert (
        fleet.client.get(f"/v1/devices/{identity.device_id}", headers=fleet.admin).json()["report"]["boot_id"]
        == "boot2"
    )


def test_devices_become_stale_then_offline_and_list_filters(fleet):
    a, _ = fleet.enroll(fleet.token(labels={"site": "north"}))
    fleet.clock.now += timedelta(seconds=300)
    b, _ = fleet.enroll(fleet.token(labels={"site": "south"}, hardware_class="intel-lowpower-detector"))
    listing = fleet.client.get("/v1/devices", headers=fleet.admin).json()
    statuses = {d["id"]: d["status"] for d in listing["items"]}
    assert statuses == {a.device_id: "stale", b.device_id: "online"}
    fleet.clock.now += timedelta(seconds=1000)
    assert fleet.client.get(f"/v1/devices/{a.device_id}", headers=fleet.admin).json()["status"] == "offline"
    by_label = fleet.client.get("/v1/devices", params={"label": "site=south"}, headers=fleet.admin).json()
    assert [d["id"] for d in by_label["items"]] == [b.device_id]
    by_class = fleet.client.get(
        "/v1/devices", params={"hardware_class": "medical-cart-cpu"}, headers=fleet.admin
    ).json()
    assert [d["id"] for d in by_class["items"]] == [a.device_id]


def test_viewers_cannot_mint_tokens_or_revoke(fleet):
    r = fleet.client.post("/v1/tokens", json={"name": "watcher", "role": "viewer"}, headers=fleet.admin)
    viewer = {"authorization": f"Bearer {r.json()['token']}"}
    r = fleet.client.post(
        "/v1/enrollment-tokens", json={"hardware_class": "medical-cart-cpu"}, headers=viewer
    )
    assert (r.status_code, _code(r)) == (403, "permission_denied")
    assert fleet.client.get("/v1/devices", headers=viewer).status_code == 200


def test_unknown_device_is_not_found(fleet):
    r = fleet.client.get("/v1/devices/dev_" + "0" * 20, headers=fleet.admin)
    assert (r.status_code, _code(r)) == (404, "device_not_found")


def test_status_filter_in_sql_agrees_with_the_status_rule(fleet):
    """Devices at each threshold land in the same bucket in the SQL filter and in device_status."""
    made = {}
    for age_s in (0, 120, 121, 900, 901):
        identity, _ = fleet.enroll(fleet.token(labels={"age": str(age_s)}))
        made[identity.device_id] = age_s
        fleet.clock.now += timedelta(seconds=1)
    base = fleet.clock.now
    from edgefleet.server.store.devices import DeviceRow as Row

    with fleet.app.state.context.db.session() as session, session.begin():
        for device_id, age_s in made.items():
            session.get(Row, device_id).last_seen_at = base - timedelta(seconds=age_s)
    shown = {
        d["id"]: d["status"] for d in fleet.client.get("/v1/devices", headers=fleet.admin).json()["items"]
    }
    assert [shown[d] for d in made] == ["online", "online", "stale", "stale", "offline"]
    for status in ("online", "stale", "offline"):
        filtered = fleet.client.get("/v1/devices", params={"status": status}, headers=fleet.admin).json()
        assert {d["id"] for d in filtered["items"]} == {d for d, s in shown.items() if s == status}
        assert filtered["total"] == sum(1 for s in shown.values() if s == status)
    both = fleet.client.get(
        "/v1/devices", params={"status": "stale", "label": "age=900"}, headers=fleet.admin
    ).json()
    assert [d["id"] for d in both["items"]] == [d for d, a in made.items() if a == 900]


# --- operator rollback of one device -----------------------------------------------------------------------


def _report_slots(fleet, identity, ddir, sequence: int, slots: dict) -> None:
    """A report from the device over its signed channel, naming what each slot runs and ran before."""
    body = {
        "sequence": sequence,
        "boot_id": "boot1",
        "reported_at": fleet.clock().isoformat(),
        "slots": slots,
    }
    assert fleet.channel(identity, ddir).request("POST", "/v1/device/report", json_body=body).json() == {
        "accepted": True
    }


def test_the_device_document_says_which_slots_are_behind_and_why(fleet):
    identity, ddir = fleet.enroll()
    url = f"/v1/devices/{identity.device_id}"
    assert fleet.client.get(url, headers=fleet.admin).json()["behind"] == []  # no report yet
    lagging = {
        "active": "a1",
        "desired": "a2",
        "state": "failed:disk_full",
        "failed_artifact": "a2",
        "failure_code": "disk_full",
        "behind": "failed:disk_full",
        "retrying": True,
    }
    _report_slots(fleet, identity, ddir, 1, {"default": lagging})
    device = fleet.client.get(url, headers=fleet.admin).json()
    assert device["behind"] == [
        {"slot": "default", "desired": "a2", "active": "a1", "why": "failed:disk_full", "retrying": True}
    ]
    assert device["report"]["slots"]["default"]["behind"] == "failed:disk_full"  # stored as reported
    listed = fleet.client.get("/v1/devices", headers=fleet.admin).json()["items"]
    assert [d["behind"] for d in listed if d["id"] == identity.device_id] == [device["behind"]]
    caught_up = {"active": "a2", "desired": "a2", "state": "committed"}
    _report_slots(fleet, identity, ddir, 2, {"default": caught_up})
    assert fleet.client.get(url, headers=fleet.admin).json()["behind"] == []


def _audit(fleet, action: str) -> list[dict]:
    r = fleet.client.get("/v1/audit", params={"action": action, "limit": 500}, headers=fleet.admin)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_rollback_pins_the_previous_version_the_device_reported(fleet):
    identity, ddir = fleet.enroll()
    other, other_dir = fleet.enroll()
    v1, v2 = fleet.artifact("1.0.0"), fleet.artifact("2.0.0")
    fleet.client.put("/v1/pins/class/medical-cart-cpu/default", json={"artifact_id": v2}, headers=fleet.admin)
    assert fleet.poll(identity, ddir) == {"default": v2}
    _report_slots(fleet, identity, ddir, 1, {"default": {"active": v2, "previous": v1, "state": "idle"}})
    r = fleet.client.post(
        f"/v1/devices/{identity.device_id}/rollback", json={"slot": "default"}, headers=fleet.admin
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "scope": "device",
        "target": identity.device_id,
        "slot": "default",
        "artifact_id": v1,
        "pinned": True,
        "rolled_back_from": v2,
    }
    # The device is told v1 at its next poll; the class pin (and every other device) still says v2.
    assert fleet.poll(identity, ddir) == {"default": v1}
    assert fleet.poll(other, other_dir) == {"default": v2}
    # Audited as a pin of that device, plus what it rolled back from.
    [pin] = [a for a in _audit(fleet, "pin.set") if a["target"] == f"device:{identity.device_id}"]
    assert pin["details"] == {"slot": "default", "artifact_id": v1}
    assert pin["actor"] == "bootstrap-admin"
    [rollback] = _audit(fleet, "device.rollback")
    assert rollback["target"] == identity.device_id
    assert rollback["details"] == {"slot": "default", "artifact_id": v1, "rolled_back_from": v2}
    # An empty body means the default slot; rolling back again is the same pin.
    again = fleet.client.post(f"/v1/devices/{identity.device_id}/rollback", headers=fleet.admin)
    assert (again.status_code, again.json()["artifact_id"]) == (200, v1)


def test_rollback_without_a_reported_previous_version_is_refused_and_changes_nothing(fleet):
    identity, ddir = fleet.enroll()
    v1 = fleet.artifact("1.0.0")
    fleet.client.put("/v1/pins/class/medical-cart-cpu/default", json={"artifact_id": v1}, headers=fleet.admin)
    url = f"/v1/devices/{identity.device_id}/rollback"
    never_reported = fleet.client.post(url, json={}, headers=fleet.admin)
    assert never_reported.status_code == 409
    body = never_reported.json()
    assert body["code"] == "no_previous_version"
    assert body["details"]["expected"] == "a report naming slots.default.previous"
    assert body["details"]["got"] == "no report from the device yet"
    _report_slots(fleet, identity, ddir, 1, {"default": {"active": v1, "previous": None, "state": "idle"}})
    first_install = fleet.client.post(url, json={"slot": "default"}, headers=fleet.admin)
    assert (first_install.status_code, first_install.json()["code"]) == (409, "no_previous_version")
    assert first_install.json()["details"]["got"] == "slots.default.previous is null"
    assert first_install.json()["details"]["active"] == v1
    other_slot = fleet.client.post(url, json={"slot": "fallback"}, headers=fleet.admin)
    assert (other_slot.status_code, other_slot.json()["code"]) == (409, "no_previous_version")
    assert other_slot.json()["details"]["got"] == "the last report has no slot 'fallback'"
    assert fleet.poll(identity, ddir) == {"default": v1}
    assert _audit(fleet, "device.rollback") == []
    assert [a for a in _audit(fleet, "pin.set") if a["target"].startswith("device:")] == []


def test_rollback_is_checked_like_any_pin(fleet):
    identity, ddir = fleet.enroll()
    v1, v2 = fleet.artifact("1.0.0"), fleet.artifact("2.0.0")
    _report_slots(fleet, identity, ddir, 1, {"default": {"active": v2, "previous": v1, "state": "idle"}})
    url = f"/v1/devices/{identity.device_id}/rollback"
    r = fleet.client.post("/v1/tokens", json={"name": "watcher", "role": "viewer"}, headers=fleet.admin)
    viewer = {"authorization": f"Bearer {r.json()['token']}"}
    denied = fleet.client.post(url, json={}, headers=viewer)
    assert (denied.status_code, _code(denied)) == (403, "permission_denied")
    unknown = fleet.client.post("/v1/devices/dev_" + "0" * 20 + "/rollback", json={}, headers=fleet.admin)
    assert (unknown.status_code, _code(unknown)) == (404, "device_not_found")
    bad_slot = fleet.client.post(url, json={"slot": "../x"}, headers=fleet.admin)
    assert (bad_slot.status_code, _code(bad_slot)) == (422, "invalid_document")
    # The previous version was disabled since: the pin's own check refuses it.
    fleet.client.patch(f"/v1/artifacts/{v1}", json={"disabled": True, "reason": "bad"}, headers=fleet.admin)
    disabled = fleet.client.post(url, json={}, headers=fleet.admin)
    assert (disabled.status_code, _code(disabled)) == (422, "artifact_disabled")
    assert _audit(fleet, "device.rollback") == []
    # Another slot rolls back on its own.
    fallback_v1 = fleet.artifact("0.9.0")
    _report_slots(
        fleet,
        identity,
        ddir,
        2,
        {
            "default": {"active": v2, "previous": v1, "state": "idle"},
            "fallback": {"active": v2, "previous": fallback_v1, "state": "idle"},
        },
    )
    fallback = fleet.client.post(url, json={"slot": "fallback"}, headers=fleet.admin)
    assert fallback.status_code == 200, fallback.text
    assert (fallback.json()["slot"], fallback.json()["artifact_id"]) == ("fallback", fallback_v1)
    assert fleet.poll(identity, ddir) == {"fallback": fallback_v1}


def test_an_artifact_the_devices_runtimes_cannot_run_is_not_assigned(fleet):
    """The device reports its runtime inventory; the director assigns nothing it lacks the runtime, the
    runtime version (``min_version``) or every provider for; a device pin of such an artifact is refused."""
    identity, ddir = fleet.enroll()
    channel = fleet.channel(identity, ddir)
    art = fleet.artifact("1.0.0")  # onnxruntime >= 1.16 on CPUExecutionProvider
    fleet.client.put(
        "/v1/pins/class/medical-cart-cpu/default", json={"artifact_id": art}, headers=fleet.admin
    )
    sequence = iter(range(1, 100))

    def report(runtimes, serving=None):
        body = {
            "sequence": next(sequence),
            "boot_id": "boot",
            "reported_at": fleet.clock().isoformat(),
            "runtimes": runtimes,
            "serving": serving,
            "status": "degraded" if serving else "ok",
        }
        assert channel.request("POST", "/v1/device/report", json_body=body).json() == {"accepted": True}

    def assigned():
        return channel.request("GET", "/v1/device/desired-state").json()["signed"]["slots"]

    assert "default" in assigned()  # no inventory reported yet (an older agent): not judged
    old = {"onnxruntime": {"version": "1.14.1", "execution_providers": ["CPUExecutionProvider"]}}
    report(old)
    assert assigned() == {}
    r = fleet.client.put(
        f"/v1/pins/device/{identity.device_id}/default", json={"artifact_id": art}, headers=fleet.admin
    )
    assert (r.status_code, _code(r)) == (422, "device_runtime_too_old")
    assert r.json()["details"] == {"expected": ">= 1.16", "got": "1.14.1"}

    report({"openvino": {"version": "2026.4.1", "execution_providers": ["CPUExecutionProvider"]}})
    r = fleet.client.put(
        f"/v1/pins/device/{identity.device_id}/default", json={"artifact_id": art}, headers=fleet.admin
    )
    assert _code(r) == "device_lacks_runtime"
    report({"onnxruntime": {"version": "1.18.0", "execution_providers": ["CUDAExecutionProvider"]}})
    r = fleet.client.put(
        f"/v1/pins/device/{identity.device_id}/default", json={"artifact_id": art}, headers=fleet.admin
    )
    assert _code(r) == "device_lacks_provider"
    assert assigned() == {}

    serving = {"mode": "cpu", "reason": "accelerator_unavailable", "providers": ["CPUExecutionProvider"]}
    report({"onnxruntime": {"version": "1.18.0", "execution_providers": ["CPUExecutionProvider"]}}, serving)
    assert assigned()["default"]["artifact_id"] == art  # the new inventory re-judged the assignment
    stored = fleet.client.get(f"/v1/devices/{identity.device_id}", headers=fleet.admin).json()["report"]
    assert stored["serving"] == serving
    assert stored["status"] == "degraded"
