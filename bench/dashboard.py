"""Dashboard render time with 10,000 devices in the database.

Builds the real app in process (SQLite by default, or ``--database-url postgresql+psycopg://...``), registers
two builds of a model through the API, then bulk-inserts ``--devices`` devices with reports (most on v1, a
share degraded, some silent for days) and one telemetry window each per minute for the last
``--window-minutes`` (60: the full hour that fleet health reads), and starts a rollout over all of them, and a
week of per-hour rollups (plus the last hour's per-minute ones) for 40 sites, as
ingest writes them for that many devices reporting every minute (v2 on half the sites from mid-week). It then
renders each dashboard page ``--repeat`` times through the ASGI app (no network)
as a signed-in admin and prints the median server-side time per page, as a ratio of the sign-in page's time
(a trivial template render, measured in the same run), against the 300 ms target.
Usage: ``.venv/bin/python bench/dashboard.py [--devices 10000] [--repeat 5] [--database-url URL]
[--window-minutes 60] [--only SUBSTRING]`` (``--only``: just the pages whose name contains it).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import insert

from edgefleet.protocol import parse_classes_toml
from edgefleet.protocol.telemetry import LatencyHistogram, merge_counts
from edgefleet.server import Settings, create_app
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.telemetry import (
    TelemetryDeviceRow,
    TelemetryHourRollupRow,
    TelemetryModelWindowRow,
    TelemetryReporterRow,
    TelemetryRollupRow,
    TelemetryWindowRow,
)

ROOT = Path(__file__).resolve().parents[1]
CLASS = "medical-cart-cpu"
TARGET_MS = 300.0
HISTORY_TARGET_MS = 1000.0


def _artifact(client: TestClient, admin: dict[str, str], version: str) -> str:
    files = {"model.onnx": b"onnx-" + version.encode() * 100, "golden.npz": b"golden-" + version.encode()}
    for data in files.values():
        client.put(f"/v1/blobs/{hashlib.sha256(data).hexdigest()}", content=data, headers=admin)
    if client.get("/v1/models/bench", headers=admin).status_code == 404:
        client.post("/v1/models", json={"name": "bench"}, headers=admin)
    src = hashlib.sha256(files["model.onnx"]).hexdigest()
    client.post("/v1/models/bench/versions", json={"version": version, "source_sha256": src}, headers=admin)
    manifest = {
        "model": "bench",
        "version": version,
        "hardware_class": CLASS,
        "runtime": {"name": "onnxruntime", "execution_providers": ["CPUExecutionProvider"]},
        "entrypoint": "model.onnx",
        "files": [
            {"path": p, "sha256": hashlib.sha256(d).hexdigest(), "length": len(d)} for p, d in files.items()
        ],
        "signature": {
            "inputs": [{"name": "x", "dtype": "float32", "shape": [1, 64]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [1, 10]}],
        },
        "optimization": {"source_sha256": src, "quantization": "int8_static"},
        "metrics": {
            "latency_p50_ms": 4.0,
            "latency_p95_ms": 6.5,
            "task_metric": "accuracy",
            "task_value": 0.97,
        },
        "health_check": {"golden_file": "golden.npz", "latency_ceiling_ms": 50},
        "release_counter": 1,
    }
    r = client.post("/v1/artifacts", json={"manifest": manifest}, headers=admin)
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def _rollup_cell(now: datetime, site: str, model_version: str) -> dict[str, object]:
    """An empty per-minute rollup row, as ingest writes them."""
    return {
        "minute_at": (now - timedelta(minutes=1)).replace(second=0, microsecond=0),
        "hardware_class": CLASS,
        "model_version": model_version,
        "site": site,
        "requests": 0,
        "errors": 0,
        "errors_by_code": {},
        "requests_by_rung": {},
        "latency_buckets": {},
        "latency_sum_ms": 0.0,
        "latency_max_ms": 0.0,
        "shadow_compared": 0,
        "shadow_agreement_sum": 0.0,
        "health_passed": 0,
        "health_failed": 0,
        "health_failed_by_code": {},
        "degraded_s": {},
        "max_late_s": 0.0,
    }


def _history_rows(devices: int, now: datetime) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """A week of hour rollups and an hour of minute rollups, 40 sites, v1 everywhere and v2 (slower) on half
    of the sites from mid-week: the rows ingest writes for ``devices`` devices with one window a minute."""
    fast, slow = LatencyHistogram(), LatencyHistogram()
    for ms in (4.0, 5.0, 6.0, 9.0):
        for _ in range(25):
            fast.add(ms)
            slow.add(ms * 3)
    per_site = max(1, devices // 40)
    hours, minutes = [], []
    hour0 = now.replace(minute=0, second=0, microsecond=0)
    for unit, count, rows, key, windows in (
        (timedelta(hours=1), 168, hours, "hour_at", 60 * per_site),
        (timedelta(minutes=1), 60, minutes, "minute_at", per_site),
    ):
        start = (hour0 if key == "hour_at" else now.replace(second=0, microsecond=0)) - unit * (count - 1)
        for step in range(count):
            at = start + unit * step
            for site_index in range(40):
                site = f"site-{site_index}"
                cell = _rollup_cell(now, site, "")
                cell.pop("minute_at")
                rows.append({**cell, key: at, "degraded_s": {"cpu_fallback": 2.0 * windows}})
                versions = [("bench/1.0.0", fast)]
                if site_index < 20 and step >= count // 2:
                    versions = [("bench/2.0.0", slow)]
                for version, hist in versions:
                    cell = _rollup_cell(now, site, version)
                    cell.pop("minute_at")
                    buckets = {str(k): v * windows for k, v in hist.buckets.items()}
                    cell.update(
                        {
                            key: at,
                            "requests": 100 * windows,
                            "errors": windows // 10,
                            "latency_buckets": buckets,
                            "latency_sum_ms": 600.0 * windows,
                            "latency_max_ms": 27.0,
                            "requests_by_rung": {"preferred": 100 * windows},
                        }
                    )
                    rows.append(cell)
    return hours, minutes


def _window_row(row_id: int, device_id: str, now: datetime, minute: int, status: str) -> dict[str, object]:
    """The device's window ending ``minute`` minutes ago (a minute long, received at once)."""
    return {
        "id": row_id,
        "device_id": device_id,
        "hardware_class": CLASS,
        "boot_id": "b",
        "sequence": minute,
        "start_at": now - timedelta(minutes=minute + 1),
        "end_at": now - timedelta(minutes=minute),
        "device_end_at": now - timedelta(minutes=minute),
        "received_at": now,
        "late_s": 1.0,
        "degraded_s": {"cpu_fallback": 12.0} if status == "degraded" else {},
        "resources": None,
    }


