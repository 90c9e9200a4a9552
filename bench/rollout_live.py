"""Staged rollouts on a simulated fleet: convergence, exposure to a bad model, breach-to-rollback time.

The real control plane runs in process (``create_app`` with a simulated clock; the rollout engine is ticked
once per poll interval, as a server with ``rollout_tick_s`` well under the poll interval would). Devices are
``edgefleet.sim`` devices. Two device links:

* ``--link http`` (exact): every poll, report and telemetry upload is a real signed request through the
  ASGI app (signature check, replay nonce, the same code a real agent hits).
* ``--link service`` (default, for >= 1,000 devices on 2 cores): the same server use cases
  (``resolve_desired_state``, ``accept_report``, ``ingest_batch``) called in process, skipping HTTP and the
  request signature. Enrollment and everything the operator does go through HTTP either way.

Scenarios, all on one fleet in one run (artifacts v1..v4 of one model; v4 is 3x slower):

1. baseline: v1 -> v2, 4 stages, nobody offline;
2. v2 -> v3, 4 stages, ``--offline`` of the fleet offline at random times (one outage each);
3. v3 -> v4 (bad), 4 stages, fresh random outages: halts; exposure and breach -> rollback measured;
4. baseline for exposure: v3 -> v4 in one stage (everyone at once), same outages: halts.

Run: ``.venv/bin/python bench/rollout_live.py [--devices 1000] [--link service|http] [--database-url URL]``
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from edgefleet.client import EdgefleetClient
from edgefleet.protocol import parse_classes_toml
from edgefleet.protocol.telemetry import TelemetryBatch
from edgefleet.server.app import create_app
from edgefleet.server.services import desired_state as desired_svc
from edgefleet.server.services import devices as devices_svc
from edgefleet.server.services import telemetry as telemetry_svc
from edgefleet.server.services.rollouts import engine
from edgefleet.server.settings import Settings
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.rollouts import RolloutEventRow
from edgefleet.sim.artifacts import register_stand_in_artifact
from edgefleet.sim.device import Behaviour, SimDevice
from edgefleet.sim.fleet import SimFleet, plan_outages
from edgefleet.sim.link import DesiredView, HttpDeviceLink, enroll_in_memory, view_of

ROOT = Path(__file__).resolve().parents[1]
CLASS = "medical-cart-cpu"
SITES = 10


class SimClock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


class ServiceLink:
    """The device calls' server use cases, in process: no HTTP, no request signature (see module doc)."""

    def __init__(self, app: Any, device_id: str, clock: SimClock) -> None:
        self.app, self.device_id, self.clock = app, device_id, clock
        self.ctx = app.state.context
        self.runtime = app.state.devices

    def poll(self, held_generation: int | None) -> DesiredView | None:
        now = self.clock()
        with self.ctx.db.session() as session:
            with session.begin():  # what the signed channel's authentication does: the device was seen
                session.get(DeviceRow, self.device_id).last_seen_at = now
            answer = desired_svc.resolve_desired_state(
                session,
                self.device_id,
                key=self.runtime.director_key,
                now=now,
                ttl=self.runtime.desired_ttl,
                held_generation=held_generation,
            )
        return None if answer.envelope is None else view_of(answer.envelope)

    def report(self, body: dict[str, Any]) -> None:
        with self.ctx.db.session() as session:
            devices_svc.accept_report(session, self.device_id, body, now=self.clock())

    def send_telemetry(self, batch: dict[str, Any]) -> None:
        from edgefleet.server.api.telemetry import _freshness

        freshness = _freshness(_FakeRequest(self.app))
        with self.ctx.db.session() as session:
            with session.begin():
                device = session.get(DeviceRow, self.device_id)
            telemetry_svc.ingest_batch(
                session, device, TelemetryBatch.parse(batch), now=self.clock(), freshness=freshness
            )


@dataclass
class _FakeRequest:
    app: Any


