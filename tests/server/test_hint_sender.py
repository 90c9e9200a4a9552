"""Wake-up hints, the control plane's side: who is hinted after a change (the director's own rule), the
coalescing of a flood, hints for unknown devices dropped, a broker outage dropping hints (never an error),
the device's hint configuration, and the broker credentials."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.server.fleet import EXAMPLES, Clock, Fleet

from edgefleet.protocol import parse_classes_toml
from edgefleet.server.app import create_app
from edgefleet.server.errors import ConfigurationError
from edgefleet.server.hint_broker import (
    broker_users,
    device_password,
    hint_payload,
    load_mqtt_secret,
    mosquitto_password_line,
    parse_broker_url,
)
from edgefleet.server.services.hints import HintCoalescer, hint_spread_s
from edgefleet.server.settings import Settings


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, dict]] = []
        self.up = True

    def publish(self, topic: str, payload: bytes) -> bool:
        if not self.up:
            return False
        self.published.append((topic, json.loads(payload)))
        return True

    def close(self) -> None:
        pass

    def take(self) -> list[str]:
        devices = [body["device_id"] for _, body in self.published]
        self.published.clear()
        return devices


@pytest.fixture
def hinting(tmp_path, database_url):
    """A fleet whose server has a broker configured, with a fake publisher (the hint loop idles: rounds
    are run by hand)."""
    clock = Clock()
    settings = Settings(
        data_dir=tmp_path / "server",
        dev=True,
        database_url=database_url,
        rollout_tick_s=3600,
        mqtt_url="mqtt://edgefleet-control:pw@127.0.0.1:1",
        hint_check_s=3600,
        hint_min_interval_s=5.0,
    )
    app = create_app(settings, clock=clock)
    publisher = FakePublisher()
    app.state.hints.publisher = publisher
    with TestClient(app) as client:
        admin = {"authorization": f"Bearer {app.state.context.settings.admin_token}"}
        classes = [c.to_dict() for c in parse_classes_toml(EXAMPLES.read_text())]
        assert client.post("/v1/classes/apply", json={"classes": classes}, headers=admin).status_code == 200
        yield Fleet(app, client, admin, clock, tmp_path), publisher


def _round(fleet: Fleet, now_s: float) -> int:
    runtime = fleet.app.state.hints
    return int(runtime.round(fleet.app.state.context.db, signed_target=lambda _p: None, now_s=now_s))


def test_only_devices_whose_desired_state_changed_are_hinted(hinting):
    fleet, publisher = hinting
    a, a_dir = fleet.enroll()
    b, b_dir = fleet.enroll()
    never_polled, _ = fleet.enroll()
    fleet.poll(a, a_dir)
    fleet.poll(b, b_dir)
    _round(fleet, 0.0)
    publisher.take()  # whatever the start-up round found
    art = fleet.artifact("1.0.0")
    fleet.client.put(f"/v1/pins/device/{a.device_id}/default", json={"artifact_id": art}, headers=fleet.admin)
    assert _round(fleet, 100.0) == 1
    topic, body = publisher.published[0]
    assert topic == f"edgefleet/devices/{a.device_id}/hint"
    assert body == {"v": 1, "device_id": a.device_id, "spread_s": 0.0}  # no state, no authority
    publisher.take()
    # Nothing changed since: the epoch did not move, no sweep, no hint.
    assert _round(fleet, 200.0) == 0
    # A class pin changes both polled devices; the device that never polled gets its state at its first
    # poll anyway and is not hinted.
    fleet.client.put("/v1/pins/class/medical-cart-cpu/slot2", json={"artifact_id": art}, headers=fleet.admin)
    assert _round(fleet, 300.0) == 2
    assert sorted(publisher.take()) == sorted([a.device_id, b.device_id])
    assert never_polled.device_id not in [d for _, d in publisher.published]
    # A device that polled since the change needs no hint.
    fleet.poll(a, a_dir)
    fleet.poll(b, b_dir)
    fleet.client.put(f"/v1/pins/device/{a.device_id}/slot3", json={"artifact_id": art}, headers=fleet.admin)
    fleet.poll(a, a_dir)
    assert _round(fleet, 400.0) == 0
    # A change undone before the round leaves the device's state as it holds it: no hint.
    fleet.client.put(f"/v1/pins/device/{b.device_id}/slot3", json={"artifact_id": art}, headers=fleet.admin)
    fleet.client.delete(f"/v1/pins/device/{b.device_id}/slot3", headers=fleet.admin)
    assert _round(fleet, 500.0) == 0
    assert publisher.take() == []


def test_a_flood_of_changes_is_one_hint_per_device_per_interval(hinting):
    fleet, publisher = hinting
    a, a_dir = fleet.enroll()
    fleet.poll(a, a_dir)
    _round(fleet, 0.0)
    publisher.take()
    arts = [fleet.artifact(f"1.{i}.0") for i in range(3)]
    for art in arts:  # three changes before the next round: one hint
        fleet.client.put(
            f"/v1/pins/device/{a.device_id}/default", json={"artifact_id": art}, headers=fleet.admin
        )
    assert _round(fleet, 100.0) == 1
    # Another change right after: held back until the interval (5 s) passed, then sent once.
    fleet.client.put(
        f"/v1/pins/device/{a.device_id}/default", json={"artifact_id": arts[0]}, headers=fleet.admin
    )
    assert _round(fleet, 101.0) == 0
    assert fleet.app.state.hints.coalescer.pending == 1
    assert _round(fleet, 106.0) == 1
    assert publisher.take() == [a.device_id, a.device_id]


def test_hints_for_unknown_or_revoked_devices_are_dropped(hinting):
    fleet, publisher = hinting
    a, a_dir = fleet.enroll()
    b, _ = fleet.enroll()
    fleet.poll(a, a_dir)
    _round(fleet, 0.0)
    publisher.take()
    fleet.client.post(
        f"/v1/devices/{b.device_id}/revoke", json={"reason": "stolen"}, headers=fleet.admin
    ).raise_for_status()
    runtime = fleet.app.state.hints
    runtime.offer(["dev_00000000000000000000", b.device_id, a.device_id, "not even an id"])
    assert _round(fleet, 100.0) == 1
    assert publisher.take() == [a.device_id]
    assert runtime.dropped_unknown == 3


def test_a_broker_outage_drops_hints_and_the_server_keeps_serving(hinting):
    fleet, publisher = hinting
    a, a_dir = fleet.enroll()
    fleet.poll(a, a_dir)
    _round(fleet, 0.0)
    publisher.up = False
    art = fleet.artifact("1.0.0")
    fleet.client.put(f"/v1/pins/device/{a.device_id}/default", json={"artifact_id": art}, headers=fleet.admin)
    assert _round(fleet, 100.0) == 0
    assert fleet.app.state.hints.dropped_unsent == 1
    assert fleet.poll(a, a_dir) == {"default": art}  # the device still gets it at its poll


def test_the_device_gets_its_own_topic_and_credentials_over_its_signed_channel(hinting):
    fleet, _ = hinting
    a, a_dir = fleet.enroll()
    b, b_dir = fleet.enroll()
    config = fleet.channel(a, a_dir).request("GET", "/v1/device/hints").json()
    secret = load_mqtt_secret(fleet.app.state.context.settings)
    assert config == {
        "broker_url": "mqtt://127.0.0.1:1",  # the control plane's credentials are not handed out
        "topic": f"edgefleet/devices/{a.device_id}/hint",
        "username": a.device_id,
        "password": device_password(secret, a.device_id),
        "min_interval_s": 5.0,
    }
    other = fleet.channel(b, b_dir).request("GET", "/v1/device/hints").json()
    assert other["password"] != config["password"]
    # Unsigned: refused.
    assert fleet.client.get("/v1/device/hints").status_code == 401


def test_without_a_broker_the_device_is_told_to_poll(fleet):
    a, a_dir = fleet.enroll()
    from edgefleet.protocol.errors import NotFoundError

    with pytest.raises(NotFoundError) as caught:
        fleet.channel(a, a_dir).request("GET", "/v1/device/hints")
    assert caught.value.code == "hints_not_configured"


def test_broker_users_list_the_control_user_and_unrevoked_devices(hinting):
    fleet, _ = hinting
    a, _ = fleet.enroll()
    b, _ = fleet.enroll()
    fleet.client.post(f"/v1/devices/{b.device_id}/revoke", json={"reason": "x"}, headers=fleet.admin)
    settings = fleet.app.state.context.settings
    users = dict(broker_users(settings, fleet.app.state.context.db))
    assert users == {
        "edgefleet-control": "pw",
        a.device_id: device_password(load_mqtt_secret(settings), a.device_id),
    }


def test_mosquitto_password_lines_are_pbkdf2_sha512():
    salt = bytes(range(12))
    line = mosquitto_password_line("dev_x", "secret", salt=salt)
    user, encoded = line.split(":", 1)
    _, kind, iterations, salt_b64, digest_b64 = encoded.split("$")
    assert (user, kind, iterations) == ("dev_x", "7", "101")
    assert base64.b64decode(salt_b64) == salt
    expected = hashlib.pbkdf2_hmac("sha512", b"secret", salt, 101)
    assert base64.b64decode(digest_b64) == expected
    assert mosquitto_password_line("dev_x", "secret") != mosquitto_password_line("dev_x", "secret")  # salted


def test_device_passwords_are_per_device_and_per_secret():
    assert device_password(b"k1", "dev_a") == device_password(b"k1", "dev_a")
    assert device_password(b"k1", "dev_a") != device_password(b"k1", "dev_b")
    assert device_password(b"k1", "dev_a") != device_password(b"k2", "dev_a")


def test_coalescer_is_pure_and_bounded():
    c = HintCoalescer(min_interval_s=10.0, max_tracked=2)
    c.offer(["a", "b", "a"])
    assert c.due(0.0) == ["a", "b"]
    c.offer(["a"])
    assert c.due(5.0) == []  # too soon: pending
    assert c.pending == 1
    assert c.due(10.0) == ["a"]
    c.offer(["c", "d", "e"])
    c.due(10.0)
    assert len(c._last_sent_s) <= 2  # the bound itself is what is tested


def test_spread_grows_with_the_wave_and_is_capped():
    assert hint_spread_s(1, 500) == 0.0
    assert hint_spread_s(1000, 500) == 2.0
    assert hint_spread_s(10**9, 500) == 300.0


def test_hint_payload_and_broker_url():
    assert json.loads(hint_payload("dev_a", spread_s=1.23456)) == {
        "v": 1,
        "device_id": "dev_a",
        "spread_s": 1.235,
    }
    address = parse_broker_url("mqtts://user:p%40ss@broker.example")
    assert (address.host, address.port, address.tls, address.username, address.password) == (
        "broker.example",
        8883,
        True,
        "user",
        "p@ss",
    )
    assert address.public_url() == "mqtts://broker.example:8883"


@pytest.mark.parametrize(
    "overrides",
    [
        {"mqtt_url": "http://broker:1883"},
        {"mqtt_url": "mqtt://b", "mqtt_device_url": "tcp://b"},
        {"content_base_url": "ftp://cdn"},
        {"hint_check_s": 0},
        {"hint_min_interval_s": -1},
    ],
)
def test_bad_hint_and_content_settings_are_refused(overrides, tmp_path: Path):
    with pytest.raises(ConfigurationError):
        Settings(data_dir=tmp_path, dev=True, **overrides).validate()


def test_the_enrollment_answer_names_the_content_host(tmp_path, database_url):
    settings = Settings(
        data_dir=tmp_path / "server",
        dev=True,
        database_url=database_url,
        content_base_url="https://cdn.example/ef",
    )
    app = create_app(settings, clock=Clock())
    with TestClient(app) as client:
        admin = {"authorization": f"Bearer {app.state.context.settings.admin_token}"}
        classes = [c.to_dict() for c in parse_classes_toml(EXAMPLES.read_text())]
        client.post("/v1/classes/apply", json={"classes": classes}, headers=admin)
        fleet = Fleet(app, client, admin, Clock(), tmp_path)
        identity, ddir = fleet.enroll()
        assert identity.content_url == "https://cdn.example/ef"
        assert ddir.read_identity().content_base_url == "https://cdn.example/ef"
