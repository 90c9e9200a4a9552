"""The rollout engine's tick at fleet scale, on PostgreSQL: CPU and wall per ``tick_rollout`` of one rollout.

A fresh PostgreSQL database; one ``edgefleet server`` registers the classes and two artifacts (v1, v2) and
pins v1, then stops (its own engine never ticks the rollout). ``--devices`` devices are enrolled in bulk in
the field (``services.bulk_enrollment.InField``: each has a last report, v1 active, and its signed desired
state), with a ``site`` label of 50. A rollout v1 -> v2 is created through the service layer
(``enrolling_devices = "new"``): stage 0 exposes ``--exposed`` of the members (80 % by default) and soaks
for an hour, so every tick evaluates and waits. Half of the exposed devices then report v2 active, and
every exposed device has one telemetry window of v2 since the rollout began and one of v1 the hour before
(the relative-latency baseline).

Measured in a child process per source tree (``--baseline-src DIR`` first, an earlier commit's ``src``,
then the current tree), each on the same database: ``--ticks`` calls of ``tick_rollout`` (after one warm-up
tick, unless one tick is asked for), process CPU and wall per tick (the database's own CPU is not in the
CPU figure, it is in the wall), against the floor measured in the same child: one plain select of the
rollout's members (device id and stage, no ORM objects). Printed: per tick, median ms and the ratio to the
floor; with a baseline, current over baseline.

Usage: ``.venv/bin/python bench/engine_tick.py [--devices 10000] [--ticks 5] [--baseline-src DIR]
[--baseline-ticks N]`` (at 100,000 the engine before 2026-12-06 takes minutes per tick:
``--baseline-ticks 1``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import CLASS, PG_ADMIN_URL, device_key, two_versions_pinned
from server_process import start_server

from edgefleet.client import EdgefleetClient
from edgefleet.server.director_key import DIRECTOR_KEY_FILE, load_director_key
from edgefleet.server.services.bulk_enrollment import InField, enroll_bulk
from edgefleet.server.store import Database, make_engine
from edgefleet.trust.director import public_key_pem

WINDOW_S = 60


def _report(artifact: str, now: datetime) -> dict[str, Any]:
    return {
        "sequence": 2,
        "boot_id": "boot-1",
        "reported_at": now.isoformat(),
        "desired_generation": 1,
        "slots": {"default": {"active": artifact, "state": "idle"}},
    }


def prepare(args: argparse.Namespace, url: str) -> str:
    """The fleet, its rollout, reports and telemetry; returns the rollout's id."""
    from sqlalchemy import insert, select, update

    from edgefleet.protocol.desired_state import DeviceReport
    from edgefleet.server.services.device_reports import report_columns
    from edgefleet.server.services.devices import StatusThresholds
    from edgefleet.server.services.rollouts.service import create_rollout
    from edgefleet.server.services.rollouts.spec import RolloutSpec
    from edgefleet.server.store.devices import DeviceRow
    from edgefleet.server.store.in_lists import in_batches
    from edgefleet.server.store.rollouts import RolloutDeviceRow
    from edgefleet.server.store.telemetry import TelemetryModelWindowRow, TelemetryWindowRow

    seed = secrets.token_bytes(16)
    with tempfile.TemporaryDirectory(prefix="ef-tick-") as tmp:
        data = Path(tmp) / "server"
        server = start_server(data, env={"EDGEFLEET_DATABASE_URL": url, "EDGEFLEET_ROLLOUT_TICK_S": "86400"})
        try:
            with EdgefleetClient(server.url, server.token) as client:
                v1, v2 = two_versions_pinned(client, model="tick")
            key = load_director_key(data / "keys" / DIRECTOR_KEY_FILE, create=False)
        finally:
            server.stop()
    started = time.perf_counter()
    now = datetime.now(timezone.utc)
    database = Database(make_engine(url))
    try:
        with database.session() as session:
            enroll_bulk(
                session,
                [public_key_pem(device_key(seed, i).public_key()) for i in range(args.devices)],
                hardware_class=CLASS,
                labels=[{"site": f"site-{i % 50:02d}"} for i in range(args.devices)],
                now=now - timedelta(days=1),
                in_field=InField(key=key, report=_report(v1, now), last_seen_at=now - timedelta(seconds=30)),
            )
        _progress(f"enrolled {args.devices} devices in the field ({time.perf_counter() - started:.1f} s)")
        created = datetime.now(timezone.utc)
        spec = RolloutSpec.model_validate(
            {
                "stages": [
                    {"percent": 100 * args.exposed, "soak_s": 3600, "deadline_s": 7200},
                    {"percent": 100, "soak_s": 3600, "deadline_s": 7200},
                ],
                "enrolling_devices": "new",
            }
        )
        with database.session() as session:
            rollout = create_rollout(
                session, model="tick", targets={CLASS: v2}, selector={}, slot="default", spec=spec,
                actor="bench", now=created, thresholds=StatusThresholds(),
            )  # fmt: skip
            rollout_id = rollout.id
        with database.session() as session, session.begin():
            exposed = list(
                session.execute(
                    select(RolloutDeviceRow.device_id).where(
                        RolloutDeviceRow.rollout_id == rollout_id, RolloutDeviceRow.stage == 0
                    )
                ).scalars()
            )
            done = report_columns(DeviceReport.parse(_report(v2, created)))
            for ids in in_batches(exposed[::2]):
                session.execute(update(DeviceRow).where(DeviceRow.id.in_(ids)).values(**done))
            window_id = session.execute(
                insert(TelemetryWindowRow).returning(TelemetryWindowRow.id),
                [
                    {
                        "device_id": exposed[0], "hardware_class": CLASS, "boot_id": "b", "sequence": 1,
                        "start_at": created, "end_at": created, "device_end_at": created,
                        "received_at": created, "late_s": 0.0, "degraded_s": {}, "resources": None,
                    }
                ],
            ).scalar_one()  # fmt: skip
            windows = [
                {
                    "window_id": window_id, "device_id": d, "hardware_class": CLASS, "model_version": version,
                    "site": "", "end_at": end_at, "requests": 20, "errors": 0, "errors_by_code": {},
                    "requests_by_rung": {}, "latency_buckets": {"12": 15, "14": 5}, "latency_sum_ms": 200.0,
                    "latency_max_ms": 18.0, "shadow_compared": 0, "shadow_agreement_sum": 0.0,
                    "shadow_stats": {}, "health_passed": 1, "health_failed": 0, "health_failed_by_code": {},
                    "input_faults": 0, "input_faults_by_code": {},
                }
                for d in exposed
                for version, end_at in (
                    ("tick/2.0.0", created + timedelta(seconds=WINDOW_S)),
                    ("tick/1.0.0", created - timedelta(hours=1)),
                )
            ]  # fmt: skip
            for batch in in_batches(windows):
                session.execute(insert(TelemetryModelWindowRow), batch)
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("ANALYZE")  # a database in service has its statistics (autovacuum)
        _progress(
            f"rollout {rollout_id}: {len(exposed)} of {args.devices} exposed, {len(exposed[::2])} report v2,"
            f" {len(windows)} telemetry windows ({time.perf_counter() - started:.1f} s in all)"
        )
    finally:
        database.dispose()
    return rollout_id