@dataclass
class World:
    app: Any
    http: TestClient
    client: EdgefleetClient
    clock: SimClock
    fleet: SimFleet
    poll_s: float
    artifacts: dict[str, str] = field(default_factory=dict)

    def tick(self) -> list[engine.TickResult]:
        with self.app.state.context.db.session() as session:
            return engine.tick(session, now=self.clock(), thresholds=self.app.state.devices.thresholds)

    def interval(self, *, serve: bool = True) -> list[engine.TickResult]:
        """One poll interval: devices (in a random order), then the engine, then time moves on."""
        rng = random.Random(self.fleet.interval)
        self.fleet.step(
            now=self.clock(), window_s=self.poll_s, serve=serve, order=lambda ds: rng.sample(ds, len(ds))
        )
        results = self.tick()
        self.clock.now += timedelta(seconds=self.poll_s)
        return results


def _artifact(client: EdgefleetClient, version: str) -> str:
    return register_stand_in_artifact(client, model="digits", version=version, hardware_class=CLASS)


def build_world(args: argparse.Namespace, data_dir: Path) -> tuple[World, Any]:
    clock = SimClock()
    settings = Settings(
        data_dir=data_dir, dev=True, database_url=args.database_url, rollout_tick_s=3600, db_pool_size=5
    )
    app = create_app(settings, clock=clock)
    http = TestClient(app)
    http.__enter__()
    token = app.state.context.settings.admin_token
    client = EdgefleetClient("http://testserver", token, transport=http._transport)
    client.apply_classes(parse_classes_toml((ROOT / "examples" / "hardware-classes.toml").read_text()))
    client.create_model("digits")
    artifacts = {v: _artifact(client, v) for v in ("1.0.0", "2.0.0", "3.0.0", "4.0.0-slow")}
    client.pin(scope="class", target=CLASS, slot="default", artifact_id=artifacts["1.0.0"])
    per_site = args.devices // SITES + 1
    tokens = [
        client.create_enrollment_token(
            CLASS, labels={"site": f"site-{s:02d}"}, uses=per_site, ttl_s=86400
        ).token
        for s in range(SITES)
    ]
    devices = []
    for i in range(args.devices):
        device_id, key = enroll_in_memory(http, tokens[i % SITES])
        if args.link == "http":
            link: Any = HttpDeviceLink(
                "http://testserver",
                device_id=device_id,
                key=key,
                transport=http._transport,
                clock=lambda: clock().timestamp(),
            )
        else:
            link = ServiceLink(app, device_id, clock)
        devices.append(SimDevice(device_id, link, rng=random.Random(i)))
    behaviour = Behaviour(latency_factor={artifacts["4.0.0-slow"]: 3.0})
    world = World(app, http, client, clock, SimFleet(devices, behaviour), args.poll_s, artifacts)
    return world, http


def stage_spec(args: argparse.Namespace, stages: list[dict[str, Any]]) -> dict[str, Any]:
    soak_s = args.soak_intervals * args.poll_s
    deadline_s = args.deadline_intervals * args.poll_s
    return {
        "stages": [
            {**size, "soak_s": soak_s, "deadline_s": deadline_s, "on_deadline": "proceed"} for size in stages
        ]
    }


FOUR_STAGES = [{"percent": 1}, {"percent": 5}, {"percent": 25}, {"percent": 100}]


def outages(world: World, args: argparse.Namespace, fraction: float, seed: int) -> None:
    world.fleet.outages = {
        device_id: type(outage)(outage.start + world.fleet.interval, outage.end + world.fleet.interval)
        for device_id, outage in plan_outages(
            [d.device_id for d in world.fleet.devices],
            fraction=fraction,
            horizon=args.outage_horizon,
            min_length=2,
            max_length=args.max_outage_intervals,
            seed=seed,
        ).items()
    }


@dataclass
class GoodRun:
    completed_after: int | None
    converged_after: int | None
    events: list[str]
    wall_s: float


