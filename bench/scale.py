"""Fleet scale on PostgreSQL: two API replicas, a simulated fleet, a staged rollout to all of it.

Two real ``edgefleet server`` processes share one fresh PostgreSQL database (nonces in Redis when one
answers, else in the database). ``--devices`` devices are enrolled in bulk (``services.bulk_enrollment``:
each has its own Ed25519 key and signs every request; only the token round trip is skipped), ``--offline``
of them never come online. ``--workers`` processes drive the others as ``edgefleet.sim`` devices over the real
signed HTTP channel, alternating replicas, each device polling once per round (conditional, as agents do),
installing what it is told, reporting, and sending a telemetry window every ``--telemetry-every`` rounds.

Printed, each against a baseline measured in the same run:

1. steady state: polls/s, and per server core (both replicas' CPU from /proc), and database rows written per
   poll (``pg_stat_database``: inserts + updates + deletes, telemetry included) against two rows per poll,
   the cost without the poll cache; and the same with telemetry paused (the poll path alone);
2. a staged rollout v1 -> v2 to every device (1 %, 10 %, 50 %, 100 %; offline devices are pending and the
   stages proceed at their deadline): time until every online device runs v2, and until the rollout
   completes, against the time one round of polls takes;
3. dashboard page times at this fleet size against the login page (a page that reads nothing);
4. errors: 5xx answers, transport failures and unexpected refusals (must be 0); 429s (shed) are counted.

Usage: ``.venv/bin/python bench/scale.py [--devices 100000] [--offline 0.2] [--workers 2] [--json]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import platform
import re
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_process import ServerProcess, start_server

from edgefleet.client import EdgefleetClient
from edgefleet.protocol import parse_classes_toml
from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.request_signing import sign_request
from edgefleet.server.director_key import DIRECTOR_KEY_FILE, load_director_key
from edgefleet.server.services.bulk_enrollment import InField, enroll_bulk
from edgefleet.server.store import Database, make_engine
from edgefleet.sim.artifacts import register_stand_in_artifact
from edgefleet.sim.device import Behaviour, SimDevice
from edgefleet.sim.link import DesiredView, view_of
from edgefleet.trust.director import public_key_pem

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
CLASS = "medical-cart-cpu"
COUNTERS = ("polls", "requests", "errors", "shed", "on_v2")
PUBLISH_EVERY = 100
FIRST_ROUND = {
    "new": "with full answers and reports",
    "in-field": "conditional polls of devices enrolled in the field, after both replicas restarted and warmed"
    " their poll caches",
}


def two_versions_pinned(client: EdgefleetClient, *, model: str) -> tuple[str, str]:
    """The example hardware classes applied, stand-in versions 1.0.0 and 2.0.0 of ``model`` registered for
    ``CLASS`` and 1.0.0 pinned to the class: what the benches' fleets start from. Answers their ids."""
    client.apply_classes(parse_classes_toml((ROOT / "examples" / "hardware-classes.toml").read_text()))
    v1 = register_stand_in_artifact(client, model=model, version="1.0.0", hardware_class=CLASS)
    v2 = register_stand_in_artifact(client, model=model, version="2.0.0", hardware_class=CLASS)
    client.pin(scope="class", target=CLASS, slot="default", artifact_id=v1)
    return v1, v2


