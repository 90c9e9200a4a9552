"""The nearly free 304: a conditional poll answered from memory keeps every security property.

On both databases: no database statement for a cached 304 (the signature is still verified and the nonce
still refused on a second use); last-seen times written back in batches, within their stated bound; a
change or a revocation made on another replica reaches this one's answers at its next epoch read.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from tests.server.fleet import EXAMPLES, Clock

from edgefleet.agent.channel import DeviceChannel
from edgefleet.agent.enroll import enroll
from edgefleet.protocol import parse_classes_toml
from edgefleet.protocol.errors import AuthenticationError, ServiceUnavailableError
from edgefleet.protocol.request_signing import sign_request
from edgefleet.server.app import create_app
from edgefleet.server.services.last_seen import LastSeenBuffer, due
from edgefleet.server.services.poll_cache import CachedDevice, PollCache, can_answer_304
from edgefleet.server.services.replay import MemoryReplayGuard
from edgefleet.server.settings import Settings
from edgefleet.server.store.devices import DeviceRow

PATH = "/v1/device/desired-state"
NOW = datetime(2026, 12, 5, tzinfo=timezone.utc)


@pytest.fixture
def fleet_settings() -> dict:
    """One server process: nonces in memory on both databases (two replicas are tested below)."""
    return {"replay_store": "memory"}


def _writes(engine) -> list[str]:
    """Every INSERT/UPDATE/DELETE the engine runs from now on (the list grows)."""
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _count(_conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            seen.append(statement)

    return seen


def _signed(fleet, identity, ddir, generation: int) -> dict[str, str]:
    headers = sign_request(
        ddir.read_key(),
        device_id=identity.device_id,
        method="GET",
        path=PATH,
        body=b"",
        now_s=fleet.clock().timestamp(),
    )
    return {**headers, "if-none-match": f'"{generation}"'}


def _warm(fleet, identity, ddir) -> int:
    """One full poll (the database path fills the cache) and the epoch read the refresh loop does."""
    first = fleet.channel(identity, ddir).request("GET", PATH)
    runtime = fleet.app.state.devices
    runtime.cache.refresh(fleet.app.state.context.db)
    return int(first.headers["etag"].strip('"'))


def test_a_cached_conditional_poll_touches_no_database(fleet):
    identity, ddir = fleet.enroll()
    generation = _warm(fleet, identity, ddir)
    runtime = fleet.app.state.devices
    writes = _writes(fleet.app.state.context.db.engine)
    hits = runtime.cache.hits
    for _ in range(20):
        r = fleet.client.get(PATH, headers=_signed(fleet, identity, ddir, generation))
        assert r.status_code == 304, r.text
        assert r.headers["etag"] == f'"{generation}"'
    assert runtime.cache.hits - hits == 20
    assert writes == []


def test_the_cached_path_refuses_a_replay_and_a_bad_signature(fleet):
    identity, ddir = fleet.enroll()
    generation = _warm(fleet, identity, ddir)
    headers = _signed(fleet, identity, ddir, generation)
    assert fleet.client.get(PATH, headers=headers).status_code == 304
    replay = fleet.client.get(PATH, headers=headers)
    assert (replay.status_code, replay.json()["code"]) == (401, "replayed_request")
    other, other_dir = fleet.enroll()
    _warm(fleet, other, other_dir)
    forged = {**_signed(fleet, identity, ddir, generation), "x-edgefleet-device": other.device_id}
    r = fleet.client.get(PATH, headers=forged)  # device A's signature claimed for device B
    assert (r.status_code, r.json()["code"]) == (401, "bad_signature")
    fleet.clock.now += timedelta(seconds=400)  # a timestamp outside the skew window
    late = fleet.client.get(PATH, headers=headers)
    assert (late.status_code, late.json()["code"]) == (401, "clock_skew")


def test_a_change_here_is_answered_at_once(fleet):
    identity, ddir = fleet.enroll()
    generation = _warm(fleet, identity, ddir)
    art = fleet.artifact("1.0.0")
    r = fleet.client.put(
        "/v1/pins/class/medical-cart-cpu/default", json={"artifact_id": art}, headers=fleet.admin
    )
    assert r.status_code == 204
    changed = fleet.client.get(PATH, headers=_signed(fleet, identity, ddir, generation))
    assert changed.status_code == 200
    assert changed.json()["signed"]["slots"]["default"]["artifact_id"] == art


def test_a_revocation_here_is_refused_at_once(fleet):
    identity, ddir = fleet.enroll()
    generation = _warm(fleet, identity, ddir)
    assert fleet.client.get(PATH, headers=_signed(fleet, identity, ddir, generation)).status_code == 304
    r = fleet.client.post(f"/v1/devices/{identity.device_id}/revoke", json={}, headers=fleet.admin)
    assert r.status_code == 200
    refused = fleet.client.get(PATH, headers=_signed(fleet, identity, ddir, generation))
    assert (refused.status_code, refused.json()["code"]) == (401, "device_revoked")


def test_last_seen_is_written_back_in_batches_within_its_bound(fleet):
    identity, ddir = fleet.enroll()
    generation = _warm(fleet, identity, ddir)
    runtime = fleet.app.state.devices
    db = fleet.app.state.context.db
    runtime.seen.flush(db)
    resolution = timedelta(seconds=runtime.seen.resolution_s)

    def stored() -> datetime | None:
        with db.session() as s:
            return s.execute(
                select(DeviceRow.last_seen_at).where(DeviceRow.id == identity.device_id)
            ).scalar()

    before = stored()
    fleet.clock.now += resolution / 2  # inside the resolution: nothing to write
    assert fleet.client.get(PATH, headers=_signed(fleet, identity, ddir, generation)).status_code == 304
    assert runtime.seen.pending() == 0
    fleet.clock.now += resolution  # past it: noted, not yet written
    assert fleet.client.get(PATH, headers=_signed(fleet, identity, ddir, generation)).status_code == 304
    assert runtime.seen.pending() == 1
    assert stored() == before
    assert runtime.seen.flush(db) == 1
    assert stored() == fleet.clock()
    assert fleet.clock() - before <= 2 * resolution


@pytest.mark.parametrize(
    ("change", "ok"),
    [
        ({}, True),
        ({"entry": None}, False),
        ({"held_generation": None}, False),
        ({"held_generation": 6}, False),
        ({"epoch": 4}, True),  # the epoch moved by changes that did not name it (a refresh drops named ones)
        ({"epoch": 2}, False),  # computed at an epoch this process has not read yet: wait for that refresh
        ({"epoch": None}, False),  # never read
        ({"epoch_age_s": 3.1}, False),  # the refresh loop stopped: stop trusting the cache
        ({"now": NOW + timedelta(days=4)}, False),  # past half the document's lifetime: re-issue
    ],
)
def test_when_a_304_may_come_from_the_cache(change, ok):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    entry = CachedDevice(Ed25519PrivateKey.generate().public_key(), 5, 3, NOW + timedelta(days=3))
    args = {"entry": entry, "epoch": 3, "epoch_age_s": 0.5, "stale_after_s": 3.0, "held_generation": 5}
    args["now"] = NOW
    args.update(change)
    assert can_answer_304(**args) is ok


def test_last_seen_due_rule():
    assert due(known=None, now=NOW, resolution_s=30)
    assert not due(known=NOW - timedelta(seconds=29), now=NOW, resolution_s=30)
    assert due(known=NOW - timedelta(seconds=30), now=NOW, resolution_s=30)
    buffer = LastSeenBuffer(resolution_s=30)
    buffer.learn("dev_a", NOW)
    buffer.note("dev_a", NOW + timedelta(seconds=10))
    assert buffer.pending() == 0
    buffer.note("dev_a", NOW + timedelta(seconds=31))
    assert buffer.pending() == 1


def test_the_memory_replay_guard_forgets_after_its_retention():
    now_s = [0.0]
    guard = MemoryReplayGuard(retention_s=600, monotonic=lambda: now_s[0])
    assert guard.first_use_now("dev_a", "n1")
    assert not guard.first_use_now("dev_a", "n1")
    assert guard.first_use_now("dev_b", "n1")  # per device
    now_s[0] = 599.0
    assert not guard.first_use_now("dev_a", "n1")
    now_s[0] = 601.0
    assert guard.first_use_now("dev_a", "n2")  # pruning runs here
    assert len(guard) == 1  # n1 of both devices is gone (the timestamp check refuses it by now)


def _redis_url() -> str:
    url = os.environ.get("EDGEFLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis unavailable: {exc}")
    return url


def test_the_redis_replay_guard_is_shared(tmp_path):
    from edgefleet.server.services.replay import RedisReplayGuard

    url = _redis_url()
    prefix = f"ef:test:{secrets.token_hex(4)}:"

    async def run() -> list[bool]:
        a, b = RedisReplayGuard(url, prefix=prefix), RedisReplayGuard(url, prefix=prefix)  # two replicas
        try:
            return [
                await a.first_use("dev_a", "n1", now=NOW),
                await b.first_use("dev_a", "n1", now=NOW),
                await b.first_use("dev_a", "n2", now=NOW),
                # the worker threads' blocking client: the same nonces, either way round
                b.first_use_blocking("dev_a", "n2", now=NOW),
                a.first_use_blocking("dev_a", "n3", now=NOW),
                await b.first_use("dev_a", "n3", now=NOW),
            ]
        finally:
            await a.close()
            await b.close()

    assert asyncio.run(run()) == [True, False, True, False, True, False]


def test_an_unreachable_redis_fails_closed_on_both_paths():
    pytest.importorskip("redis")
    from edgefleet.server.services.replay import RedisReplayGuard

    guard = RedisReplayGuard("redis://127.0.0.1:1/0")  # nothing listens on port 1
    with pytest.raises(ServiceUnavailableError) as blocking:
        guard.first_use_blocking("dev_a", "n1", now=NOW)
    with pytest.raises(ServiceUnavailableError) as on_the_loop:
        asyncio.run(guard.first_use("dev_a", "n1", now=NOW))
    assert blocking.value.code == on_the_loop.value.code == "replay_store_unavailable"


def _replica(database_url: str, data_dir, clock: Clock, **overrides) -> TestClient:
    settings = Settings(
        data_dir=data_dir, dev=True, database_url=database_url, rollout_tick_s=3600, **overrides
    )
    return TestClient(create_app(settings, clock=clock))


def test_two_replicas_share_changes_revocations_and_replay_state(tmp_path, database_url):
    """Replica A answers a device's polls from its cache; a pin and then a revocation made on replica B
    reach A's answers at its next epoch read (``poll_cache_refresh_s``), and a request seen by one replica
    is refused as a replay by the other (Redis on PostgreSQL, the database store on SQLite)."""
    clock = Clock()
    shared = {"poll_cache_refresh_s": 0.05}
    if database_url.startswith("postgresql"):
        shared |= {"replay_store": "redis", "redis_url": _redis_url()}
    else:
        shared |= {"replay_store": "database"}
    with (
        _replica(database_url, tmp_path / "a", clock, **shared) as a,
        _replica(database_url, tmp_path / "b", clock, **shared) as b,
    ):
        # B shares A's keys, as replicas do (the same director key signs for both)
        b.app.state.devices.director_key = a.app.state.devices.director_key
        admin = {"authorization": f"Bearer {a.app.state.context.settings.admin_token}"}
        admin_b = {"authorization": f"Bearer {b.app.state.context.settings.admin_token}"}
        classes = [c.to_dict() for c in parse_classes_toml(EXAMPLES.read_text())]
        assert a.post("/v1/classes/apply", json={"classes": classes}, headers=admin).status_code == 200
        token = a.post(
            "/v1/enrollment-tokens", json={"hardware_class": "medical-cart-cpu"}, headers=admin
        ).json()["token"]
        identity = enroll(
            server_url="http://testserver", token=token, data_dir=tmp_path / "dev", transport=a._transport
        )
        from edgefleet.agent.datadir import DataDir

        device_key = DataDir(tmp_path / "dev").read_key()

        def poll(client: TestClient, generation: int | None = None):
            channel = DeviceChannel(
                "http://testserver",
                device_id=identity.device_id,
                key=device_key,
                transport=client._transport,
                clock=lambda: clock().timestamp(),
            )
            headers = {"if-none-match": f'"{generation}"'} if generation else None
            try:
                return channel.request("GET", PATH, headers=headers)
            finally:
                channel.close()

        generation = int(poll(a).headers["etag"].strip('"'))
        a.app.state.devices.cache.refresh(a.app.state.context.db)
        hits = a.app.state.devices.cache.hits
        assert poll(a, generation).status_code == 304
        assert a.app.state.devices.cache.hits == hits + 1  # answered from A's cache

        # a replay: what A saw, B refuses
        signed = {**sign_request(device_key, device_id=identity.device_id, method="GET", path=PATH, body=b"",
                                 now_s=clock().timestamp()), "if-none-match": f'"{generation}"'}  # fmt: skip
        assert a.get(PATH, headers=signed).status_code == 304
        replay = b.get(PATH, headers=signed)
        assert (replay.status_code, replay.json()["code"]) == (401, "replayed_request")

        # a change on B reaches A
        register = _register_artifact(b, admin_b)
        r = b.put("/v1/pins/class/medical-cart-cpu/default", json={"artifact_id": register}, headers=admin_b)
        assert r.status_code == 204
        answer = _eventually(lambda: poll(a, generation), lambda r: r.status_code == 200)
        assert answer.json()["signed"]["slots"]["default"]["artifact_id"] == register
        generation = int(answer.headers["etag"].strip('"'))
        a.app.state.devices.cache.refresh(a.app.state.context.db)
        assert poll(a, generation).status_code == 304

        # a revocation on B reaches A
        assert b.post(f"/v1/devices/{identity.device_id}/revoke", json={}, headers=admin_b).status_code == 200

        def refused() -> str | None:
            try:
                poll(a, generation)
            except AuthenticationError as exc:
                return exc.code
            return None

        assert _eventually(refused, lambda code: code is not None) == "device_revoked"


def _register_artifact(client: TestClient, admin: dict[str, str]) -> str:
    from edgefleet.client import EdgefleetClient
    from edgefleet.sim.artifacts import register_stand_in_artifact

    api = EdgefleetClient(
        str(client.base_url), admin["authorization"].split()[1], transport=client._transport
    )
    return register_stand_in_artifact(api, model="digits", version="1.0.0", hardware_class="medical-cart-cpu")


def _eventually(call, done, timeout_s: float = 10.0):
    """Call until ``done(result)``; the bound is generous (the refresh runs every 0.05 s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = call()
        if done(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def _entry(epoch: int, generation: int = 5) -> CachedDevice:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return CachedDevice(Ed25519PrivateKey.generate().public_key(), generation, epoch, NOW + timedelta(days=3))


def test_a_refresh_drops_only_the_devices_the_changes_named_unless_one_may_touch_every_device():
    cache = PollCache()
    cache.set_epoch(3, full_epoch=1)
    for name in ("a", "b", "c"):
        assert cache.put(name, _entry(3))
    # epochs 4 and 5 named b (a rollout stage, a device pin): only b goes
    cache.set_epoch(5, full_epoch=1, named=["b"], since=3)
    assert cache.entry("b") is None
    assert cache.entry("a") is not None
    assert cache.entry("c") is not None
    assert cache.answers_304("a", 5, NOW) is not None  # computed at 3, still answers at 5
    assert cache.dropped == 1
    # epoch 6 may touch every device (a class edit): everything goes
    cache.set_epoch(6, full_epoch=6, named=[], since=5)
    assert len(cache) == 0


def test_a_refresh_that_lost_track_of_the_epoch_in_between_drops_everything():
    cache = PollCache()
    cache.set_epoch(3, full_epoch=1)
    assert cache.put("a", _entry(3))
    cache.set_epoch(5, full_epoch=1, named=[], since=4)  # the names were read since 4, not since 3
    assert len(cache) == 0
    assert cache.put("a", _entry(5))
    cache.set_epoch(4, full_epoch=1, named=[], since=5)  # the epoch went back (a restored database)
    assert len(cache) == 0


def test_an_answer_computed_before_the_epoch_held_is_not_kept():
    cache = PollCache()
    assert cache.put("a", _entry(2))  # nothing read yet: kept until the first read judges it
    assert cache.put("z", _entry(3))
    cache.set_epoch(3, full_epoch=1)
    assert cache.entry("a") is None  # computed before the epoch first read: a change since may name it
    assert cache.entry("z") is not None
    assert not cache.put("a", _entry(2))  # a change at 3 may have named it and was already applied
    assert cache.put("a", _entry(3))
    assert cache.put("b", _entry(4))  # newer than held: kept, answers once the refresh reaches 4
    assert cache.answers_304("b", 5, NOW) is None
    cache.set_epoch(4, full_epoch=1, named=[], since=3)
    assert cache.answers_304("b", 5, NOW) is not None


def test_a_starting_replica_answers_its_fleets_first_conditional_polls_from_memory(tmp_path, database_url):
    """A replica that starts with devices enrolled (a deploy, a crash, a scale-out) reads every current
    document's key and generation once, so the devices' first polls are cache hits, not one row read each;
    a revoked device is not warmed."""
    from edgefleet.agent.datadir import DataDir

    clock = Clock()
    shared = {"poll_cache_refresh_s": 0.05, "replay_store": "memory"}
    devices = []
    with _replica(database_url, tmp_path / "a", clock, **shared) as a:
        admin = {"authorization": f"Bearer {a.app.state.context.settings.admin_token}"}
        classes = [c.to_dict() for c in parse_classes_toml(EXAMPLES.read_text())]
        assert a.post("/v1/classes/apply", json={"classes": classes}, headers=admin).status_code == 200
        for n in range(3):
            token = a.post(
                "/v1/enrollment-tokens", json={"hardware_class": "medical-cart-cpu"}, headers=admin
            ).json()["token"]
            identity = enroll(
                server_url="http://testserver",
                token=token,
                data_dir=tmp_path / f"d{n}",
                transport=a._transport,
            )
            key = DataDir(tmp_path / f"d{n}").read_key()
            channel = DeviceChannel(
                "http://testserver", device_id=identity.device_id, key=key, transport=a._transport,
                clock=lambda: clock().timestamp(),
            )  # fmt: skip
            devices.append(
                (identity.device_id, key, int(channel.request("GET", PATH).headers["etag"].strip('"')))
            )
        revoked = devices[2][0]
        assert a.post(f"/v1/devices/{revoked}/revoke", json={}, headers=admin).status_code == 200

    with _replica(database_url, tmp_path / "b", clock, **shared) as b:
        cache = b.app.state.devices.cache
        _eventually(lambda: cache.warmed, bool)
        assert {d for d, _k, _g in devices if cache.entry(d) is not None} == {devices[0][0], devices[1][0]}
        writes = _writes(b.app.state.context.db.engine)
        for device_id, key, generation in devices[:2]:
            headers = sign_request(
                key, device_id=device_id, method="GET", path=PATH, body=b"", now_s=clock().timestamp()
            )
            hits = cache.hits
            assert b.get(PATH, headers={**headers, "if-none-match": f'"{generation}"'}).status_code == 304
            assert cache.hits == hits + 1
        assert writes == []