def run_good(world: World, args: argparse.Namespace, target: str, fraction: float, seed: int) -> GoodRun:
    """Roll ``target`` out in four stages; count poll intervals until the rollout completes and until every
    device (the ones that were offline too) runs it."""
    outages(world, args, fraction, seed=seed)
    want = world.artifacts[target]
    wall = time.monotonic()
    start = world.fleet.interval
    rollout = world.client.create_rollout("digits", {CLASS: want}, spec=stage_spec(args, FOUR_STAGES))
    completed = converged = None
    for _ in range(args.max_intervals):
        world.interval()
        n = world.fleet.interval - start
        if completed is None and world.client.get_rollout(rollout.id).status == "completed":
            completed = n
            behaviour = world.fleet.behaviour  # no gate reads telemetry any more: keep the rest cheap
            world.fleet.behaviour = replace(behaviour, quiet=behaviour.quiet | {want})
        if completed is not None and len(world.fleet.running(want)) == len(world.fleet.devices):
            converged = n
            break
    final = world.client.get_rollout(rollout.id)
    return GoodRun(completed, converged, [e["kind"] for e in final.events], time.monotonic() - wall)


@dataclass
class BadRun:
    halted_after: int | None
    exposed: int
    halt_reason: dict[str, Any] | None
    online_back_after: int | None
    all_back_after: int | None
    offline_exposed_at_halt: int


def run_bad(
    world: World, args: argparse.Namespace, target: str, stages: list[dict[str, Any]], seed: int
) -> BadRun:
    """Roll the slow ``target`` out until the engine halts it; then count poll intervals until every device
    that ran it (online ones first, then the ones that were offline at the halt) runs the previous one."""
    outages(world, args, args.offline, seed=seed)
    bad = world.artifacts[target]
    original = world.fleet.behaviour
    start = world.fleet.interval
    rollout = world.client.create_rollout("digits", {CLASS: bad}, spec=stage_spec(args, stages))
    exposed: set[str] = set()
    halted_at = online_back = all_back = None
    for _ in range(args.max_intervals):
        world.interval()
        exposed |= set(world.fleet.running(bad))
        if world.client.get_rollout(rollout.id).status == "halted":
            halted_at = world.fleet.interval
            behaviour = world.fleet.behaviour
            world.fleet.behaviour = replace(behaviour, quiet=behaviour.quiet | {bad})
            break
    info = world.client.get_rollout(rollout.id)
    offline_at_halt = sum(1 for d in exposed if not world.fleet.online(d))
    if halted_at is not None:
        for _ in range(args.max_intervals):
            world.interval()
            n = world.fleet.interval - halted_at
            still = [d for d in world.fleet.devices if d.device_id in exposed and d.active == bad]
            was_online = [d for d in still if world.fleet.online(d.device_id, world.fleet.interval - 1)]
            if online_back is None and not was_online:
                online_back = n
            if not still:
                all_back = n
                break
    world.fleet.behaviour = original
    return BadRun(
        halted_after=None if halted_at is None else halted_at - start,
        exposed=len(exposed),
        halt_reason=info.halt_reason,
        online_back_after=online_back,
        all_back_after=all_back,
        offline_exposed_at_halt=offline_at_halt,
    )


def check_timeline(world: World) -> tuple[int, int]:
    """Every rollout's events: no stage advanced twice, versions only grew. Returns (rollouts, events)."""
    with world.app.state.context.db.session() as session, session.begin():
        events = list(session.execute(select(RolloutEventRow).order_by(RolloutEventRow.id)).scalars())
    by_rollout: dict[str, list[RolloutEventRow]] = {}
    for e in events:
        by_rollout.setdefault(e.rollout_id, []).append(e)
    for rid, timeline in by_rollout.items():
        advances = [e.details.get("to_stage") for e in timeline if e.kind == "advance"]
        assert advances == list(range(1, len(advances) + 1)), (rid, advances)
    return len(by_rollout), len(events)


