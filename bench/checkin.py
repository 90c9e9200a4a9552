"""Device check-in throughput: many simulated devices polling one control plane.

For each backend (SQLite, then PostgreSQL when reachable) this starts a real ``edgefleet server`` process,
enrolls ``--devices`` devices (real keys, real enrollment), pins an artifact for their class, then lets the
devices poll their signed desired state from ``--threads`` client threads for ``--seconds``:

- conditional polls (``If-None-Match`` with the current generation -> 304), the steady state of a fleet;
- full polls (no ``If-None-Match`` -> 200 with the signed document).

- the floor: ``GET /healthz`` (a trivial FastAPI endpoint on the same stack, no signature, no database).

It reads the server process's CPU time from /proc and prints polls per second per server CPU core, the
ratio of a 304 poll's server CPU cost to a 200 poll's (the baseline, measured in the same run), and the 304's
rate as a share of the floor's. On PostgreSQL the server runs as a replica would: nonces in Redis when one
answers at ``--redis-url`` (else in the database, one write per poll; the line says which). Redis's own CPU
is not counted (it is a separate, shared process).
Usage: ``.venv/bin/python bench/checkin.py [--devices 50] [--seconds 8] [--threads 8]``.
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
from pathlib import Path

import httpx
import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_process import ServerProcess, start_server

from edgefleet.agent.channel import DeviceChannel
from edgefleet.agent.datadir import DataDir
from edgefleet.agent.enroll import enroll
from edgefleet.client import EdgefleetClient
from edgefleet.protocol import parse_classes_toml
from edgefleet.sim.artifacts import register_stand_in_artifact

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _prepare(server: ServerProcess, work: Path, devices: int) -> list[DeviceChannel]:
    with EdgefleetClient(server.url, server.token) as client:
        client.apply_classes(parse_classes_toml((ROOT / "examples" / "hardware-classes.toml").read_text()))
        art_id = register_stand_in_artifact(
            client, model="bench", version="1.0.0", hardware_class="medical-cart-cpu", model_bytes=b"m" * 4096
        )
        client.pin(scope="class", target="medical-cart-cpu", slot="default", artifact_id=art_id)
        token = client.create_enrollment_token("medical-cart-cpu", uses=devices).token
    channels = []
    for i in range(devices):
        identity = enroll(server_url=server.url, token=token, data_dir=work / f"dev{i}")
        channels.append(
            DeviceChannel(server.url, device_id=identity.device_id, key=DataDir(work / f"dev{i}").read_key())
        )
    return channels


def _floor(server: ServerProcess, *, seconds: float, threads: int) -> tuple[int, float]:
    """``GET /healthz`` from the same number of threads: what any request costs on this stack."""
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def worker(k: int) -> None:
        with httpx.Client(base_url=server.url) as http:
            while time.monotonic() < stop:
                if http.get("/healthz").status_code != 200:
                    raise SystemExit("healthz failed")
                counts[k] += 1

    cpu0 = server.cpu_s()
    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts), server.cpu_s() - cpu0


def _drive(
    server: ServerProcess, channels: list[DeviceChannel], *, conditional: bool, seconds: float, threads: int
) -> tuple[int, float]:
    etags = {}
    for ch in channels:  # warm: every device has its generation
        etags[id(ch)] = ch.request("GET", "/v1/device/desired-state").headers["etag"]
    time.sleep(1.5)  # the server reads the director epoch every second: from then on its cache answers
    stop = time.monotonic() + seconds
    counts = [0] * threads
    expected = 304 if conditional else 200

    def worker(k: int) -> None:
        mine = channels[k::threads]
        i = 0
        while time.monotonic() < stop:
            ch = mine[i % len(mine)]
            headers = {"if-none-match": etags[id(ch)]} if conditional else {}
            r = ch.request("GET", "/v1/device/desired-state", headers=headers)
            if r.status_code != expected:
                raise SystemExit(f"expected {expected}, got {r.status_code}")
            counts[k] += 1
            i += 1

    cpu0 = server.cpu_s()
    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts), server.cpu_s() - cpu0


def _run_backend(
    name: str, database_url: str | None, args: argparse.Namespace, env: dict[str, str] | None = None
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"ef-checkin-{name}-") as tmp:
        work = Path(tmp)
        env = {**(env or {}), **({"EDGEFLEET_DATABASE_URL": database_url} if database_url else {})}
        server = start_server(work / "server", env=env)
        try:
            nfloor, cpufloor = _floor(server, seconds=args.seconds, threads=args.threads)
            channels = _prepare(server, work, args.devices)
            n304, cpu304 = _drive(
                server, channels, conditional=True, seconds=args.seconds, threads=args.threads
            )
            n200, cpu200 = _drive(
                server, channels, conditional=False, seconds=args.seconds, threads=args.threads
            )
            for ch in channels:
                ch.close()
        finally:
            server.stop()
    result = {
        "polls_304_per_cpu_s": n304 / max(cpu304, 1e-9),
        "polls_200_per_cpu_s": n200 / max(cpu200, 1e-9),
        "floor_per_cpu_s": nfloor / max(cpufloor, 1e-9),
        "cost_ratio_304_to_200": (cpu304 / n304) / (cpu200 / n200),
        "polls_304": n304,
        "polls_200": n200,
    }
    result["ratio_304_to_floor"] = result["polls_304_per_cpu_s"] / result["floor_per_cpu_s"]
    print(
        f"{name:10} conditional polls/s per core: {result['polls_304_per_cpu_s']:6.0f} (target >= 1000)"
        f"   full: {result['polls_200_per_cpu_s']:6.0f}"
        f"   304 cost / 200 cost: {result['cost_ratio_304_to_200']:.2f} (target <= 0.3)"
        f"   floor (/healthz): {result['floor_per_cpu_s']:6.0f}/s per core,"
        f" 304 rate = {result['ratio_304_to_floor']:.2f}x the floor"
        f"   ({n304} + {n200} + {nfloor} requests)"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0))
    print(f"measured on this host: {platform.machine()}, {cpus} CPUs, load {os.getloadavg()[0]:.1f} at start")
    results = {"sqlite": _run_backend("sqlite", None, args)}
    pg_env = {"EDGEFLEET_REPLAY_STORE": "database"}
    try:
        redis.Redis.from_url(args.redis_url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        print(f"redis unreachable ({exc}): PostgreSQL keeps nonces in the database")
    else:
        pg_env = {"EDGEFLEET_REPLAY_STORE": "redis", "EDGEFLEET_REDIS_URL": args.redis_url}
        print("postgresql: nonces in Redis (the replica setup)")
    db = f"edgefleet_bench_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
    except psycopg.OperationalError as exc:
        print(f"postgresql skipped: {exc}".splitlines()[0])
    else:
        try:
            results["postgresql"] = _run_backend(
                "postgresql", f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}", args, pg_env
            )
        finally:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
