"""Fleet scale: devices enrolled in bulk sign their own requests; the scale benchmark's code path runs small.

``bench/scale.py`` at 200 devices (the benchmark itself runs 100,000): two real server processes on a fresh
PostgreSQL database, the simulated fleet over the signed channel, a staged rollout to all with 20 % offline,
telemetry flowing, dashboard pages; no errors, every online device converges.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.protocol.errors import NotFoundError
from edgefleet.protocol.request_signing import sign_request
from edgefleet.server.services.bulk_enrollment import InField, enroll_bulk
from edgefleet.server.services.director_epoch import bump_director_epoch_alone
from edgefleet.trust.director import public_key_pem, verify_desired_state

ROOT = Path(__file__).resolve().parents[2]
PATH = "/v1/device/desired-state"


def test_bulk_enrolled_devices_each_sign_with_their_own_key(api, classes_toml):
    from edgefleet.protocol import parse_classes_toml

    docs = [c.to_dict() for c in parse_classes_toml(classes_toml)]
    assert api.client.post("/v1/classes/apply", json={"classes": docs}, headers=api.admin).status_code == 200
    keys = [Ed25519PrivateKey.generate() for _ in range(3)]
    with api.app.state.context.db.session() as session:
        ids = enroll_bulk(
            session,
            [public_key_pem(k.public_key()) for k in keys],
            hardware_class="medical-cart-cpu",
            labels=[{"site": "a"}, {"site": "b"}, {"site": "c"}],
            now=datetime.now(timezone.utc),
        )
    assert len(set(ids)) == 3
    for device_id, key in zip(ids, keys, strict=True):
        signed = sign_request(key, device_id=device_id, method="GET", path=PATH, body=b"", now_s=_now())
        assert api.client.get(PATH, headers=signed).status_code == 200
    wrong = sign_request(keys[0], device_id=ids[1], method="GET", path=PATH, body=b"", now_s=_now())
    r = api.client.get(PATH, headers=wrong)  # device 0's key for device 1
    assert (r.status_code, r.json()["code"]) == (401, "bad_signature")
    api.app.state.devices.seen.flush(api.app.state.context.db)  # the batched last-seen write-back
    devices = api.client.get("/v1/devices", params={"limit": 10}, headers=api.admin).json()["items"]
    assert {d["labels"]["site"] for d in devices} == {"a", "b", "c"}
    assert {d["status"] for d in devices} == {"online"}  # seen by their first poll
    assert "device.enroll_bulk" in api.audit_actions()
    with api.app.state.context.db.session() as session, pytest.raises(NotFoundError):
        enroll_bulk(session, [], hardware_class="no-such-class", now=datetime.now(timezone.utc))


def test_devices_enrolled_in_the_field_hold_the_state_the_director_would_issue(fleet):
    """``InField``: a last report and the current signed desired state, so the first poll is conditional;
    the seeded document is the one the director computes (an epoch change leaves it unchanged)."""
    art = fleet.artifact("1.0.0")
    r = fleet.client.put(
        "/v1/pins/class/medical-cart-cpu/default", json={"artifact_id": art}, headers=fleet.admin
    )
    assert r.status_code == 204, r.text
    keys = [Ed25519PrivateKey.generate() for _ in range(2)]
    now = fleet.clock()
    runtime, db = fleet.app.state.devices, fleet.app.state.context.db
    in_field = InField(
        key=runtime.director_key,
        report={
            "sequence": 1,
            "boot_id": "boot-1",
            "reported_at": now.isoformat(),
            "desired_generation": 1,
            "slots": {"default": {"active": art, "state": "idle"}},
        },
        last_seen_at=now - timedelta(hours=1),
        signed_target=fleet.app.state.tuf.signed_target,
    )
    with db.session() as session:
        ids = enroll_bulk(
            session,
            [public_key_pem(k.public_key()) for k in keys],
            hardware_class="medical-cart-cpu",
            now=now,
            in_field=in_field,
        )

    def poll(i: int, etag: str | None):
        signed = sign_request(
            keys[i], device_id=ids[i], method="GET", path=PATH, body=b"", now_s=fleet.clock().timestamp()
        )
        return fleet.client.get(PATH, headers={**signed, **({"if-none-match": etag} if etag else {})})

    assert poll(0, '"1"').status_code == 304  # conditional from its first poll
    full = poll(1, None)
    assert full.status_code == 200
    state = verify_desired_state(
        full.json(),
        director_key=runtime.director_key.public_key(),
        device_id=ids[1],
        last_generation=0,
        now=fleet.clock(),
        time_floor=None,
    )
    assert (state.generation, state.slots["default"].artifact_id) == (1, art)
    with db.session() as session:
        bump_director_epoch_alone(session)  # recomputed: the same content, so the same generation
    runtime.cache.forget(ids[0])
    assert poll(0, '"1"').status_code == 304
    device = fleet.client.get(f"/v1/devices/{ids[0]}", headers=fleet.admin).json()
    assert device["report"]["slots"]["default"]["active"] == art


def _now() -> float:
    return datetime.now(timezone.utc).timestamp()


@pytest.mark.slow
@pytest.mark.postgres
def test_the_scale_benchmark_runs_small(postgres_database):
    out = subprocess.run(
        [
            *(sys.executable, str(ROOT / "bench" / "scale.py"), "--devices", "200", "--measure-s", "3"),
            *("--stage-deadline-s", "3", "--rollout-timeout-s", "150", "--repeat", "1", "--json"),
            *("--database-url", postgres_database),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("JSON "))
    result = json.loads(line.removeprefix("JSON "))
    assert 150 <= result["online"] <= 170  # 20 % offline
    assert result["errors"] == 0
    assert result["on_v2"] == result["online"]  # every online device converged on the rollout's artifact
    assert result["converged_s"] is not None
    assert result["rollout_state"] == "completed"  # the offline 20 % were pending; stages proceeded
    assert result["polls_per_s"] > 0
    assert result["rows_per_poll"] < 2  # the old path alone wrote 2 rows per poll (nonce + last seen)
    assert set(result["pages_ms"]) >= {"fleet overview", "devices", "rollout"}
