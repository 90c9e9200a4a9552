"""Telemetry cost on the link and on the server.

1. Bytes per device per day at 10 inferences/s: the real recorder, queue and uploader summarize a simulated
   day (864,000 requests, lognormal latencies, 0.5% errors, a fallback rung now and then) into 60 s windows
   and upload them in gzip batches; the figure is the uploaded bytes as a ratio of shipping raw per-request
   records (one JSON object per request, measured over one simulated hour and scaled to a day), both as
   plain JSON and gzip-compressed in batches of 500 (the fair baseline).
2. Ingest throughput: a real ``edgefleet server`` process per backend (SQLite, then PostgreSQL when
   reachable); ``--devices`` enrolled devices post signed gzip batches of ``--batch`` windows from
   ``--threads`` threads. Printed as windows/s, and as a ratio of a plain SQL insert of the same window
   rows into the same database (no HTTP, no signature, no parsing, no dedup) measured in the same run.

Usage: ``.venv/bin/python bench/telemetry.py [--devices 8] [--batches 12] [--batch 100] [--threads 4]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_process import ServerProcess, start_server

from edgefleet.agent.channel import DeviceChannel
from edgefleet.agent.datadir import DataDir
from edgefleet.agent.enroll import enroll
from edgefleet.agent.telemetry import TelemetryQueue, TelemetryRecorder, TelemetryUploader
from edgefleet.client import EdgefleetClient
from edgefleet.protocol import parse_classes_toml
from edgefleet.protocol.canonical import canonical_json
from edgefleet.server.store import make_engine
from edgefleet.server.store.telemetry import TelemetryModelWindowRow, TelemetryWindowRow

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
RATE_PER_S = 10
DAY_S = 86_400


class _Counting:
    """An upload transport that acknowledges everything and counts bytes on the wire."""

    def __init__(self) -> None:
        self.bytes = 0
        self.batches = 0

    def post(self, body: bytes, *, content_encoding: str) -> dict[str, Any]:
        self.bytes += len(body)
        self.batches += 1
        doc = json.loads(gzip.decompress(body))
        acked: dict[str, list[int]] = {}
        for r in doc["records"]:
            acked.setdefault(r["boot_id"], []).append(r["sequence"])
        return {"acked": acked}


def _request(rng: random.Random) -> tuple[str, float, str | None]:
    rung = "fallback" if rng.random() < 0.01 else "cpu"
    latency = rng.lognormvariate(1.6, 0.35)  # ~5 ms median
    error = "runtime_error" if rng.random() < 0.005 else None
    return rung, latency, error


def bytes_per_day(work: Path) -> dict[str, float]:
    rng = random.Random(1)
    mono = [0.0]
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    queue = TelemetryQueue(work / "q.db", max_bytes=64 * 1024**2, synchronous="NORMAL")
    recorder = TelemetryRecorder(
        queue, boot_id="bench", clock=lambda: mono[0], wall_clock=lambda: start + timedelta(seconds=mono[0])
    )
    for _ in range(DAY_S * RATE_PER_S):
        mono[0] += 1.0 / RATE_PER_S
        rung, latency, error = _request(rng)
        recorder.record_request("1.0.0", rung, latency, error)
    recorder.flush()
    counting = _Counting()
    uploader = TelemetryUploader(queue, counting, device_id="dev_bench", bandwidth_bytes_per_s=1e9)
    while queue.stats().records:
        assert uploader.upload_once().error is None
    queue.close()

    raw_plain = raw_gzip = 0
    batch: list[bytes] = []
    for i in range(3600 * RATE_PER_S):  # one hour of raw per-request records, scaled to a day
        rung, latency, error = _request(rng)
        at = (start + timedelta(seconds=i / RATE_PER_S)).isoformat()
        record = {"at": at, "model_version": "1.0.0", "rung": rung, "latency_ms": round(latency, 3)}
        record["error_code"] = error
        batch.append(canonical_json(record))
        if len(batch) == 500:
            body = b"[" + b",".join(batch) + b"]"
            raw_plain += len(body)
            raw_gzip += len(gzip.compress(body, mtime=0))
            batch = []
    scale = DAY_S / 3600
    result = {
        "windowed_bytes_per_day": float(counting.bytes),
        "windowed_batches": float(counting.batches),
        "raw_json_bytes_per_day": raw_plain * scale,
        "raw_gzip_bytes_per_day": raw_gzip * scale,
    }
    result["ratio_vs_raw_json"] = result["windowed_bytes_per_day"] / result["raw_json_bytes_per_day"]
    result["ratio_vs_raw_gzip"] = result["windowed_bytes_per_day"] / result["raw_gzip_bytes_per_day"]
    print(
        f"bytes/device/day at {RATE_PER_S} inferences/s: windowed {counting.bytes / 1024:.1f} KiB "
        f"in {counting.batches} batches; raw records {raw_plain * scale / 1024**2:.1f} MiB JSON, "
        f"{raw_gzip * scale / 1024**2:.2f} MiB gzip; ratio {result['ratio_vs_raw_json']:.5f} of raw JSON, "
        f"{result['ratio_vs_raw_gzip']:.4f} of raw gzip"
    )
    return result


def _window(seq: int, at: datetime, rng: random.Random) -> dict[str, Any]:
    buckets: dict[str, int] = {}
    for _ in range(40):
        key = str(100 + rng.randint(0, 20))
        buckets[key] = buckets.get(key, 0) + 15
    return {
        "boot_id": "bench",
        "sequence": seq,
        "kind": "window",
        "window": {
            "start_at": (at - timedelta(seconds=60)).isoformat(),
            "end_at": at.isoformat(),
            "models": [
                {
                    "model_version": "1.0.0",
                    "requests": 600,
                    "errors_by_code": {"runtime_error": 3},
                    "requests_by_rung": {"cpu": 594, "fallback": 6},
                    "latency": {"buckets": buckets, "sum_ms": 3000.0, "max_ms": 40.0},
                }
            ],
            "resources": {"cpu_temp_c": 55.0, "mem_available_bytes": 10**9, "load_1m": 0.5},
        },
    }


def _batches(device_id: str, count: int, size: int, rng: random.Random) -> list[bytes]:
    now = datetime.now(timezone.utc)
    out = []
    for b in range(count):
        records = [_window(b * size + i + 1, now - timedelta(minutes=b * size + i), rng) for i in range(size)]
        doc = {"schema_version": 1, "device_id": device_id, "sent_at": now.isoformat(), "records": records}
        out.append(gzip.compress(canonical_json(doc), mtime=0))
    return out


def _sql_baseline(database_url: str, rows: int) -> float:
    """Plain inserts of the same rows (a window and its model row), in batches, on the same database."""
    engine = make_engine(database_url)
    now = datetime.now(timezone.utc)
    window_rows = [
        {
            "device_id": "dev_baseline",
            "hardware_class": "medical-cart-cpu",
            "boot_id": "base",
            "sequence": i,
            "start_at": now,
            "end_at": now,
            "device_end_at": now,
            "received_at": now,
            "late_s": 0.0,
            "degraded_s": {},
            "resources": {"cpu_temp_c": 55.0},
        }
        for i in range(rows)
    ]
    started = time.perf_counter()
    for i in range(0, rows, 100):
        with engine.begin() as conn:
            ids = conn.execute(
                insert(TelemetryWindowRow).returning(TelemetryWindowRow.id), window_rows[i : i + 100]
            )
            model_rows = [
                {
                    "window_id": wid,
                    "device_id": "dev_baseline",
                    "hardware_class": "medical-cart-cpu",
                    "model_version": "1.0.0",
                    "end_at": now,
                    "requests": 600,
                    "errors": 3,
                    "errors_by_code": {"runtime_error": 3},
                    "requests_by_rung": {"cpu": 594},
                    "latency_buckets": {"100": 600},
                    "latency_sum_ms": 3000.0,
                    "latency_max_ms": 40.0,
                    "shadow_compared": 0,
                    "shadow_agreement_sum": 0.0,
                    "health_passed": 0,
                    "health_failed": 0,
                    "health_failed_by_code": {},
                }
                for (wid,) in ids
            ]
            conn.execute(insert(TelemetryModelWindowRow), model_rows)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return rows / elapsed


def ingest(name: str, database_url: str | None, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"ef-telemetry-{name}-") as tmp:
        work = Path(tmp)
        env = {"EDGEFLEET_DATABASE_URL": database_url} if database_url else {}
        server: ServerProcess = start_server(work / "server", env=env)
        try:
            with EdgefleetClient(server.url, server.token) as client:
                client.apply_classes(
                    parse_classes_toml((ROOT / "examples" / "hardware-classes.toml").read_text())
                )
                token = client.create_enrollment_token("medical-cart-cpu", uses=args.devices).token
            rng = random.Random(2)
            devices = []
            for i in range(args.devices):
                identity = enroll(server_url=server.url, token=token, data_dir=work / f"dev{i}")
                channel = DeviceChannel(
                    server.url, device_id=identity.device_id, key=DataDir(work / f"dev{i}").read_key()
                )
                devices.append((channel, _batches(identity.device_id, args.batches, args.batch, rng)))
            headers = {"content-type": "application/json", "content-encoding": "gzip"}
            work_items = [(ch, body) for ch, bodies in devices for body in bodies]
            lock = threading.Lock()
            accepted = [0]

            def worker(k: int) -> None:
                for ch, body in work_items[k :: args.threads]:
                    answer = ch.request(
                        "POST", "/v1/device/telemetry", body_bytes=body, headers=headers
                    ).json()
                    with lock:
                        accepted[0] += answer["accepted"]

            cpu0 = server.cpu_s()
            started = time.perf_counter()
            threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.threads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - started
            cpu = server.cpu_s() - cpu0
            # the same batches again: all duplicates, all acknowledged, nothing counted
            ch, bodies = devices[0]
            dup = ch.request("POST", "/v1/device/telemetry", body_bytes=bodies[0], headers=headers).json()
            assert dup["accepted"] == 0
            assert dup["duplicates"] == args.batch
            for ch, _ in devices:
                ch.close()
        finally:
            server.stop()
        url = database_url or f"sqlite:///{work / 'server' / 'edgefleet.db'}"
        baseline = _sql_baseline(url, min(accepted[0], 2000))
    windows = accepted[0]
    result = {
        "windows": float(windows),
        "windows_per_s": windows / elapsed,
        "windows_per_server_cpu_s": windows / max(cpu, 1e-9),
        "sql_insert_rows_per_s": baseline,
    }
    result["ratio_vs_sql_insert"] = result["windows_per_s"] / baseline
    print(
        f"{name:10} ingest: {result['windows_per_s']:8.0f} windows/s ({windows} windows, "
        f"{result['windows_per_server_cpu_s']:.0f} per server CPU s); plain SQL insert "
        f"{baseline:8.0f} rows/s; ratio {result['ratio_vs_sql_insert']:.2f}"
    )
    return result


def _pg_url() -> str | None:
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error:
        return None
    name = f"ef_bench_telemetry_{int(time.time())}"
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop_pg(url: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--batches", type=int, default=12, help="batches per device")
    parser.add_argument("--batch", type=int, default=100, help="windows per batch")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ef-telemetry-day-") as tmp:
        results["bytes_per_day"] = bytes_per_day(Path(tmp))
    results["sqlite"] = ingest("sqlite", None, args)
    pg = _pg_url()
    if pg is None:
        print("postgresql unreachable: skipped")
    else:
        try:
            results["postgresql"] = ingest("postgresql", pg, args)
        finally:
            _drop_pg(pg)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