def measure(url: str, rollout_id: str, ticks: int) -> dict[str, Any]:
    """In this process (the source tree on ``sys.path``): the floor, then ``ticks`` ticks after a warm-up."""
    from sqlalchemy import select

    from edgefleet.server.services.devices import StatusThresholds
    from edgefleet.server.services.rollouts.engine import tick_rollout
    from edgefleet.server.store.rollouts import RolloutDeviceRow

    database = Database(make_engine(url))
    thresholds = StatusThresholds()

    def floor() -> None:
        with database.session() as session, session.begin():
            rows = session.execute(
                select(RolloutDeviceRow.device_id, RolloutDeviceRow.stage).where(
                    RolloutDeviceRow.rollout_id == rollout_id
                )
            ).all()
            assert rows

    def one_tick() -> None:
        with database.session() as session:
            # no interval: every call evaluates (a replica's engine skips a rollout evaluated a tick ago)
            result = tick_rollout(session, rollout_id, now=datetime.now(timezone.utc), thresholds=thresholds)
            assert result is not None
            assert result.action == "wait", result

    def timed(step: Any, n: int) -> tuple[list[float], list[float]]:
        if n > 1 or step is floor:
            step()  # warm-up: connections, statement caches (not for one tick of minutes)
        cpu, wall = [], []
        for _ in range(n):
            c0, w0 = time.process_time(), time.perf_counter()
            step()
            cpu.append(1000 * (time.process_time() - c0))
            wall.append(1000 * (time.perf_counter() - w0))
        return cpu, wall

    try:
        floor_cpu, floor_wall = timed(floor, ticks)
        tick_cpu, tick_wall = timed(one_tick, ticks)
    finally:
        database.dispose()
    return {
        "floor_cpu_ms": statistics.median(floor_cpu),
        "floor_wall_ms": statistics.median(floor_wall),
        "tick_cpu_ms": statistics.median(tick_cpu),
        "tick_wall_ms": statistics.median(tick_wall),
        "ticks": ticks,
    }


