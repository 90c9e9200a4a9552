"""Device check-in throughput: many simulated devices polling one control plane.

For each backend (SQLite, then PostgreSQL when reachable) this starts a real ``edgefleet server`` process,
enrolls ``--devices`` devices (real keys, real enrollment), pins an artifact for their class, then lets the
devices poll their signed desired state from ``--threads`` client threads for ``--seconds``:

- conditional polls (``If-None-Match`` with the current generation -> 304), the steady state of a fleet;
- full polls (no ``If-None-Match`` -> 200 with the signed document).

It reads the server process's CPU time from /proc and prints polls per second per server CPU core, and the
ratio of a 304 poll's server CPU cost to a 200 poll's (the baseline, measured in the same run).
Usage: ``.venv/bin/python bench/checkin.py [--devices 50] [--seconds 8] [--threads 8]``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

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


def _drive(
    server: ServerProcess, channels: list[DeviceChannel], *, conditional: bool, seconds: float, threads: int
) -> tuple[int, float]:
    etags = {}
    for ch in channels:  # warm: every device has its generation
        etags[id(ch)] = ch.request("GET", "/v1/device/desired-state").headers["etag"]
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


def _run_backend(name: str, database_url: str | None, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"ef-checkin-{name}-") as tmp:
        work = Path(tmp)
        env = {"EDGEFLEET_DATABASE_URL": database_url} if database_url else {}
        server = start_server(work / "server", env=env)
        try:
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
        "cost_ratio_304_to_200": (cpu304 / n304) / (cpu200 / n200),
        "polls_304": n304,
        "polls_200": n200,
    }
    print(
        f"{name:10} conditional polls/s per server core: {result['polls_304_per_cpu_s']:8.0f}"
        f"   full polls/s per core: {result['polls_200_per_cpu_s']:8.0f}"
        f"   304 cost / 200 cost: {result['cost_ratio_304_to_200']:.2f}"
        f"   ({n304} + {n200} polls)"
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
    args = parser.parse_args()
    results = {"sqlite": _run_backend("sqlite", None, args)}
    db = f"edgefleet_bench_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
    except psycopg.OperationalError as exc:
        print(f"postgresql skipped: {exc}".splitlines()[0])
    else:
        try:
            results["postgresql"] = _run_backend(
                "postgresql", f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}", args
            )
        finally:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
