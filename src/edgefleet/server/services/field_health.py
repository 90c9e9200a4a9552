"""Field health: is a device answering, and are its sensors failing? Judged here once; views render it.

Two rules, pure and taking ``now``:

* ``slot_problems``: *requests arriving but no success* -- a slot whose last request is recent (within
  ``no_success_after_s``) while its last successful answer is older than that (or, with no success since the
  agent started, after ``min_requests`` requests) marks the device **unhealthy** (``no_success``). An idle
  slot (no recent request) is not unhealthy: a quiet site is not a failing one (stale data is its own signal).
* ``input_fault_surge``: a sudden rise in input faults on one device (a failing camera or sensor, not the
  model): in the last ``surge_window_s``, at least ``surge_min_faults`` input faults, forming at least
  ``surge_min_share`` of its requests and ``surge_factor`` times the device's own share over the day before.

Input faults never enter a rollout's error-rate gate (``protocol.telemetry.error_kind``); this is where they
are watched instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.telemetry import TelemetryDeviceRow, TelemetryModelWindowRow

__all__ = [
    "FaultCounts",
    "FieldPolicy",
    "device_field",
    "fleet_field",
    "input_fault_surge",
    "slot_problems",
]

BASELINE = timedelta(hours=24)
MAX_LISTED = 100


@dataclass(frozen=True)
class FieldPolicy:
    no_success_after_s: float = 600.0
    """N: requests arriving but no success for this long marks the device unhealthy"""
    min_requests: int = 10
    """with no success since the agent started: this many requests first"""
    surge_window_s: float = 600.0
    surge_min_faults: int = 20
    surge_min_share: float = 0.2
    surge_factor: float = 5.0


@dataclass(frozen=True)
class FaultCounts:
    input_faults: int = 0
    requests: int = 0
    """requests that reached the model (input faults are not among them)"""

    @property
    def share(self) -> float:
        total = self.input_faults + self.requests
        return self.input_faults / total if total else 0.0


def _at(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def slot_problems(slot: dict[str, Any], *, now: datetime, policy: FieldPolicy) -> list[str]:
    """Pure: the field problems of one slot's stored status (``services.telemetry.field_slot_json``)."""
    last_request = _at(slot.get("last_request_at"))
    if last_request is None or (now - last_request).total_seconds() > policy.no_success_after_s:
        return []  # nothing arriving: idle
    last_success = _at(slot.get("last_success_at"))
    if last_success is None:
        if int(slot.get("requests") or 0) >= policy.min_requests:
            return ["no_success"]
        return []
    if (now - last_success).total_seconds() > policy.no_success_after_s:
        return ["no_success"]
    return []


def input_fault_surge(recent: FaultCounts, baseline: FaultCounts, policy: FieldPolicy) -> bool:
    """Pure: did the device's input faults rise suddenly (recent window against its own day before)?"""
    if recent.input_faults < policy.surge_min_faults or recent.share < policy.surge_min_share:
        return False
    return recent.share >= policy.surge_factor * baseline.share


def _counts(
    session: Session,
    start: datetime,
    end: datetime,
    device_ids: list[str] | None,
    *,
    hardware_class: str | None = None,
    min_faults: int = 0,
) -> dict[str, FaultCounts]:
    faults = func.coalesce(func.sum(TelemetryModelWindowRow.input_faults), 0)
    stmt = (
        select(
            TelemetryModelWindowRow.device_id,
            faults,
            func.coalesce(func.sum(TelemetryModelWindowRow.requests), 0),
        )
        .where(TelemetryModelWindowRow.end_at > start, TelemetryModelWindowRow.end_at <= end)
        .group_by(TelemetryModelWindowRow.device_id)
    )
    if min_faults > 0:  # only devices that could surge come back (a prefilter; the rule is input_fault_surge)
        stmt = stmt.having(faults >= min_faults)
    if hardware_class is not None:
        stmt = stmt.where(TelemetryModelWindowRow.hardware_class == hardware_class)
    if device_ids is not None:
        stmt = stmt.where(TelemetryModelWindowRow.device_id.in_(device_ids))
    return {str(d): FaultCounts(int(f), int(r)) for d, f, r in session.execute(stmt)}