def _model_row(
    window_id: int, device_id: str, now: datetime, minute: int, buckets: dict[str, int]
) -> dict[str, object]:
    """The v1 model's numbers in that window."""
    i = int(device_id[4:], 16)
    return {
        "window_id": window_id,
        "device_id": device_id,
        "hardware_class": CLASS,
        "model_version": "bench/1.0.0",
        "site": f"site-{i % 40}",
        "end_at": now - timedelta(minutes=minute),
        "requests": 100,
        "errors": i % 3,
        "errors_by_code": {"inference_failed": i % 3} if i % 3 else {},
        "requests_by_rung": {"preferred": 100},
        "latency_buckets": buckets,
        "latency_sum_ms": 600.0,
        "latency_max_ms": 9.0,
        "shadow_compared": 0,
        "shadow_agreement_sum": 0.0,
        "health_passed": 0,
        "health_failed": 0,
        "health_failed_by_code": {},
    }


def _reporter_row(model_row: dict[str, object]) -> dict[str, object]:
    """What ingest keeps beside the rollups: the newest window end per device, version, class and site."""
    keys = ("device_id", "model_version", "hardware_class", "site")
    return {**{k: model_row[k] for k in keys}, "last_end_at": model_row["end_at"]}


def _populate(app, devices: int, v1: str, now: datetime, window_minutes: int) -> str:
    hist = LatencyHistogram()
    for ms in (4.0, 5.0, 6.0, 9.0):
        for _ in range(25):
            hist.add(ms)
    buckets = {str(k): v for k, v in hist.model_dump(mode="json")["buckets"].items()}
    device_rows, window_rows, model_rows, state_rows = [], [], [], []
    for i in range(devices):
        device_id = f"dev_{i:020x}"
        silent = timedelta(days=3) if i % 97 == 0 else timedelta(seconds=i % 600)
        status = "degraded" if i % 53 == 0 else "ok"
        device_rows.append(
            {
                "id": device_id,
                "public_key_pem": "bench",
                "public_key_sha256": hashlib.sha256(device_id.encode()).hexdigest(),
                "hardware_class": CLASS,
                "labels": {"site": f"site-{i % 40}", "line": f"line-{i % 7}"},
                "serial": None,
                "enrollment_token_id": "bench",
                "enrolled_at": now - timedelta(days=30),
                "agent_version": "0.1.0",
                "last_seen_at": now - silent,
                "report": {
                    "schema_version": 1,
                    "sequence": 1,
                    "boot_id": "b",
                    "reported_at": now.isoformat(),
                    "status": status,
                    "slots": {"default": {"active": v1, "previous": None, "state": "idle"}},
                },
                "report_sequence": 1,
                "report_status": status,
                "report_active": f"default={v1}",
            }
        )
        window_rows.append(_window_row(i + 1, device_id, now, 1, status))
        model_rows.append(_model_row(i + 1, device_id, now, 1, buckets))
        state_rows.append(
            {
                "device_id": device_id,
                "dropped": {},
                "queue_bytes": 0,
                "queue_records": 0,
                "last_batch_at": now,
                "last_window_end_at": now - timedelta(minutes=1),
                "records_accepted": 1,
                "records_duplicate": 0,
            }
        )
    # What ingest writes beside the windows: per-minute rollups by class, version and site.
    rollups: dict[tuple[str, str], dict[str, object]] = {}
    for device, row, window in zip(device_rows, model_rows, window_rows, strict=True):
        site = device["labels"]["site"]  # type: ignore[index]
        whole = rollups.setdefault((site, ""), _rollup_cell(now, site, ""))
        merge_counts(whole["degraded_s"], window["degraded_s"])  # type: ignore[arg-type]
        whole["max_late_s"] = max(whole["max_late_s"], window["late_s"])  # type: ignore[type-var]
        cell = rollups.setdefault(
            (site, str(row["model_version"])), _rollup_cell(now, site, str(row["model_version"]))
        )
        for name in ("requests", "errors", "latency_sum_ms"):
            cell[name] += row[name]  # type: ignore[operator]
        cell["latency_max_ms"] = max(cell["latency_max_ms"], row["latency_max_ms"])  # type: ignore[type-var]
        for name in ("errors_by_code", "requests_by_rung", "latency_buckets"):
            merge_counts(cell[name], row[name])  # type: ignore[arg-type]
    db = app.state.context.db
    with db.session() as session, session.begin():
        for table, rows in (
            (DeviceRow, device_rows),
            (TelemetryWindowRow, window_rows),
            (TelemetryModelWindowRow, model_rows),
            (TelemetryDeviceRow, state_rows),
            (TelemetryReporterRow, [_reporter_row(row) for row in model_rows]),
            (TelemetryRollupRow, list(rollups.values())),
        ):
            for start in range(0, len(rows), 2000):
                session.execute(insert(table), rows[start : start + 2000])
    # The earlier minutes of the hour: one window per device and minute, as ingest stores them.
    for minute in range(2, window_minutes + 1):
        first = (minute - 1) * devices + 1
        with db.session() as session, session.begin():
            for start in range(0, devices, 2000):
                ids = range(start, min(start + 2000, devices))
                session.execute(
                    insert(TelemetryWindowRow),
                    [
                        _window_row(
                            first + i, f"dev_{i:020x}", now, minute, "degraded" if i % 53 == 0 else "ok"
                        )
                        for i in ids
                    ],
                )
                session.execute(
                    insert(TelemetryModelWindowRow),
                    [_model_row(first + i, f"dev_{i:020x}", now, minute, buckets) for i in ids],
                )
    hour_rows, minute_rows = _history_rows(devices, now)
    recent = {(r["minute_at"], r["site"], r["model_version"]) for r in rollups.values()}
    minute_rows = [r for r in minute_rows if (r["minute_at"], r["site"], r["model_version"]) not in recent]
    with db.session() as session, session.begin():
        for table, rows in ((TelemetryHourRollupRow, hour_rows), (TelemetryRollupRow, minute_rows)):
            for start in range(0, len(rows), 2000):
                session.execute(insert(table), rows[start : start + 2000])
    return device_rows[1]["id"]


