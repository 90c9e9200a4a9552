"""Wake-up hints, the device's side: what a hint may say (pure), when it makes the agent poll (pure), the
merging of a flood, and the sync loop polling at once on a hint (a real coordinator, an injected server)."""

from __future__ import annotations

import random
import threading
import time

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.agent.backoff import PollTiming
from edgefleet.agent.channel import DeviceChannel
from edgefleet.agent.datadir import DataDir, DeviceIdentity
from edgefleet.agent.hints import (
    MAX_HINT_BYTES,
    Hint,
    HintListener,
    Wakeup,
    hint_poll_at,
    parse_hint,
    parse_hint_config,
    reconnect_delay_s,
)
from edgefleet.agent.install.interface import RecordingInstaller
from edgefleet.agent.sync import SyncCoordinator
from edgefleet.protocol.desired_state import DesiredState
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.trust.director import public_key_pem, sign_desired_state

DEV = "dev_0123456789abcdef0123"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"v":1,"device_id":"%s","spread_s":2.5}' % DEV.encode(), Hint(2.5)),
        (b'{"device_id":"%s"}' % DEV.encode(), Hint(0.0)),
        (b'{"device_id":"%s","spread_s":1e9}' % DEV.encode(), Hint(300.0)),  # clamped
        (b'{"device_id":"%s","spread_s":-4}' % DEV.encode(), Hint(0.0)),
        (b'{"device_id":"%s","spread_s":"soon"}' % DEV.encode(), Hint(0.0)),
        (b'{"device_id":"%s","spread_s":NaN}' % DEV.encode(), Hint(0.0)),
        (b'{"device_id":"dev_someone_else"}', None),  # another device's hint: dropped
        (b"not json", None),
        (b"[]", None),
        (b'{"device_id":"%s","pad":"%s"}' % (DEV.encode(), b"x" * MAX_HINT_BYTES), None),  # too large
    ],
)
def test_a_hint_says_only_whom_and_how_spread(payload, expected):
    assert parse_hint(payload, DEV) == expected


def test_a_hint_moves_the_poll_earlier_never_later_and_not_before_the_interval():
    hint = Hint(spread_s=10.0)
    common = {"min_interval_s": 2.0, "jitter": 0.0}
    # Long after the last poll: at once.
    assert hint_poll_at(now_s=100.0, last_poll_s=50.0, next_poll_s=700.0, hint=hint, **common) == 100.0
    # Right after a poll: not before the interval (a flood costs one poll per interval).
    assert hint_poll_at(now_s=100.5, last_poll_s=100.0, next_poll_s=700.0, hint=hint, **common) == 102.0
    # Spread: somewhere in the window.
    assert (
        hint_poll_at(
            now_s=100.0, last_poll_s=0.0, next_poll_s=700.0, hint=hint, min_interval_s=2.0, jitter=0.5
        )
        == 105.0
    )
    # Never later than the poll already planned.
    assert (
        hint_poll_at(
            now_s=100.0, last_poll_s=0.0, next_poll_s=101.0, hint=hint, min_interval_s=2.0, jitter=1.0
        )
        == 101.0
    )


def test_a_flood_of_hints_is_one_wakeup_with_the_widest_spread():
    wakeup = Wakeup()
    for spread in (0.0, 3.0, 1.0):
        wakeup.hint(Hint(spread))
    assert wakeup.wait(0.0) == Hint(3.0)
    assert wakeup.wait(0.0) is None  # merged: nothing left
    wakeup.close()
    assert wakeup.wait(60.0) is None  # closed: returns at once


@pytest.mark.parametrize(
    "body",
    [
        {
            "broker_url": "http://b",
            "topic": f"edgefleet/devices/{DEV}/hint",
            "username": DEV,
            "password": "p",
        },
        {
            "broker_url": "mqtt://b",
            "topic": "edgefleet/devices/dev_other/hint",
            "username": DEV,
            "password": "p",
        },
        {"broker_url": "mqtt://b", "topic": "edgefleet/devices/#", "username": DEV, "password": "p"},
        {"broker_url": "mqtt://b", "topic": f"edgefleet/devices/{DEV}/hint"},
        "nonsense",
    ],
)
def test_a_bad_hint_configuration_is_refused(body):
    with pytest.raises(EdgefleetError) as caught:
        parse_hint_config(body, DEV)
    assert caught.value.code == "malformed_hint_config"


