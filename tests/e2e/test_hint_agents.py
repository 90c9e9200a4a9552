"""Wake-up hints end to end: a real control plane publishing to a real Mosquitto (password file rendered by
``edgefleet hints passwd``, the shipped ACL), and real ``agent run`` processes.

A device polling every 10 minutes installs a new assignment within seconds because of the hint; with the
broker stopped it still converges, at its (here shorter) poll; and one device's broker credentials cannot
read another device's hints nor publish a hint at all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from tests.e2e.fleet_cli import (
    EDGEFLEET,
    EXAMPLES,
    agent_command,
    cli,
    enroll_agent,
    push_artifact,
    reported_active,
    wait_for,
)
from tests.e2e.mosquitto import CONTROL_USER, Mosquitto, free_port

from edgefleet.server.hint_broker import device_password, load_mqtt_secret

pytestmark = pytest.mark.slow


CONTROL_PASSWORD = "control-password-for-the-test"


def _render_passwords(server, broker: Mosquitto) -> None:
    env = {
        **os.environ,
        "EDGEFLEET_DATA_DIR": str(server.data_dir),
        "EDGEFLEET_MQTT_URL": server.settings.mqtt_url,
    }
    subprocess.run(
        [*EDGEFLEET, "hints", "passwd", str(broker.password_file)],
        check=True,
        capture_output=True,
        env=env,
        timeout=60,
    )


@pytest.fixture
def brokered(live_server_factory, tmp_path):
    """A server with a broker configured (the broker is not started yet) and the example classes."""
    broker = Mosquitto(tmp_path / "broker", free_port())
    broker.directory.mkdir()
    server = live_server_factory(
        mqtt_url=f"mqtt://{CONTROL_USER}:{CONTROL_PASSWORD}@127.0.0.1:{broker.port}",
        hint_min_interval_s=1.0,
    )
    cli(server, "class", "apply", str(EXAMPLES))
    yield server, broker
    broker.stop()


@pytest.fixture
def hinted(brokered, tmp_path):
    """The same, with 1.0.0 pinned to the class."""
    server, broker = brokered
    v1 = push_artifact(server, tmp_path, "1.0.0")
    cli(server, "device", "pin", v1, "--class", "medical-cart-cpu")
    return server, broker, v1


def _logged_at(text: str, event: str) -> float:
    """The wall-clock time of the first log line with ``event`` (the agent logs ``%(asctime)s``)."""
    line = next(line for line in text.splitlines() if event in line)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _start(data_dir: Path, log: Path, poll_interval_s: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            agent_command(data_dir, "--poll-interval", poll_interval_s, "--backoff-cap", "2"),
            stdout=out,
            stderr=out,
        )


def _stop(agent: subprocess.Popen[bytes]) -> None:
    agent.send_signal(signal.SIGTERM)
    agent.wait(timeout=30)


def test_a_hint_brings_a_new_assignment_in_seconds_and_polling_covers_a_broker_outage(hinted, tmp_path):
    server, broker, v1 = hinted
    data_dir = tmp_path / "agent"
    device_id = enroll_agent(server, data_dir)
    _render_passwords(server, broker)
    broker.start()
    log = tmp_path / "agent.log"
    agent = _start(data_dir, log, "600")  # polls at start, then every 10 minutes
    try:
        wait_for(lambda: reported_active(server, device_id) == v1, timeout_s=120, what="the first install")
        wait_for(lambda: "event=hints_connected" in log.read_text(), what="the agent listening for hints")
        # The control plane found the broker down at its start and reconnects by itself (1 s .. 60 s);
        # hints are dropped, not queued, until it is back, so the change below waits for it.
        wait_for(lambda: broker.has_client(CONTROL_USER), timeout_s=90, what="the control plane's connection")
        v2 = push_artifact(server, tmp_path, "2.0.0")
        changed_at, changed_wall_s = time.monotonic(), time.time()
        cli(server, "device", "pin", v2, "--class", "medical-cart-cpu")
        wait_for(lambda: reported_active(server, device_id) == v2, timeout_s=150, what="the hinted install")
        took_s = time.monotonic() - changed_at
        # 10 minutes of poll interval: only the hint can bring it this early (measured: a few seconds)
        print(f"hinted install took {took_s:.1f} s after the change (poll interval 600 s)")
        assert took_s < 150, took_s  # the next poll was >= 480 s away (600 s +- 20 %)
        text = log.read_text()
        print(
            f"hint received {_logged_at(text, 'event=hint_received') - changed_wall_s:.1f} s after the change"
        )
        assert "event=hint_received" in text
        assert "event=hinted_poll" in text
    finally:
        _stop(agent)

    # The broker goes away: the agent (now polling every 10 s) still converges at its poll.
    broker.stop()
    log2 = tmp_path / "agent-2.log"
    agent = _start(data_dir, log2, "10")
    try:
        wait_for(lambda: "event=hint_broker_unreachable" in log2.read_text(), what="a failed broker connect")
        time.sleep(1.0)  # the start-up poll is done; the change below can only arrive at a later poll
        cli(server, "device", "pin", v1, "--device", device_id)
        wait_for(
            lambda: reported_active(server, device_id) == v1, timeout_s=90, what="convergence by polling"
        )
        text = log2.read_text()
        assert "event=hint_received" not in text
        assert "event=hinted_poll" not in text
        assert agent.poll() is None  # the outage never stopped the agent
    finally:
        _stop(agent)
    assert agent.returncode == 0
    assert "Traceback" not in log2.read_text()


def test_a_device_cannot_read_another_devices_hints_nor_forge_one(brokered, tmp_path):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    server, broker = brokered
    alice = enroll_agent(server, tmp_path / "alice")
    bob = enroll_agent(server, tmp_path / "bob")
    _render_passwords(server, broker)
    broker.start()
    secret = load_mqtt_secret(server.settings)

    def client(username: str, password: str) -> tuple[mqtt.Client, list[tuple[str, bytes]], dict]:
        got: list[tuple[str, bytes]] = []
        state: dict = {"connected": threading.Event(), "rc": None, "granted": []}
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"t-{username}-{time.time()}"
        )
        c.username_pw_set(username, password)

        def on_connect(_c, _u, _f, reason_code, _p):
            state["rc"] = reason_code
            state["connected"].set()

        def on_subscribe(_c, _u, _mid, reason_codes, _p):
            state["granted"].extend(reason_codes)

        c.on_connect = on_connect
        c.on_subscribe = on_subscribe
        c.on_message = lambda _c, _u, m: got.append((m.topic, bytes(m.payload)))
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        assert state["connected"].wait(10)
        return c, got, state

    bob_topic = f"edgefleet/devices/{bob}/hint"
    alice_topic = f"edgefleet/devices/{alice}/hint"
    # A wrong password is refused outright.
    intruder, _, intruder_state = client(alice, "not-the-password")
    assert intruder_state["rc"].is_failure
    intruder.loop_stop()
    # Alice, with her own credentials, tries to read Bob's topic (and everything); Bob reads his own.
    spy, spied, _ = client(alice, device_password(secret, alice))
    spy.subscribe(bob_topic, qos=1)
    spy.subscribe("edgefleet/devices/+/hint", qos=1)
    owner, owned, _ = client(bob, device_password(secret, bob))
    owner.subscribe(bob_topic, qos=1)
    own_alice, alice_got, _ = client(alice, device_password(secret, alice))
    own_alice.subscribe(alice_topic, qos=1)
    time.sleep(0.5)
    # Alice also tries to forge a hint for Bob and for herself: devices may not write anywhere.
    spy.publish(bob_topic, b'{"v":1,"device_id":"%s"}' % bob.encode(), qos=1)
    spy.publish(alice_topic, b'{"v":1,"device_id":"%s"}' % alice.encode(), qos=1)
    control, _, _ = client(CONTROL_USER, CONTROL_PASSWORD)
    control.publish(bob_topic, b"from-the-control-plane", qos=1).wait_for_publish(5)
    wait_for(lambda: owned, timeout_s=10, what="Bob's hint reaching Bob")
    time.sleep(1.0)
    for c in (spy, owner, own_alice, control):
        c.disconnect()
        c.loop_stop()
    assert owned == [(bob_topic, b"from-the-control-plane")]  # nothing forged by Alice reached Bob
    assert spied == []  # Alice saw none of Bob's hints
    assert alice_got == []  # not even her own forged one: devices cannot publish