def _median_ms(client: TestClient, path: str, repeat: int, headers: dict[str, str] | None = None) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        r = client.get(path, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--window-minutes",
        type=int,
        default=60,
        help="minutes of per-device windows (one per device and minute; 60: the hour fleet health reads)",
    )
    parser.add_argument("--only", default=None, help="only the pages whose name contains this")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp), dev=True, database_url=args.database_url, rollout_tick_s=3600.0
        )
        app = create_app(settings)
        with TestClient(app) as client:
            admin = {"authorization": f"Bearer {app.state.context.settings.admin_token}"}
            classes = [
                c.to_dict()
                for c in parse_classes_toml((ROOT / "examples" / "hardware-classes.toml").read_text())
            ]
            client.post("/v1/classes/apply", json={"classes": classes}, headers=admin)
            v1, v2 = _artifact(client, admin, "1.0.0"), _artifact(client, admin, "2.0.0")
            client.put(f"/v1/pins/class/{CLASS}/default", json={"artifact_id": v1}, headers=admin)
            now = datetime.now(timezone.utc)
            started = time.perf_counter()
            device_id = _populate(app, args.devices, v1, now, args.window_minutes)
            took_s = time.perf_counter() - started
            print(
                f"inserted {args.devices} devices with reports and {args.window_minutes} minutes of telemetry"
                f" ({args.devices * args.window_minutes} windows) in {took_s:.1f} s"
            )
            r = client.post("/v1/rollouts", json={"model": "bench", "targets": {CLASS: v2}}, headers=admin)
            assert r.status_code == 201, r.text
            rollout_id = r.json()["id"]
            page = client.get("/dashboard/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            token = admin["authorization"].split()[1]
            client.post("/dashboard/login", data={"csrf": csrf, "token": token}, follow_redirects=False)
            baseline = _median_ms(client, "/dashboard/login", args.repeat * 4)
            pages = {
                "fleet overview": "/dashboard/",
                "fleet health (part)": "/dashboard/fleet/health",
                "fleet health API": "/v1/fleet/health",
                "rollouts": "/dashboard/rollouts",
                "rollout": f"/dashboard/rollouts/{rollout_id}",
                "rollout (live part)": f"/dashboard/rollouts/{rollout_id}/live",
                "devices": "/dashboard/devices",
                "devices (status filter)": "/dashboard/devices?status=offline",
                "device": f"/dashboard/devices/{device_id}",
                "models and artifacts": "/dashboard/models",
                "artifact": f"/dashboard/artifacts/{v1}",
                "audit log": "/dashboard/audit",
                "history, last hour": f"/dashboard/history?hardware_class={CLASS}&range=hour",
                "history, last day": f"/dashboard/history?hardware_class={CLASS}&range=day",
                "history, last week": f"/dashboard/history?hardware_class={CLASS}&range=week",
                "history API, week": f"/v1/fleet/health/history?hardware_class={CLASS}&range=week",
            }
            backend = settings.database_kind
            print(f"\n{backend}, {args.devices} devices; baseline (sign-in page) {baseline:.2f} ms\n")
            print(f"{'page':<26}{'median ms':>10}{'x baseline':>12}  under target")
            for name, path in pages.items():
                if args.only and args.only not in name:
                    continue
                target_ms = HISTORY_TARGET_MS if "history" in name else TARGET_MS
                ms = _median_ms(client, path, args.repeat, headers=admin if path.startswith("/v1") else None)
                verdict = "yes" if ms < target_ms else "NO"
                print(f"{name:<26}{ms:>10.1f}{ms / baseline:>12.1f}  {verdict} (target {target_ms:.0f} ms)")


if __name__ == "__main__":
    main()