def test_a_good_hint_configuration():
    config = parse_hint_config(
        {
            "broker_url": "mqtts://broker.example",
            "topic": f"edgefleet/devices/{DEV}/hint",
            "username": DEV,
            "password": "p",
            "min_interval_s": 1e9,
        },
        DEV,
    )
    assert (config.host, config.port, config.tls, config.min_interval_s) == (
        "broker.example",
        8883,
        True,
        600.0,
    )


def test_an_unreachable_broker_is_retried_with_capped_jittered_backoff_and_never_raises():
    """No broker listens: the listener backs off (capped), and stops on ``stop``; polling is untouched."""
    pytest.importorskip("paho.mqtt")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    config = {
        "broker_url": f"mqtt://127.0.0.1:{port}",
        "topic": f"edgefleet/devices/{DEV}/hint",
        "username": DEV,
        "password": "p",
    }
    stop = threading.Event()
    listener = HintListener(
        DEV,
        lambda: config,
        Wakeup(),
        timing=PollTiming(backoff_base_s=0.01, backoff_cap_s=0.05),
        rng=random.Random(1),
    )
    thread = threading.Thread(target=listener.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 20
    while listener.config is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert listener.config is not None  # it got its configuration, then kept failing to connect
    assert not listener.connected.is_set()


def test_reconnects_back_off_capped_and_a_refused_login_waits_longer():
    timing = PollTiming(backoff_base_s=1.0, backoff_cap_s=60.0)
    rng = random.Random(7)
    delays = [reconnect_delay_s(timing, n, rng, refused=False) for n in range(1, 20)]
    assert all(0.5 <= d <= 60.0 for d in delays)
    assert max(delays[10:]) > 30.0  # grown to the cap, jittered below it
    refused = [reconnect_delay_s(timing, n, rng, refused=True) for n in range(15, 25)]
    assert all(d <= 900.0 for d in refused)
    assert max(refused) > 60.0  # a broker that refuses the login is not asked every minute


# --- the sync loop -----------------------------------------------------------------------------------


class Director:
    """Serves one signed desired state and counts the polls."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        from datetime import datetime, timedelta, timezone

        now = datetime.now(timezone.utc)
        state = DesiredState(
            device_id=DEV,
            hardware_class="medical-cart-cpu",
            generation=1,
            issued_at=now,
            expires_at=now + timedelta(days=1),
        )
        self.envelope = sign_desired_state(state, key)
        self.polls = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"accepted": True})
        self.polls += 1
        if request.headers.get("if-none-match") == '"1"':
            return httpx.Response(304)
        return httpx.Response(200, json=self.envelope)


def _wait(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_sync_loop_polls_at_once_on_a_hint_and_a_flood_costs_nothing_more(tmp_path):
    director_key, device_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    ddir = DataDir(tmp_path / "agent")
    ddir.write_key(device_key)
    ddir.write_identity(
        DeviceIdentity(
            device_id=DEV,
            server_url="http://director",
            hardware_class="medical-cart-cpu",
            director_public_key_pem=public_key_pem(director_key.public_key()),
        ),
        None,
    )
    director = Director(director_key)
    channel = DeviceChannel(
        "http://director", device_id=DEV, key=device_key, transport=httpx.MockTransport(director.handler)
    )
    wakeup = Wakeup(min_interval_s=0.0)
    sync = SyncCoordinator(
        ddir,
        channel,
        RecordingInstaller(),
        timing=PollTiming(poll_interval_s=3600.0),  # only a hint can bring a second poll in this test
        rng=random.Random(0),
        wakeup=wakeup,
    )
    stop = threading.Event()
    thread = threading.Thread(target=sync.run, args=(stop,))
    thread.start()
    try:
        _wait(lambda: director.polls == 1)  # the start-up poll
        wakeup.hint(Hint())
        _wait(lambda: director.polls == 2)
        assert sync.hinted_polls == 1
        wakeup.min_interval_s = 3600.0  # from now on: one hint-driven poll per hour at most
        for _ in range(100):
            wakeup.hint(Hint())
        time.sleep(0.3)
        assert director.polls == 2  # the flood moved nothing: the next poll is at most an hour away
    finally:
        stop.set()
        wakeup.close()
        thread.join(timeout=10)
    assert not thread.is_alive()  # the closed wakeup ended the wait at once
