"""What the pages show, computed from what the services return: pure functions, tested table-driven."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edgefleet.server.services.devices import DeviceStatus, StatusThresholds, device_status
from edgefleet.server.services.fleet_overview import FleetOverviewInput

__all__ = [
    "GATE_LABELS",
    "MAX_LISTED",
    "STATUS_ORDER",
    "FleetSummary",
    "device_series",
    "fleet_summary",
    "gate_tables",
    "sum_degraded",
]

STATUS_ORDER = tuple(s.value for s in DeviceStatus)
MAX_LISTED = 50


@dataclass
class FleetSummary:
    total: int = 0
    by_class: dict[str, dict[str, int]] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    """artifact id -> devices whose report says it is active (in any slot)"""
    degraded: list[dict[str, Any]] = field(default_factory=list)
    degraded_count: int = 0
    unseen: list[dict[str, Any]] = field(default_factory=list)
    unseen_count: int = 0


def fleet_summary(fleet: FleetOverviewInput, *, now: datetime, thresholds: StatusThresholds) -> FleetSummary:
    """Counts by class and status, versions in the field (revoked devices excluded), and the listed devices
    reporting degraded or error and silent longer than the overview's bound, from what
    ``services.fleet_overview`` read (counted in the database; only the listed devices read one by one)."""
    out = FleetSummary()
    for group in fleet.groups:
        out.total += group.devices
        row = out.by_class.setdefault(group.hardware_class, dict.fromkeys(STATUS_ORDER, 0))
        row[group.status] += group.devices
        out.by_status[group.status] = out.by_status.get(group.status, 0) + group.devices
        if group.status == DeviceStatus.revoked.value:
            continue
        for pair in group.report_active.split(";") if group.report_active else ():
            active = pair.partition("=")[2]
            if active:
                out.versions[active] = out.versions.get(active, 0) + group.devices
    out.by_class = dict(sorted(out.by_class.items()))
    out.versions = dict(sorted(out.versions.items(), key=lambda kv: (-kv[1], kv[0])))
    out.degraded_count = fleet.degraded_count
    out.degraded = [
        {
            "id": d.id,
            "hardware_class": d.hardware_class,
            "report_status": d.report_status,
            "last_error": {"code": d.report_error_code} if d.report_error_code else None,
            "status": device_status(
                last_seen_at=d.last_seen_at, revoked=d.revoked, now=now, thresholds=thresholds
            ).value,
        }
        for d in fleet.degraded
    ]
    out.unseen_count = fleet.unseen_count
    out.unseen = [
        {
            "id": d.id,
            "hardware_class": d.hardware_class,
            "last_seen_at": d.last_seen_at,
            "silent_s": None if d.last_seen_at is None else (now - d.last_seen_at).total_seconds(),
        }
        for d in fleet.unseen
    ]
    return out


GATE_LABELS = {
    "install_failure_rate": "Install failure rate",
    "error_rate": "Inference error rate",
    "latency_p95_ms": "Latency p95",
    "latency_p95_ratio": "Latency p95 vs previous version",
    "shadow_agreement": "Shadow agreement",
    "reporting_devices": "Devices reporting",
    "requests": "Requests on the new version",
    "shadow_compared": "Shadow comparisons",
}


def gate_tables(last_decision: dict[str, Any] | None) -> list[tuple[str, list[dict[str, Any]]]]:
    """The engine's gate rows (``last_decision.gates``, judged by ``evaluate_gates``) grouped by hardware
    class for display, each with a label. Nothing is judged here: verdicts are shown as the engine gave
    them."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for row in (last_decision or {}).get("gates") or []:
        label = GATE_LABELS.get(row["name"], row["name"])
        tables.setdefault(row["hardware_class"], []).append({**row, "label": label})
    return list(tables.items())


def device_series(windows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Chart columns from ``device_telemetry`` windows (newest first): oldest first, one point a window."""
    xs: list[float] = []
    p95: list[float | None] = []
    requests: list[int] = []
    errors: list[int] = []
    degraded: list[float] = []
    late: list[float] = []
    for w in reversed(windows):
        xs.append(datetime.fromisoformat(w["end_at"]).timestamp())
        values = [m["latency_p95_ms"] for m in w["models"] if m.get("latency_p95_ms") is not None]
        p95.append(max(values) if values else None)
        requests.append(sum(int(m["requests"]) for m in w["models"]))
        errors.append(sum(int(m["errors"]) for m in w["models"]))
        degraded.append(float(sum((w.get("degraded_s") or {}).values())))
        late.append(float(w.get("late_s") or 0.0))
    return {
        "x": xs,
        "p95_ms": p95,
        "requests": requests,
        "errors": errors,
        "degraded_s": degraded,
        "late_s": late,
    }


def sum_degraded(windows: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds on each degraded rung across ``windows``."""
    out: dict[str, float] = {}
    for w in windows:
        for rung, seconds in (w.get("degraded_s") or {}).items():
            out[rung] = out.get(rung, 0.0) + float(seconds)
    return dict(sorted(out.items()))
