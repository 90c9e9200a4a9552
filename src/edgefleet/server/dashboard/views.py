"""What the pages show, computed from what the services return: pure functions, tested table-driven."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from edgefleet.server.services.devices import DeviceStatus, StatusThresholds, device_status
from edgefleet.server.services.rollouts.policy import StageHealth

__all__ = [
    "STATUS_ORDER",
    "DeviceFacts",
    "FleetSummary",
    "GateRow",
    "device_series",
    "fleet_summary",
    "gate_rows",
    "rollback_progress",
    "sum_degraded",
]

STATUS_ORDER = tuple(s.value for s in DeviceStatus)
MAX_LISTED = 50


class DeviceFacts(NamedTuple):
    """What the overview needs of one device: no labels, no key, no JSON report (its summary columns).
    A named tuple: the overview builds one per device of the fleet."""

    id: str
    hardware_class: str
    last_seen_at: datetime | None
    revoked: bool
    report_status: str | None = None
    report_active: str | None = None
    """``slot=artifact_id`` pairs joined by ``;``"""
    report_error_code: str | None = None


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


def fleet_summary(
    devices: Iterable[DeviceFacts],
    *,
    now: datetime,
    thresholds: StatusThresholds,
    unseen_after_s: float,
    max_listed: int = MAX_LISTED,
) -> FleetSummary:
    """Counts by class and status, versions in the field, devices reporting degraded or error, and devices
    silent for longer than ``unseen_after_s`` (revoked ones excluded). Lists hold at most ``max_listed``."""
    out = FleetSummary()
    degraded: list[dict[str, Any]] = []
    unseen: list[tuple[float, dict[str, Any]]] = []
    for d in devices:
        out.total += 1
        status = device_status(
            last_seen_at=d.last_seen_at, revoked=d.revoked, now=now, thresholds=thresholds
        ).value
        row = out.by_class.setdefault(d.hardware_class, dict.fromkeys(STATUS_ORDER, 0))
        row[status] += 1
        out.by_status[status] = out.by_status.get(status, 0) + 1
        if d.revoked:
            continue
        for pair in d.report_active.split(";") if d.report_active else ():
            active = pair.partition("=")[2]
            if active:
                out.versions[active] = out.versions.get(active, 0) + 1
        if d.report_status in ("degraded", "error"):
            degraded.append(
                {
                    "id": d.id,
                    "hardware_class": d.hardware_class,
                    "report_status": d.report_status,
                    "last_error": {"code": d.report_error_code} if d.report_error_code else None,
                    "status": status,
                }
            )
        silent_s = None if d.last_seen_at is None else (now - d.last_seen_at).total_seconds()
        if silent_s is None or silent_s > unseen_after_s:
            unseen.append(
                (
                    float("inf") if silent_s is None else silent_s,
                    {
                        "id": d.id,
                        "hardware_class": d.hardware_class,
                        "last_seen_at": d.last_seen_at,
                        "silent_s": silent_s,
                    },
                )
            )
    out.by_class = dict(sorted(out.by_class.items()))
    out.versions = dict(sorted(out.versions.items(), key=lambda kv: (-kv[1], kv[0])))
    out.degraded_count = len(degraded)
    out.degraded = sorted(degraded, key=lambda r: (r["report_status"] != "error", r["id"]))[:max_listed]
    out.unseen_count = len(unseen)
    out.unseen = [r for _, r in sorted(unseen, key=lambda t: (-t[0], t[1]["id"]))][:max_listed]
    return out


@dataclass(frozen=True)
class GateRow:
    name: str
    label: str
    value: float | None
    threshold: float | None
    comparison: str
    """``max`` (value must stay at or under) or ``min`` (value must reach)"""
    state: str
    """ok, breach, waiting (not enough evidence yet) or off"""
    unit: str = ""


def _max_gate(name: str, label: str, value: float | None, threshold: float | None, unit: str = "") -> GateRow:
    if threshold is None:
        return GateRow(name, label, value, None, "max", "off", unit)
    if value is None:
        return GateRow(name, label, None, threshold, "max", "waiting", unit)
    return GateRow(name, label, value, threshold, "max", "breach" if value > threshold else "ok", unit)


def gate_rows(
    gates: dict[str, Any],
    health: StageHealth,
    *,
    done: int,
    failed: int,
    class_p95_ms: float | None,
) -> list[GateRow]:
    """Each gate of the current stage with its live value, in the order the policy checks them.

    Mirrors ``policy.check_gates`` for display; the engine's decision (and its halt reason) is authoritative.
    """
    min_requests = int(gates.get("min_requests", 1))
    enough = health.requests >= max(min_requests, 1)
    finished = done + failed
    rows = [
        _max_gate(
            "install_failure_rate",
            "Install failure rate",
            failed / finished if finished else None,
            gates.get("max_install_failure_rate"),
        ),
        _max_gate(
            "error_rate",
            "Inference error rate",
            health.errors / health.requests if enough else None,
            gates.get("max_error_rate"),
        ),
    ]
    ceiling = gates.get("max_latency_p95_ms")
    if ceiling is None:
        ceiling = class_p95_ms
    rows.append(
        _max_gate(
            "latency_p95_ms",
            "Latency p95" + ("" if gates.get("max_latency_p95_ms") is not None else " (class envelope)"),
            health.latency_p95_ms if enough else None,
            ceiling,
            "ms",
        )
    )
    ratio = (
        health.latency_p95_ms / health.baseline_p95_ms
        if enough and health.latency_p95_ms is not None and health.baseline_p95_ms
        else None
    )
    rows.append(
        _max_gate(
            "latency_p95_ratio",
            "Latency p95 vs previous version",
            ratio,
            gates.get("max_latency_p95_ratio"),
            "x",
        )
    )
    agreement_min = gates.get("min_shadow_agreement")
    agreement = health.shadow_agreement
    if agreement_min is None:
        rows.append(GateRow("shadow_agreement", "Shadow agreement", agreement, None, "min", "off"))
    elif agreement is None:
        rows.append(GateRow("shadow_agreement", "Shadow agreement", None, agreement_min, "min", "waiting"))
    else:
        state = "breach" if agreement < agreement_min else "ok"
        rows.append(GateRow("shadow_agreement", "Shadow agreement", agreement, agreement_min, "min", state))
    min_reporting = int(gates.get("min_reporting_devices", 1))
    rows.append(
        GateRow(
            "min_reporting_devices",
            "Devices reporting",
            float(health.reporting_devices),
            float(min_reporting),
            "min",
            "ok" if health.reporting_devices >= min_reporting else "waiting",
        )
    )
    rows.append(
        GateRow(
            "min_requests",
            "Requests on the new version",
            float(health.requests),
            float(min_requests),
            "min",
            "ok" if health.requests >= min_requests else "waiting",
        )
    )
    return rows


def rollback_progress(
    reports: Iterable[tuple[str, dict[str, Any] | None]], *, slot: str, target: str, previous: str | None
) -> dict[str, int]:
    """For a halted or aborted rollout's exposed devices: back on the previous artifact, still on the new
    one, or something else (not reported yet, another artifact, nothing active)."""
    out = {"rolled_back": 0, "still_on_new": 0, "other": 0}
    for _device_id, report in reports:
        active = (((report or {}).get("slots") or {}).get(slot) or {}).get("active")
        if active == target:
            out["still_on_new"] += 1
        elif active is not None and active == previous:
            out["rolled_back"] += 1
        else:
            out["other"] += 1
    return out


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