def _ratio(value: float | None, baseline: float | None) -> str:
    if value is None or not baseline:
        return "n/a"
    return f"{value / baseline:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--link", choices=["service", "http"], default="service")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    parser.add_argument(
        "--offline", type=float, default=0.2, help="fraction of the fleet offline at random times"
    )
    parser.add_argument("--poll-s", type=float, default=30.0, help="simulated poll interval")
    parser.add_argument("--soak-intervals", type=int, default=2)
    parser.add_argument("--deadline-intervals", type=int, default=6)
    parser.add_argument(
        "--outage-horizon", type=int, default=15, help="outages start within this many intervals"
    )
    parser.add_argument("--max-outage-intervals", type=int, default=10)
    parser.add_argument("--max-intervals", type=int, default=80)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    wall = time.monotonic()
    poll_s = args.poll_s
    with tempfile.TemporaryDirectory() as tmp:
        world, http = build_world(args, Path(tmp))
        print(
            f"fleet: {args.devices} devices in {SITES} sites, enrolled in {time.monotonic() - wall:.1f} s; "
            f"link={args.link}; poll interval {poll_s:.0f} s (simulated); stages 1%,5%,25%,100%, "
            f"soak {args.soak_intervals} intervals, deadline {args.deadline_intervals} (then proceed)"
        )
        t = time.monotonic()
        world.interval()  # every device's latency on v1: the relative-latency gate's baseline
        print(f"  one poll interval of the whole fleet (poll + telemetry): {time.monotonic() - t:.1f} s wall")
        a = world.artifacts
        # Old versions' telemetry is already recorded; only what runs a rollout's target is uploaded from
        # now on (telemetry ingest dominates the bench's cost and old-version windows feed no gate).
        world.fleet.behaviour = Behaviour(
            latency_factor={a["4.0.0-slow"]: 3.0}, quiet=frozenset({a["1.0.0"]})
        )
        base = run_good(world, args, "2.0.0", 0.0, seed=args.seed)
        world.fleet.behaviour = Behaviour(
            latency_factor={a["4.0.0-slow"]: 3.0}, quiet=frozenset({a["2.0.0"]})
        )
        good = run_good(world, args, "3.0.0", args.offline, seed=args.seed)
        world.fleet.behaviour = Behaviour(
            latency_factor={a["4.0.0-slow"]: 3.0}, quiet=frozenset({a["3.0.0"]})
        )
        bad = run_bad(world, args, "4.0.0-slow", FOUR_STAGES, seed=args.seed + 1)
        unstaged = run_bad(world, args, "4.0.0-slow", [{"percent": 100}], seed=args.seed + 1)
        rollouts, events = check_timeline(world)
        http.__exit__(None, None, None)
    n = args.devices
    print()
    print("good model, 4 stages:")
    print(
        f"  nobody offline (baseline):  completed after {base.completed_after} poll intervals, "
        f"every device on it after {base.converged_after} ({base.wall_s:.0f} s wall)"
    )
    print(
        f"  {args.offline:.0%} offline at random:     completed after {good.completed_after} poll intervals "
        f"= {_ratio(good.completed_after, base.completed_after)} the baseline; every device on it after "
        f"{good.converged_after} = {_ratio(good.converged_after, base.converged_after)} "
        f"({good.wall_s:.0f} s wall)"
    )
    print(f"  timeline: {' '.join(good.events)}")
    print("bad model (3x latency), 4 stages:")
    print(f"  halted {bad.halted_after} poll interval(s) after it started, by {bad.halt_reason}")
    print(
        f"  exposed before the halt: {bad.exposed} devices = {bad.exposed / n:.2%} of the fleet; "
        f"everyone at once (baseline, same run): {unstaged.exposed} = {unstaged.exposed / n:.2%}; "
        f"ratio {_ratio(bad.exposed, unstaged.exposed)}"
    )
    print(
        f"  breach -> every exposed device that was online rolled back: {bad.online_back_after} "
        f"poll interval(s) "
        f"= {(bad.online_back_after or 0) * poll_s:.0f} s; ratio to the one-poll-interval promise: "
        f"{_ratio(bad.online_back_after, 1)}"
    )
    print(
        f"  breach -> every exposed device rolled back "
        f"(incl. {bad.offline_exposed_at_halt} offline at the halt): "
        f"{bad.all_back_after} poll interval(s) = {(bad.all_back_after or 0) * poll_s:.0f} s"
    )
    print(
        f"  everyone at once: breach -> online rolled back {unstaged.online_back_after} interval(s), all "
        f"{unstaged.all_back_after} (incl. {unstaged.offline_exposed_at_halt} offline at the halt)"
    )
    print(f"timeline check: {rollouts} rollouts, {events} events, no stage advanced twice")
    print(f"total wall {time.monotonic() - wall:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
