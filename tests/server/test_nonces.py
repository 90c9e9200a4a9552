"""Device request nonces are kept exactly as long as a replay could pass the timestamp check, then pruned,
in bounded batches, by the server's own maintenance loop. On both databases."""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, insert, select

from edgefleet.protocol.request_signing import MAX_CLOCK_SKEW_S, sign_request
from edgefleet.server.app import prune_device_nonces, prune_nonces_once
from edgefleet.server.services.devices import nonce_retention
from edgefleet.server.store.devices import DeviceNonceRow

PATH = "/v1/device/desired-state"


@pytest.fixture
def fleet_settings() -> dict:
    """These tests are about the database replay store (the one for replicas without Redis)."""
    return {"replay_store": "database"}


RETENTION_S = nonce_retention().total_seconds()


def _count(context) -> int:
    with context.db.session() as s:
        return int(s.execute(select(func.count()).select_from(DeviceNonceRow)).scalar_one())


def _add_nonces(context, n: int, seen_at: datetime, device_id: str = "dev_" + "a" * 20) -> None:
    rows = [{"device_id": device_id, "nonce": secrets.token_hex(16), "seen_at": seen_at} for _ in range(n)]
    with context.db.session() as s, s.begin():
        s.execute(insert(DeviceNonceRow), rows)


def test_retention_is_twice_the_clock_skew_window():
    assert RETENTION_S == 2 * MAX_CLOCK_SKEW_S


@pytest.mark.parametrize(
    ("later_s", "pruned", "replay_code"),
    [
        (1, False, "replayed_request"),  # inside the window: the nonce is what refuses the replay
        (MAX_CLOCK_SKEW_S, False, "replayed_request"),  # the last second the timestamp still passes
        (MAX_CLOCK_SKEW_S + 1, False, "clock_skew"),  # from here the timestamp alone refuses it
        (RETENTION_S - 1, False, "clock_skew"),
        (RETENTION_S + 1, True, "clock_skew"),  # pruned, and a replay is still refused
    ],
)
def test_nonces_are_pruned_after_the_replay_window_and_replays_stay_refused(
    fleet, later_s, pruned, replay_code
):
    identity, ddir = fleet.enroll()
    context = fleet.app.state.context
    signed = sign_request(
        ddir.read_key(),
        device_id=identity.device_id,
        method="GET",
        path=PATH,
        body=b"",
        now_s=fleet.clock().timestamp(),
    )
    assert fleet.client.get(PATH, headers=signed).status_code == 200
    assert _count(context) == 1
    fleet.clock.now += timedelta(seconds=later_s)
    assert prune_nonces_once(context) == (1 if pruned else 0)
    assert _count(context) == (0 if pruned else 1)
    replay = fleet.client.get(PATH, headers=signed)
    assert (replay.status_code, replay.json()["code"]) == (401, replay_code)
    # The device itself, signing afresh, is never affected.
    assert fleet.channel(identity, ddir).request("GET", PATH).status_code == 200


def test_pruning_runs_in_bounded_batches_oldest_first(fleet):
    context = fleet.app.state.context
    now = fleet.clock()
    _add_nonces(context, 25, now - timedelta(seconds=RETENTION_S + 60))
    _add_nonces(context, 3, now - timedelta(seconds=RETENTION_S - 60))  # still inside the window
    assert prune_nonces_once(context, max_rows=10, max_batches=2) == 20  # the round's bound
    assert _count(context) == 8
    assert prune_nonces_once(context, max_rows=10, max_batches=2) == 5
    assert _count(context) == 3
    assert prune_nonces_once(context, max_rows=10, max_batches=2) == 0


def test_the_maintenance_loop_prunes(fleet):
    context = fleet.app.state.context
    _add_nonces(context, 4, fleet.clock() - timedelta(hours=1))

    async def run_for(seconds: float) -> None:
        task = asyncio.create_task(prune_device_nonces(context, interval_s=0.01))
        await asyncio.sleep(seconds)
        task.cancel()

    asyncio.run(run_for(0.3))
    assert _count(context) == 0


def test_the_server_prunes_on_its_own(make_api):
    """Nonces left by an earlier run are pruned by the next server's background loop at start."""
    first = make_api()
    _add_nonces(first.app.state.context, 5, datetime.now(timezone.utc) - timedelta(hours=1))
    _add_nonces(first.app.state.context, 2, datetime.now(timezone.utc))  # fresh: kept
    second = make_api()  # the same database; its lifespan starts the maintenance loop
    deadline = time.monotonic() + 10
    while _count(second.app.state.context) > 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _count(second.app.state.context) == 2