def _judge(
    device_id: str,
    slots: dict[str, Any],
    recent: FaultCounts,
    baseline: FaultCounts,
    *,
    now: datetime,
    policy: FieldPolicy,
) -> dict[str, Any]:
    judged = {
        name: {**status, "problems": slot_problems(status, now=now, policy=policy)}
        for name, status in sorted(slots.items())
    }
    surge = input_fault_surge(recent, baseline, policy)
    return {
        "device_id": device_id,
        "unhealthy": any(s["problems"] for s in judged.values()),
        "slots": judged,
        "input_faults": {
            "recent": recent.input_faults,
            "recent_share": round(recent.share, 4),
            "baseline_share": round(baseline.share, 4),
            "window_s": policy.surge_window_s,
            "surge": surge,
        },
    }


def device_field(
    session: Session, device_id: str, *, now: datetime, policy: FieldPolicy | None = None
) -> dict[str, Any]:
    """One device's field status: slots (last success, last request, errors by kind, update status) with
    their problems, its newest resources, and its input faults against its own baseline."""
    policy = policy or FieldPolicy()
    state = session.get(TelemetryDeviceRow, device_id)
    recent_start = now - timedelta(seconds=policy.surge_window_s)
    recent = _counts(session, recent_start, now, [device_id]).get(device_id, FaultCounts())
    baseline = _counts(session, recent_start - BASELINE, recent_start, [device_id]).get(
        device_id, FaultCounts()
    )
    out = _judge(
        device_id, dict(state.slots or {}) if state else {}, recent, baseline, now=now, policy=policy
    )
    out["resources"] = state.resources if state else None
    return out


def fleet_field(
    session: Session, *, now: datetime, hardware_class: str | None = None, policy: FieldPolicy | None = None
) -> dict[str, Any]:
    """The fleet's field signals: devices marked unhealthy (requests without success) and devices whose
    input faults surged, each counted and listed (bounded)."""
    policy = policy or FieldPolicy()
    window_start = now - timedelta(seconds=policy.no_success_after_s)
    # An index prefilter, not the rule: only a device with a recent request and no recent success can break
    # it (slot_problems judges each of those); in a healthy fleet that is a handful, not every device.
    stmt = (
        select(TelemetryDeviceRow.device_id, TelemetryDeviceRow.slots)
        .join(DeviceRow, DeviceRow.id == TelemetryDeviceRow.device_id)
        .where(
            TelemetryDeviceRow.last_request_at >= window_start,
            or_(
                TelemetryDeviceRow.last_success_at.is_(None),
                TelemetryDeviceRow.last_success_at < window_start,
            ),
        )
    )
    if hardware_class is not None:
        stmt = stmt.where(DeviceRow.hardware_class == hardware_class)
    slots_of = {str(d): dict(s or {}) for d, s in session.execute(stmt)}
    recent_start = now - timedelta(seconds=policy.surge_window_s)
    recent = _counts(
        session, recent_start, now, None, hardware_class=hardware_class, min_faults=policy.surge_min_faults
    )
    faulty = list(recent)
    baseline = _counts(session, recent_start - BASELINE, recent_start, faulty) if faulty else {}
    unhealthy: list[str] = []
    surging: list[str] = []
    for device_id in sorted(set(slots_of) | set(faulty)):
        judged = _judge(
            device_id,
            slots_of.get(device_id, {}),
            recent.get(device_id, FaultCounts()),
            baseline.get(device_id, FaultCounts()),
            now=now,
            policy=policy,
        )
        if judged["unhealthy"]:
            unhealthy.append(device_id)
        if judged["input_faults"]["surge"]:
            surging.append(device_id)
    return {
        "no_success_after_s": policy.no_success_after_s,
        "unhealthy": len(unhealthy),
        "unhealthy_ids": unhealthy[:MAX_LISTED],
        "input_fault_surge": len(surging),
        "input_fault_surge_ids": surging[:MAX_LISTED],
    }