def device_key(seed: bytes, index: int) -> Ed25519PrivateKey:
    """Device ``index``'s key, derived from the run's seed (workers rebuild keys, none is sent to them)."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed + index.to_bytes(8, "big")).digest())


class Shed(Exception):
    """A 429: the device backs off to its next round (as the agent does)."""


class SharedLink:
    """A ``DeviceLink`` over one keep-alive HTTP client shared by many devices; every request is signed."""

    def __init__(self, http: httpx.Client, device_id: str, key: Ed25519PrivateKey, stats: Counter[str]):
        self.http, self.device_id, self.key, self.stats = http, device_id, key, stats

    def _call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None):
        raw = b"" if body is None else canonical_json(body)
        signed = sign_request(
            self.key, device_id=self.device_id, method=method, path=path, body=raw, now_s=time.time()
        )
        all_headers = {**(headers or {}), **signed}
        if body is not None:
            all_headers["content-type"] = "application/json"
        self.stats["requests"] += 1
        try:
            response = self.http.request(method, path, content=raw, headers=all_headers)
        except httpx.HTTPError as exc:
            self.stats["errors"] += 1
            self.stats[f"error:{type(exc).__name__}"] += 1
            raise Shed from exc
        if response.status_code == 429:
            self.stats["shed"] += 1
            raise Shed
        if response.status_code >= 400:
            self.stats["errors"] += 1
            self.stats[f"error:{response.status_code}:{response.text[:80]}"] += 1
            raise Shed
        return response

    def poll(self, held_generation: int | None) -> DesiredView | None:
        headers = {"if-none-match": f'"{held_generation}"'} if held_generation else None
        response = self._call("GET", "/v1/device/desired-state", headers=headers)
        self.stats["polls"] += 1
        return None if response.status_code == 304 else view_of(response.json())

    def report(self, body: dict[str, Any]) -> None:
        self._call("POST", "/v1/device/report", body)

    def send_telemetry(self, batch: dict[str, Any]) -> None:
        self._call("POST", "/v1/device/telemetry", batch)


def worker(
    urls: list[str],
    devices: list[tuple[int, str]],
    seed: bytes,
    v1: str | None,
    v2: str,
    telemetry_every: int,
    threads: int,
    counters: Any,
    stop: Any,
    telemetry_on: Any,
) -> None:
    """Step every device of this worker once per round until ``stop``, ``threads`` devices in flight at once
    (each thread its own keep-alive clients and share of the devices), so that one device's round trips
    overlap another's; publish counters every ``PUBLISH_EVERY`` devices and after each round."""

    def drive(share: list[tuple[int, str]]) -> None:
        clients = [httpx.Client(base_url=url, timeout=30) for url in urls]
        stats: Counter[str] = Counter()
        sims = [
            SimDevice(device_id, SharedLink(clients[i % len(clients)], device_id, device_key(seed, i), stats))
            for i, device_id in share
        ]
        if v1 is not None:  # in the field: running v1 at generation 1, reported once (``InField``)
            for sim in sims:
                sim.active = sim.desired = v1
                sim.generation, sim.report_sequence = 1, 1
                sim.versions[v1] = "scale/1.0.0"
        behaviour = Behaviour(requests_per_window=20)
        published: Counter[str] = Counter()
        rounds = 0

        def publish() -> None:  # each thread adds its own deltas (the shared array has its own lock)
            nonlocal published
            stats["on_v2"] = sum(1 for s in sims if s.active == v2)
            with counters.get_lock():
                for i, name in enumerate(COUNTERS):
                    counters[i] += stats[name] - published[name]  # on_v2 is a gauge: deltas sum to it
            published = Counter({name: stats[name] for name in COUNTERS})

        while not stop.is_set():
            for k, sim in enumerate(sims):
                if stop.is_set():
                    break
                serve = bool(telemetry_on.value) and (rounds + k) % telemetry_every == 0
                try:
                    sim.step(behaviour, now=datetime.now(timezone.utc), window_s=60, serve=serve)
                except Shed:
                    continue
                if k % PUBLISH_EVERY == 0:  # fine-grained: a measurement window may be shorter than a round
                    publish()
            rounds += 1
            publish()
            errors = {k: v for k, v in stats.items() if k.startswith("error:")}
            if errors and rounds == 1:
                print(f"worker errors: {dict(list(errors.items())[:3])}", flush=True)
        for client in clients:
            client.close()

    pool = [threading.Thread(target=drive, args=(devices[t::threads],)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def _rows_written(conn: psycopg.Connection[Any], db: str) -> int:
    time.sleep(1.2)  # statistics reach pg_stat_database within a second of each transaction
    row = conn.execute(
        "SELECT tup_inserted + tup_updated + tup_deleted FROM pg_stat_database WHERE datname = %s", (db,)
    ).fetchone()
    return int(row[0]) if row else 0


def _progress(text: str) -> None:
    """A figure as soon as it is measured (a run cut short by its wall limit still shows how far it got)."""
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {text}", flush=True)


def _snapshot(counters: Any) -> dict[str, int]:
    with counters.get_lock():
        return {name: int(counters[i]) for i, name in enumerate(COUNTERS)}


def _cpu(replicas: list[ServerProcess]) -> float:
    return sum(r.cpu_s() for r in replicas)


def _window(
    counters: Any, replicas: list[ServerProcess], pg: psycopg.Connection[Any], db: str, seconds: float
) -> dict[str, float]:
    """Polls per second and per server core-second, rows written and requests per poll over ``seconds``."""
    s0, c0, w0, t0 = _snapshot(counters), _cpu(replicas), _rows_written(pg, db), time.perf_counter()
    time.sleep(seconds)
    s1, c1, w1, t1 = _snapshot(counters), _cpu(replicas), _rows_written(pg, db), time.perf_counter()
    polls = s1["polls"] - s0["polls"]
    return {
        "polls_per_s": polls / (t1 - t0),
        "polls_per_core_s": polls / max(c1 - c0, 1e-9),
        "rows_per_poll": (w1 - w0) / max(polls, 1),
        "requests_per_poll": (s1["requests"] - s0["requests"]) / max(polls, 1),
    }


def _dashboard_times(url: str, token: str, rollout_id: str, device_id: str, repeat: int) -> dict[str, float]:
    with httpx.Client(base_url=url, timeout=120) as http:
        page = http.get("/dashboard/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        http.post("/dashboard/login", data={"csrf": csrf.group(1), "token": token}, follow_redirects=False)
        pages = {
            "login (baseline)": "/dashboard/login",
            "fleet overview": "/dashboard/",
            "devices": "/dashboard/devices",
            "devices (offline)": "/dashboard/devices?status=offline",
            "device": f"/dashboard/devices/{device_id}",
            "rollout": f"/dashboard/rollouts/{rollout_id}",
            "fleet health": "/dashboard/fleet/health",
        }
        out: dict[str, float] = {}
        for name, path in pages.items():
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                r = http.get(path)
                times.append((time.perf_counter() - started) * 1000)
                if r.status_code != 200:
                    raise SystemExit(f"{path}: {r.status_code}")
            out[name] = statistics.median(times)
    return out


def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    db = url.rsplit("/", 1)[1]
    env = {
        "EDGEFLEET_DATABASE_URL": url,
        "EDGEFLEET_ROLLOUT_TICK_S": "1",
        "EDGEFLEET_DEVICE_STALE_AFTER_S": "120",
        "EDGEFLEET_DEVICE_OFFLINE_AFTER_S": "600",
        # Connections per replica for 8-16 device calls in flight: with the default 5 (+5 overflow, closed on
        # return) the replicas reconnected to PostgreSQL constantly in the 100,000-device run.
        "EDGEFLEET_DB_POOL_SIZE": "16",
    }
    try:
        redis.Redis.from_url(args.redis_url, socket_connect_timeout=2).ping()
        env |= {"EDGEFLEET_REPLAY_STORE": "redis", "EDGEFLEET_REDIS_URL": args.redis_url}
        replay = "redis"
    except redis.RedisError:
        replay = "database"
    seed = secrets.token_bytes(16)
    result: dict[str, Any] = {"devices": args.devices, "replay_store": replay}
    with tempfile.TemporaryDirectory(prefix="ef-scale-") as tmp:
        data = Path(tmp) / "server"
        first = start_server(data, env=env)
        replicas = [first]
        procs: list[Any] = []
        try:
            replicas.append(start_server(data, env={**env, "EDGEFLEET_ADMIN_TOKEN": first.token}))
            with EdgefleetClient(first.url, first.token) as client:
                v1, v2 = two_versions_pinned(client, model="scale")
            started = time.perf_counter()
            pems = [public_key_pem(device_key(seed, i).public_key()) for i in range(args.devices)]
            sites = [{"site": f"site-{i % 50:02d}"} for i in range(args.devices)]
            now = datetime.now(timezone.utc)
            in_field = None
            if args.start == "in-field":
                in_field = InField(
                    key=load_director_key(data / "keys" / DIRECTOR_KEY_FILE, create=False),
                    report={
                        "sequence": 1,
                        "boot_id": "boot-1",
                        "reported_at": now.isoformat(),
                        "desired_generation": 1,
                        "slots": {"default": {"active": v1, "state": "idle"}},
                    },
                    last_seen_at=now - timedelta(hours=1),
                )
            database = Database(make_engine(url))
            with database.session() as session:
                ids = enroll_bulk(
                    session, pems, hardware_class=CLASS, labels=sites, now=now, in_field=in_field
                )
            database.dispose()
            result["enroll_s"] = time.perf_counter() - started
            if in_field is not None:
                # a control plane (re)starting with its fleet in the field (a deploy, a crash, a scale-out):
                # each replica warms its poll cache from the database before the fleet's first polls
                restarted = time.perf_counter()
                for r in replicas:
                    r.stop()
                token = first.token
                replicas = [start_server(data, env={**env, "EDGEFLEET_ADMIN_TOKEN": token}) for _ in range(2)]
                first = replicas[0]
                first.token = token  # what the servers were started with (start_server names its own)
                result["restart_s"] = time.perf_counter() - restarted
            online = [(i, d) for i, d in enumerate(ids) if (i * 7919) % 1000 >= args.offline * 1000]
            result["online"] = len(online)
            result["start"] = args.start
            _progress(
                f"enrolled {len(ids)} devices in bulk ({result['enroll_s']:.1f} s); {len(online)} come online"
            )
            if in_field is not None:
                print(  # said in the output: the first round is not first contact
                    "started in the field: each device enrolled with a last report (v1 active) and its"
                    " current signed desired state (generation 1), so its first poll is conditional"
                    " (--start new: first contact, a full answer and a report each); both replicas"
                    f" restarted after the enrollment ({result['restart_s']:.1f} s until both answered), each"
                    " warming its poll cache from the database",
                    flush=True,
                )

            counters = mp.Array("q", len(COUNTERS))
            stop = mp.Event()
            telemetry_on = mp.Value("b", 1)
            urls = [r.url for r in replicas]
            procs = [
                mp.Process(
                    target=worker,
                    args=(
                        urls,
                        online[k :: args.workers],
                        seed,
                        v1 if in_field is not None else None,
                        v2,
                        args.telemetry_every,
                        args.threads,
                        counters,
                        stop,
                        telemetry_on,
                    ),
                    daemon=True,
                )
                for k in range(args.workers)
            ]
            for p in procs:
                p.start()
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as pg:
                # warm-up: every online device has polled once (its first answer is a 200 and a report)
                first_round, first_cpu = time.perf_counter(), _cpu(replicas)
                while (
                    _snapshot(counters)["polls"] < len(online)
                    and time.perf_counter() - first_round < args.first_round_timeout_s
                ):
                    time.sleep(0.5)
                result["first_round_polls"] = min(_snapshot(counters)["polls"], len(online))
                result["first_round_s"] = time.perf_counter() - first_round
                result["first_round_cpu_ms"] = (
                    1000 * (_cpu(replicas) - first_cpu) / max(result["first_round_polls"], 1)
                )
                _progress(
                    f"first round: {result['first_round_polls']} of {len(online)} devices in"
                    f" {result['first_round_s']:.1f} s, {result['first_round_cpu_ms']:.1f} ms of server CPU"
                    " per device"
                )
                time.sleep(2)  # the poll caches read the epoch every second
                # 1. steady state
                result |= _window(counters, replicas, pg, db, args.measure_s)
                # the baseline: the same fleet polling with no telemetry (only the poll path is paid)
                telemetry_on.value = 0
                time.sleep(2)
                baseline = _window(counters, replicas, pg, db, args.measure_s)
                telemetry_on.value = 1
                result |= {
                    "polls_only_per_s": baseline["polls_per_s"],
                    "polls_only_per_core_s": baseline["polls_per_core_s"],
                    "polls_only_rows_per_poll": baseline["rows_per_poll"],
                }
                round_s = len(online) / max(result["polls_per_s"], 1e-9)
                result["round_s"] = round_s
                _progress(
                    f"steady: {result['polls_per_s']:.0f} polls/s,"
                    f" {result['polls_per_core_s']:.0f} per server core-second,"
                    f" {result['rows_per_poll']:.3f} rows per poll; telemetry paused:"
                    f" {baseline['polls_per_s']:.0f}/s, {baseline['polls_per_core_s']:.0f} per core-second,"
                    f" {baseline['rows_per_poll']:.3f} rows per poll"
                )
                # 2. the rollout
                stages = [
                    {"percent": p, "soak_s": 2, "deadline_s": args.stage_deadline_s} for p in (1, 10, 50, 100)
                ]
                # the replicas may be saturated by the fleet: an operator's request waits its turn
                with EdgefleetClient(replicas[1].url, first.token, timeout_s=300) as client:
                    r = client._http.post(
                        "/v1/rollouts",
                        json={"model": "scale", "targets": {CLASS: v2}, "spec": {"stages": stages}},
                        headers={"authorization": f"Bearer {first.token}"},
                    )
                    if r.status_code != 201:
                        raise SystemExit(f"rollout refused: {r.text}")
                    rollout_id = r.json()["id"]
                    rollout_started, rollout_cpu = time.perf_counter(), _cpu(replicas)
                    converged = completed = None
                    shown = 0.0
                    while time.perf_counter() - rollout_started < args.rollout_timeout_s:
                        if converged is None and _snapshot(counters)["on_v2"] >= len(online):
                            converged = time.perf_counter() - rollout_started
                            result["rollout_cpu_ms"] = 1000 * (_cpu(replicas) - rollout_cpu) / len(online)
                        state = client._http.get(
                            f"/v1/rollouts/{rollout_id}", headers={"authorization": f"Bearer {first.token}"}
                        ).json()
                        elapsed = time.perf_counter() - rollout_started
                        if elapsed - shown >= 30:
                            shown = elapsed
                            _progress(
                                f"rollout after {elapsed:.0f} s: {_snapshot(counters)['on_v2']} of"
                                f" {len(online)} on v2, {state.get('status')} at stage {state.get('stage')}"
                            )
                        if completed is None and state.get("status") in ("completed", "halted", "aborted"):
                            completed = time.perf_counter() - rollout_started
                            result["rollout_state"] = state.get("status")
                        if converged is not None and completed is not None:
                            break
                        time.sleep(1)
                result |= {
                    "converged_s": converged,
                    "completed_s": completed,
                    "on_v2": _snapshot(counters)["on_v2"],
                }
                # 3. dashboard at this size, while the fleet keeps polling
                result["pages_ms"] = _dashboard_times(
                    first.url, first.token, rollout_id, online[0][1], args.repeat
                )
            stop.set()
            for p in procs:
                p.join(timeout=120)
            final = _snapshot(counters)
            result |= {"errors": final["errors"], "shed": final["shed"], "requests": final["requests"]}
        finally:
            for p in procs:  # a failed run stops its fleet too, not only the servers
                if p.is_alive():
                    p.terminate()
            for r in replicas:
                r.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--offline", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8, help="devices in flight per worker")
    parser.add_argument(
        "--start",
        choices=("in-field", "new"),
        default="in-field",
        help="in-field: devices enrolled with a last report and their current desired state (a fleet"
        " running for months); new: never seen, the first round is a full answer and a report each",
    )
    parser.add_argument("--telemetry-every", type=int, default=10)
    parser.add_argument("--measure-s", type=float, default=20.0)
    parser.add_argument(
        "--first-round-timeout-s", type=float, default=600.0, help="measure on after this even if incomplete"
    )
    parser.add_argument("--stage-deadline-s", type=float, default=20.0)
    parser.add_argument("--rollout-timeout-s", type=float, default=600.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: one made for the run)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0))
    print(
        f"measured on this host: {platform.machine()}, {cpus} CPUs shared by the replicas, PostgreSQL, Redis"
    )
    print(
        f"and the simulated fleet; load {os.getloadavg()[0]:.1f} at start; db_pool_size 16 per replica",
        flush=True,
    )
    started = time.perf_counter()
    if args.database_url:  # an empty database made for this run (the test's fixture)
        r = run(args, args.database_url)
    else:
        db = f"edgefleet_scale_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        try:
            r = run(args, f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}")
        finally:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    print(
        f"\n{r['devices']} devices ({r['online']} online, nonces in {r['replay_store']}),"
        " two replicas on PostgreSQL"
    )
    print(
        f"1. polls: {r['polls_per_s']:.0f}/s, {r['polls_per_core_s']:.0f} per server core-second"
        " (both replicas)"
    )
    print(
        f"   polls alone (telemetry paused): {r['polls_only_per_s']:.0f}/s,"
        f" {r['polls_only_per_core_s']:.0f} per server core-second,"
        f" {r['polls_only_rows_per_poll']:.3f} rows written per poll"
    )
    print(
        f"   database rows written per poll: {r['rows_per_poll']:.3f} (telemetry and reports included;"
        f" {r['requests_per_poll']:.2f} requests per poll) vs 1 row per poll (nonce) + 1 (last seen) before"
    )
    if "rollout_cpu_ms" in r:
        print(f"   server CPU during the rollout: {r['rollout_cpu_ms']:.1f} ms per online device")
    print(
        f"   one round of polls: {r['round_s']:.1f} s"
        f" (the first, {FIRST_ROUND[r['start']]}: {r['first_round_s']:.1f} s for"
        f" {r['first_round_polls']} of {r['online']} devices, {r['first_round_cpu_ms']:.1f} ms of server CPU"
        " per device)"
    )
    conv, comp = r["converged_s"], r["completed_s"]
    rounds = "-" if conv is None else f"{conv / r['round_s']:.1f}"
    print(f"2. rollout to all: every online device on v2 after {conv if conv is None else round(conv, 1)} s"
          f" ({rounds} rounds of polls); rollout {r.get('rollout_state')}"
          f" after {comp if comp is None else round(comp, 1)} s; {r['on_v2']} devices on v2")  # fmt: skip
    base = r["pages_ms"]["login (baseline)"]
    print("3. dashboard pages (median ms, ratio to the login page):")
    for name, ms in r["pages_ms"].items():
        print(f"   {name:20} {ms:8.0f} ms  {ms / base:6.1f}x")
    print(f"4. errors: {r['errors']} (of {r['requests']} device requests); shed with 429: {r['shed']}")
    r["whole_run_s"] = time.perf_counter() - started
    print(f"whole run: {r['whole_run_s']:.0f} s; load {os.getloadavg()[0]:.1f} at the end")
    if args.json:
        print("JSON " + json.dumps(r))
    if r["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
