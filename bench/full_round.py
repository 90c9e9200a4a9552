"""Server CPU of a full round per device, against a conditional poll (the floor of a signed device request).

One real ``edgefleet server`` on a fresh PostgreSQL database (nonces in Redis when one answers), ``--devices``
devices enrolled in bulk (each its own key), driven over the real signed HTTP channel from ``--threads``
client threads (``edgefleet.sim`` devices, as in ``bench/scale.py``). Measured from the server process's CPU
time (/proc), in one run:

1. first contact: each device's first poll (a full signed 200, a new generation issued) and its report;
2. the floor: each device polls again holding its generation (a 304 answered from the poll cache: the
   signature, the nonce in Redis, no database);
3. a full round: a class pin moves every device to another artifact (one epoch change), so each device's
   next poll is a full signed 200 with a new generation, followed by its report (as in a rollout to all).

Printed: server CPU per device for 1 and 3 in ms and as a ratio to 2 (a full round is two signed requests
and their database work; the floor is one request without any).

``--baseline-src DIR`` runs the same measurement first against the server code in ``DIR`` (a ``src``
directory of an earlier commit, e.g. from ``git worktree add``) and prints the ratios of the two.

Usage: ``.venv/bin/python bench/full_round.py [--devices 2000] [--threads 8] [--baseline-src DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import CLASS, PG_ADMIN_URL, SharedLink, Shed, device_key, two_versions_pinned
from server_process import ServerProcess, start_server

from edgefleet.client import EdgefleetClient
from edgefleet.server.services.bulk_enrollment import enroll_bulk
from edgefleet.server.store import Database, make_engine
from edgefleet.sim.device import Behaviour, SimDevice
from edgefleet.trust.director import public_key_pem


def _round(sims: list[SimDevice], url: str, threads: int, stats: Counter[str]) -> None:
    """Step every device once, ``threads`` at a time (each thread its own keep-alive client)."""

    def drive(share: list[SimDevice]) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            for sim in share:
                link = sim.link
                assert isinstance(link, SharedLink)
                link.http = http
                while True:
                    try:
                        sim.step(Behaviour(), now=datetime.now(timezone.utc), window_s=60, serve=False)
                        break
                    except Shed:
                        time.sleep(0.05)  # shed (429): the device comes back

    pool = [threading.Thread(target=drive, args=(sims[t::threads],)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def _measured(server: ServerProcess, step: Any) -> tuple[float, float]:
    """Server CPU seconds and wall seconds of ``step()``."""
    time.sleep(1.5)  # background work (poll cache, last seen, rollout engine) settles between phases
    c0, t0 = server.cpu_s(), time.perf_counter()
    step()
    return server.cpu_s() - c0, time.perf_counter() - t0


def run(args: argparse.Namespace, url: str, src: str | None = None) -> dict[str, Any]:
    env = {"EDGEFLEET_DATABASE_URL": url}
    if src is not None:  # the server runs this source tree (the baseline), the client the current one
        env["PYTHONPATH"] = src
    try:
        redis.Redis.from_url(args.redis_url, socket_connect_timeout=2).ping()
        env |= {"EDGEFLEET_REPLAY_STORE": "redis", "EDGEFLEET_REDIS_URL": args.redis_url}
    except redis.RedisError:
        pass
    seed = secrets.token_bytes(16)
    with tempfile.TemporaryDirectory(prefix="ef-round-") as tmp:
        server = start_server(Path(tmp) / "server", env=env)
        try:
            with EdgefleetClient(server.url, server.token) as client:
                _v1, v2 = two_versions_pinned(client, model="round")
                database = Database(make_engine(url))
                with database.session() as session:
                    ids = enroll_bulk(
                        session,
                        [public_key_pem(device_key(seed, i).public_key()) for i in range(args.devices)],
                        hardware_class=CLASS,
                        now=datetime.now(timezone.utc),
                    )
                database.dispose()
                stats: Counter[str] = Counter()
                placeholder = httpx.Client()  # each driving thread gives the link its own client
                sims = [
                    SimDevice(d, SharedLink(placeholder, d, device_key(seed, i), stats))
                    for i, d in enumerate(ids)
                ]
                first = _measured(server, lambda: _round(sims, server.url, args.threads, stats))
                floor = _measured(server, lambda: _round(sims, server.url, args.threads, stats))
                client.pin(scope="class", target=CLASS, slot="default", artifact_id=v2)
                time.sleep(1.5)  # the poll cache reads the epoch every second
                full = _measured(server, lambda: _round(sims, server.url, args.threads, stats))
                placeholder.close()
        finally:
            server.stop()
    on_v2 = sum(1 for s in sims if s.active == v2)
    n = args.devices
    return {
        "devices": n,
        "first_contact_ms": 1000 * first[0] / n,
        "floor_ms": 1000 * floor[0] / n,
        "full_round_ms": 1000 * full[0] / n,
        "full_round_s": full[1],
        "on_v2": on_v2,
        "requests": stats["requests"],
        "errors": stats["errors"],
        "shed": stats["shed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--baseline-src", help="measure the server code in this src directory first")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    print(f"measured on this host: {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs shared by the")
    print(f"server, PostgreSQL, Redis and the client; load {os.getloadavg()[0]:.1f} at start")
    results: dict[str, dict[str, Any]] = {}
    for name, src in (("baseline", args.baseline_src), ("current", None)):
        if name == "baseline" and src is None:
            continue
        db = f"edgefleet_round_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        try:
            results[name] = run(args, f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}", src)
        finally:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        _print(name if src is None else f"{name} (server code from {src})", results[name])
    if "baseline" in results:
        b, c = results["baseline"], results["current"]
        print("\ncurrent / baseline, server CPU per device:")
        for key, label in (("first_contact_ms", "first contact"), ("full_round_ms", "full round"),
                           ("floor_ms", "conditional poll (floor)")):  # fmt: skip
            print(f"  {label:26} {c[key]:6.2f} ms / {b[key]:6.2f} ms = {c[key] / b[key]:.2f}")
    if args.json:
        print("JSON " + json.dumps(results))
    if any(r["errors"] or r["on_v2"] != r["devices"] for r in results.values()):
        raise SystemExit(1)


def _print(name: str, r: dict[str, Any]) -> None:
    floor = r["floor_ms"]
    print(f"\n{name}: {r['devices']} devices, one server process on PostgreSQL; server CPU per device"
          f" (load {os.getloadavg()[0]:.1f} at the end):")  # fmt: skip
    print(f"  conditional poll answered from the poll cache (floor)  {floor:6.2f} ms   1.0x")
    print(f"  first contact: full 200 + report                       {r['first_contact_ms']:6.2f} ms"
          f"  {r['first_contact_ms'] / floor:4.1f}x")  # fmt: skip
    full = r["full_round_ms"]
    print(f"  full round after a change: full 200 + report           {full:6.2f} ms  {full / floor:4.1f}x"
          f"   ({r['on_v2']} of {r['devices']} devices moved)")  # fmt: skip
    print(f"  errors: {r['errors']} (of {r['requests']} requests); shed with 429: {r['shed']}")


if __name__ == "__main__":
    main()
