"""A poll storm is shed with 429 and a spread Retry-After, never a 5xx, and the agent spreads the return.

The storm itself: 10,000 simulated devices returning together (``sim.storm``, virtual time) against the
control plane's real admission and the agent's real backoff, beside a baseline where both are unspread (a
fixed Retry-After honoured exactly): the baseline comes back in synchronized waves. The shedding itself:
the real signed channel against the real app with its database slots taken (on both databases).
"""

from __future__ import annotations

import random

from edgefleet.agent.backoff import PollTiming, backoff_delay_s
from edgefleet.agent.install.interface import RecordingInstaller
from edgefleet.agent.sync import SyncCoordinator
from edgefleet.protocol.errors import RateLimitedError
from edgefleet.server.api.admission import Admission
from edgefleet.sim.storm import StormResult, simulate_return

DEVICES = 10_000
SLOTS = 32
SERVICE_S = 0.01  # a database call on this host: capacity 3,200 calls/s
PATH = "/v1/device/desired-state"


def _storm(*, spread: bool) -> StormResult:
    admission = Admission(SLOTS, retry_after_s=5, rng=random.Random(1))
    timing = PollTiming(backoff_cap_s=300)
    agent_rng = random.Random(2)

    refusals: list[RateLimitedError] = []

    def admit() -> float | None:
        try:
            admission.enter()
        except RateLimitedError as exc:
            refusals.append(exc)
            return float(exc.details["retry_after_s"]) if spread else 5.0
        return None

    def delay(failures: int, retry_after_s: float) -> float:
        if not spread:
            return retry_after_s  # a naive client: exactly what it was told
        return backoff_delay_s(timing, failures, agent_rng, retry_after_s=retry_after_s)

    result = simulate_return(
        DEVICES,
        admit=admit,
        release=admission.leave,
        delay_after_shed=delay,
        service_s=SERVICE_S,
        return_window_s=0.1,  # a restarted server: every device reconnects at once
    )
    assert admission.in_flight == 0
    assert {(e.http_status, e.code) for e in refusals} == {(429, "control_plane_busy")}
    return result


def test_ten_thousand_devices_returning_together_are_shed_then_served_spread_out():
    spread = _storm(spread=True)
    naive = _storm(spread=False)
    for result in (spread, naive):
        assert result.served == DEVICES  # nobody starves, every answer was a 200 or a 429
        assert result.peak_in_flight <= SLOTS
        assert result.shed >= DEVICES // 2  # 10,000 in a second against 3,200 calls/s: most are shed once
    # the spread return: Retry-After in [5, 10] s, the agent waits up to twice that: over in ~20 s, and
    # each device is shed about once (9,680 of 10,000 in this seed)
    assert spread.all_served_s < 30
    assert spread.shed <= DEVICES
    assert spread.peak_arrivals_per_s < 1_600  # under half the 3,200 calls/s the server can take
    # the naive one comes back in waves of everyone at once, 320 served a wave (165 s, 152,090 sheds)
    assert naive.peak_arrivals_per_s > 9_000
    assert naive.all_served_s > 5 * spread.all_served_s
    assert naive.shed > 10 * spread.shed


def test_a_busy_control_plane_answers_429_and_the_agent_waits_as_told(fleet):
    identity, ddir = fleet.enroll()
    channel = fleet.channel(identity, ddir)
    generation = int(channel.request("GET", PATH).headers["etag"].strip('"'))
    runtime = fleet.app.state.devices
    runtime.cache.refresh(fleet.app.state.context.db)
    admission = runtime.admission
    admission.in_flight = admission.max_in_flight  # every database slot taken (an injected overload)
    try:
        r = fleet.client.get(PATH, headers=_signed(fleet, identity, ddir))
        assert r.status_code == 429
        assert r.json()["code"] == "control_plane_busy"
        assert 5 <= int(r.headers["retry-after"]) <= 10
        # the cached 304 needs no slot: a device holding its state is still answered
        cached = channel.request("GET", PATH, headers={"if-none-match": f'"{generation}"'})
        assert cached.status_code == 304
        # the real agent loop: a failed poll, and a wait of at least Retry-After
        sync = SyncCoordinator(ddir, channel, RecordingInstaller(), rng=random.Random(3))
        outcome = sync.poll_once()
        assert (outcome.result, outcome.error_code) == ("failed", "control_plane_busy")
        assert outcome.delay_s >= 5
    finally:
        admission.in_flight = 0
    # nothing was half-applied: the refused request's nonce was not consumed, the device polls on
    again = fleet.client.get(PATH, headers=_signed(fleet, identity, ddir, reuse=True))
    assert again.status_code == 200
    assert SyncCoordinator(ddir, channel, RecordingInstaller()).poll_once().result in ("updated", "unchanged")


_LAST: dict[str, dict[str, str]] = {}


def _signed(fleet, identity, ddir, *, reuse: bool = False) -> dict[str, str]:
    from edgefleet.protocol.request_signing import sign_request

    if reuse:
        return _LAST[identity.device_id]
    headers = sign_request(
        ddir.read_key(),
        device_id=identity.device_id,
        method="GET",
        path=PATH,
        body=b"",
        now_s=fleet.clock().timestamp(),
    )
    _LAST[identity.device_id] = headers
    return headers
