"""Field health: is a device answering, and are its sensors failing? Kept at ingest, judged here once; views
render it.

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

from edgefleet.protocol.telemetry import SlotStatus, TelemetryRecord
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.in_lists import in_batches
from edgefleet.server.store.telemetry import TelemetryDeviceRow, TelemetryModelWindowRow, TelemetryWindowRow

__all__ = [
    "FaultCounts",
    "FieldPolicy",
    "device_field",
    "fleet_field",
    "input_fault_surge",
    "slot_problems",
    "update_field_state",
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
    if device_ids is None:
        return {str(d): FaultCounts(int(f), int(r)) for d, f, r in session.execute(stmt)}
    return {  # grouped by device, so each device's sums come whole from one batch
        str(d): FaultCounts(int(f), int(r))
        for ids in in_batches(device_ids)  # a label selection may hold 100,000 devices
        for d, f, r in session.execute(stmt.where(TelemetryModelWindowRow.device_id.in_(ids)))
    }


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


def update_field_state(
    session: Session,
    device_id: str,
    new_windows: list[tuple[TelemetryWindowRow, TelemetryRecord]],
    *,
    offset: timedelta,
    now: datetime,
) -> None:
    """Keep each slot's newest field status and the newest resources (by the window's end; an older window
    arriving late changes nothing). Device times move onto the server's clock like the windows' do."""
    if not new_windows:
        return
    state = session.get(TelemetryDeviceRow, device_id)
    assert state is not None  # _update_device_state made it
    slots = dict(state.slots or {})
    for row, record in sorted(new_windows, key=lambda pair: pair[0].end_at):
        assert record.window is not None
        end_iso = row.end_at.isoformat()
        if record.window.resources is not None and row.end_at == state.last_window_end_at:
            state.resources = record.window.resources.model_dump(mode="json")  # the newest window's
        for slot in record.window.slots:
            known = slots.get(slot.slot)
            if known is not None and known.get("window_end_at", "") > end_iso:
                continue
            fresh = field_slot_json(slot, offset=offset, now=now, window_end_at=row.end_at)
            for key in ("last_success_at", "last_request_at"):
                # Never backwards: each batch's clock offset differs by a few ms, and a reboot starts the
                # device's own record afresh, but the last success the server saw stays the last success.
                kept = (known or {}).get(key)
                if kept and (
                    fresh[key] is None or datetime.fromisoformat(fresh[key]) < datetime.fromisoformat(kept)
                ):
                    fresh[key] = kept
            slots[slot.slot] = fresh
    state.slots = dict(sorted(slots.items())[:16])
    state.last_request_at = _newest(slots, "last_request_at")
    state.last_success_at = _newest(slots, "last_success_at")


def _newest(slots: dict[str, Any], key: str) -> datetime | None:
    times = [datetime.fromisoformat(s[key]) for s in slots.values() if s.get(key)]
    return max(times) if times else None


def field_slot_json(
    slot: SlotStatus, *, offset: timedelta, now: datetime, window_end_at: datetime
) -> dict[str, Any]:
    """One slot's field status as stored on the device's telemetry state."""

    def server_time(at: datetime | None) -> str | None:
        return None if at is None else min(at + offset, now).isoformat()

    return {
        "model_version": slot.model_version,
        "last_success_at": server_time(slot.last_success_at),
        "last_request_at": server_time(slot.last_request_at),
        "requests": slot.requests,
        "errors_by_kind": dict(slot.errors_by_kind),
        "update_status": slot.update_status,
        "update_failure_code": slot.update_failure_code,
        "window_end_at": window_end_at.isoformat(),
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
