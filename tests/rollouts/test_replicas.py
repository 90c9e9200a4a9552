"""Two real ``edgefleet server`` processes on one fresh PostgreSQL database drive rollouts together.

Both replicas run the rollout engine every few milliseconds; devices and operators talk to either. The
database must show: no stage advanced twice, no device assigned twice, no transition lost (each rollout's
``version`` counter equals the number of events in its timeline, and the timeline is a legal sequence).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgefleet.client import EdgefleetClient
from edgefleet.protocol import parse_classes_toml
from edgefleet.sim.device import Behaviour, SimDevice
from edgefleet.sim.fleet import SimFleet
from edgefleet.sim.link import HttpDeviceLink, enroll_in_memory

from .live_fleet import EXAMPLES, MODEL, register_artifact

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CONSOLE_SCRIPT = Path(sys.executable).parent / "edgefleet"
CLASSES = ("medical-cart-cpu", "intel-lowpower-detector", "jetson-vision-standard", "factory-gateway-gpu")
DEVICES_PER_CLASS = 6
START_TIMEOUT_S = 60.0


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A database created for this test alone, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    admin_url = os.environ.get("EDGEFLEET_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        if os.environ.get("EDGEFLEET_REQUIRE_PG") == "1":
            pytest.fail(f"PostgreSQL is required but unavailable: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    name = f"edgefleet_replicas_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            base = admin_url.rpartition("/")[0]
            yield f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Replica:
    proc: subprocess.Popen[bytes]
    url: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(data_dir: Path, env: dict[str, str], log: Path) -> Replica:
    port = _free_port()
    cmd = [str(CONSOLE_SCRIPT), "server", "--dev", "--data-dir", str(data_dir), "--port", str(port)]
    with log.open("ab") as sink:
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"replica exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Replica(proc, url)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"replica did not start: {log.read_text()[-3000:]}")


@pytest.fixture
def replicas(fresh_pg_url: str, tmp_path: Path) -> Iterator[tuple[Replica, Replica, str]]:
    """Replica A migrates and makes the (shared) dev keys; replica B then starts on the same database and
    keys, as replicas behind a load balancer would."""
    token = secrets.token_urlsafe(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    env.update(
        EDGEFLEET_DATABASE_URL=fresh_pg_url,
        EDGEFLEET_ADMIN_TOKEN=token,
        EDGEFLEET_ROLLOUT_TICK_S="0.02",
        EDGEFLEET_LOG_LEVEL="warning",
    )
    data_dir = tmp_path / "shared"
    started: list[Replica] = []
    try:
        started.append(_start(data_dir, env, tmp_path / "a.log"))
        started.append(_start(data_dir, env, tmp_path / "b.log"))
        yield started[0], started[1], token
    finally:
        for replica in started:
            replica.proc.terminate()
        for replica in started:
            try:
                replica.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                replica.proc.kill()


def _fleet(a: Replica, b: Replica, token: str) -> tuple[EdgefleetClient, EdgefleetClient, dict[str, Any]]:
    """Per class: v1 pinned and v2 registered; devices of every class, half talking to each replica."""
    via_a, via_b = EdgefleetClient(a.url, token), EdgefleetClient(b.url, token)
    via_a.apply_classes(parse_classes_toml(EXAMPLES.read_text()))
    via_b.create_model(MODEL)
    world: dict[str, Any] = {"v1": {}, "v2": {}, "devices": []}
    for i, hardware_class in enumerate(CLASSES):
        client = (via_a, via_b)[i % 2]
        world["v1"][hardware_class] = register_artifact(client, f"1.{i}.0", hardware_class)
        world["v2"][hardware_class] = register_artifact(client, f"2.{i}.0", hardware_class)
        client.pin(
            scope="class", target=hardware_class, slot="default", artifact_id=world["v1"][hardware_class]
        )
        for j in range(DEVICES_PER_CLASS):
            replica = (a, b)[j % 2]
            enroll_token = client.create_enrollment_token(hardware_class, labels={"site": f"s{j % 3}"}).token
            with httpx.Client(base_url=replica.url, timeout=30) as http:
                device_id, key = enroll_in_memory(http, enroll_token)
            link = HttpDeviceLink(replica.url, device_id=device_id, key=key)
            world["devices"].append(SimDevice(device_id, link))
    return via_a, via_b, world


def _timeline(pg_url: str) -> tuple[dict[str, Any], dict[str, list[tuple[str, dict[str, Any]]]], list[Any]]:
    import psycopg

    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        rollouts = {
            rid: {"version": version, "status": status, "stage": stage}
            for rid, version, status, stage in conn.execute("SELECT id, version, status, stage FROM rollouts")
        }
        events: dict[str, list[tuple[str, dict[str, Any]]]] = {rid: [] for rid in rollouts}
        for rid, kind, details in conn.execute(
            "SELECT rollout_id, kind, details FROM rollout_events ORDER BY id"
        ):
            events[rid].append((kind, details))
        members = list(conn.execute("SELECT rollout_id, device_id, stage FROM rollout_devices"))
    return rollouts, events, members


def test_two_replicas_drive_rollouts_without_double_or_lost_transitions(
    replicas: tuple[Replica, Replica, str], fresh_pg_url: str
) -> None:
    a, b, token = replicas
    via_a, via_b, world = _fleet(a, b, token)
    slow_class = CLASSES[-1]
    behaviour = Behaviour(latency_factor={world["v2"][slow_class]: 3.0}, requests_per_window=20)
    fleet = SimFleet(world["devices"], behaviour)
    from datetime import datetime, timezone

    fleet.step(now=datetime.now(timezone.utc), window_s=1.0)  # every device runs v1 and reports its latency
    stages = {
        "stages": [
            {"count": 1, "soak_s": 0},
            {"percent": 34, "soak_s": 0},
            {"percent": 67, "soak_s": 0},
            {"percent": 100, "soak_s": 0},
        ]
    }
    rollouts = {}
    for i, hardware_class in enumerate(CLASSES):
        client = (via_a, via_b)[i % 2]
        info = client.create_rollout(MODEL, {hardware_class: world["v2"][hardware_class]}, spec=stages)
        rollouts[hardware_class] = info.id
    # Operators act through both replicas while both engines tick: pause on A, resume on B.
    paused = rollouts[CLASSES[0]]
    via_a.rollout_action(paused, "pause", reason="look first")
    fleet.step(now=datetime.now(timezone.utc), window_s=1.0)
    via_b.rollout_action(paused, "resume", reason="looks fine")

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        fleet.step(now=datetime.now(timezone.utc), window_s=1.0)
        statuses = {
            cls: (via_a, via_b)[n % 2].get_rollout(rid).status
            for n, (cls, rid) in enumerate(rollouts.items())
        }
        if all(s in ("completed", "halted") for s in statuses.values()):
            break
        time.sleep(0.05)
    decisions = {cls: via_a.get_rollout(rid).last_decision for cls, rid in rollouts.items()}
    assert statuses == {**{c: "completed" for c in CLASSES[:-1]}, slow_class: "halted"}, (
        fleet.errors,
        str(decisions),
    )
    fleet.step(now=datetime.now(timezone.utc), window_s=1.0)  # everyone picks up the final desired state

    rows, events, members = _timeline(fresh_pg_url)
    assert set(rows) == set(rollouts.values())
    for hardware_class, rid in rollouts.items():
        kinds = [kind for kind, _ in events[rid]]
        advances = [details["to_stage"] for kind, details in events[rid] if kind == "advance"]
        # Every transition bumped the version exactly once and wrote exactly one event: none lost, none twice.
        assert rows[rid]["version"] == len(kinds), (hardware_class, kinds)
        assert advances == list(range(1, len(advances) + 1)), (hardware_class, advances)
        if hardware_class == slow_class:
            assert kinds == ["created", "halt"]
            assert events[rid][-1][1]["gate"] in ("latency_p95_ratio", "latency_p95_ms")
        else:
            expected = (
                ["created"] + (["pause", "resume"] if rid == paused else []) + ["advance"] * 3 + ["complete"]
            )
            assert kinds == expected, (hardware_class, kinds)
            assert rows[rid]["stage"] == 3
    # No device assigned twice: one membership per device, in the rollout of its own class.
    assigned = [device_id for _, device_id, _ in members]
    assert len(assigned) == len(set(assigned)) == len(CLASSES) * DEVICES_PER_CLASS
    # The fleet ends where the rollouts say: v2 where they completed, v1 (rolled back) where it halted.
    by_id = {d.device_id: d for d in fleet.devices}
    for rid, device_id, _ in members:
        hardware_class = next(c for c, r in rollouts.items() if r == rid)
        want = world["v1" if hardware_class == slow_class else "v2"][hardware_class]
        assert by_id[device_id].active == want, (hardware_class, device_id)
    # Both replicas answer the same view.
    for rid in rollouts.values():
        assert via_a.get_rollout(rid).model_dump() == via_b.get_rollout(rid).model_dump()
    via_a.close()
    via_b.close()