def _child(url: str, rollout_id: str, ticks: int, src: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src
    out = subprocess.run(
        [sys.executable, __file__, "--measure", url, rollout_id, "--ticks", str(ticks)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"measuring failed ({src or 'current'}):\n{out.stderr[-4000:]}")
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line[len("RESULT ") :]))


def _progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--exposed", type=float, default=0.8, help="share of members stage 0 exposes")
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--baseline-src", help="measure the engine code in this src directory first")
    parser.add_argument(
        "--baseline-ticks", type=int, help="ticks of the baseline (default --ticks; 1: no warm-up)"
    )
    parser.add_argument("--measure", nargs=2, metavar=("URL", "ROLLOUT"), help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.measure:
        print("RESULT " + json.dumps(measure(args.measure[0], args.measure[1], args.ticks)))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the database is dropped on the way out
    print(f"measured on this host: {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs shared by the")
    print(f"bench and PostgreSQL; load {os.getloadavg()[0]:.1f} at start")
    db = f"edgefleet_tick_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
    results: dict[str, dict[str, Any]] = {}
    try:
        rollout_id = prepare(args, url)
        for name, src in (("baseline", args.baseline_src), ("current", None)):
            if name == "baseline" and src is None:
                continue
            ticks = args.ticks if src is None else args.baseline_ticks or args.ticks
            results[name] = _child(url, rollout_id, ticks, src)
            r = results[name]
            label = name if src is None else f"{name} (engine code from {src})"
            print(
                f"\n{label}: {args.devices} members, median of {r['ticks']} ticks"
                f" (load {os.getloadavg()[0]:.1f}):"
            )
            print(f"  floor: select the members' ids and stages  cpu {r['floor_cpu_ms']:8.1f} ms"
                  f"  wall {r['floor_wall_ms']:8.1f} ms   1.0x")  # fmt: skip
            print(f"  tick_rollout                                cpu {r['tick_cpu_ms']:8.1f} ms"
                  f"  wall {r['tick_wall_ms']:8.1f} ms"
                  f"  {r['tick_cpu_ms'] / r['floor_cpu_ms']:5.1f}x cpu"
                  f"  {r['tick_wall_ms'] / r['floor_wall_ms']:5.1f}x wall")  # fmt: skip
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    if "baseline" in results:
        b, c = results["baseline"], results["current"]
        print("\ncurrent / baseline, per tick:")
        for key, label in (("tick_cpu_ms", "cpu"), ("tick_wall_ms", "wall")):
            print(f"  {label:5} {c[key]:8.1f} ms / {b[key]:8.1f} ms = {c[key] / b[key]:.3f}")
    if args.json:
        print("JSON " + json.dumps(results))


if __name__ == "__main__":
    main()
