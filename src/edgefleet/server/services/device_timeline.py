"""One device over time: the versions it served and on which rungs, its install and rollback steps, its
temperature and memory pressure, its last successful inference, and its connectivity (silent periods, and
windows that arrived late because they were buffered while it was offline).

Read from the device's own telemetry windows and events over a range (``health_history.resolve_range``
decides what a range may be); ``gaps`` is the one rule for what counts as silent (pure).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import NotFoundError
from edgefleet.server.services.health_history import HistoryRange
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.telemetry import (
    TelemetryDeviceRow,
    TelemetryEventRow,
    TelemetryModelWindowRow,
    TelemetryWindowRow,
)

__all__ = ["BUFFERED_AFTER_S", "SILENT_AFTER_S", "device_timeline", "gaps"]

SILENT_AFTER_S = 180.0
"""no window covering this long: a silent period"""
BUFFERED_AFTER_S = 120.0
"""a window received this long after it ended was buffered on the device"""
INSTALL_EVENT_KINDS = ("update", "rollback", "health")
MAX_EVENTS = 200


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at


def gaps(
    spans: Sequence[tuple[datetime, datetime]], *, start: datetime, end: datetime, silent_after_s: float
) -> list[dict[str, Any]]:
    """Pure: the periods in ``[start, end]`` not covered by any window span (start, end on the server's
    clock) that last at least ``silent_after_s``."""
    out = []
    cursor = start
    for span_start, span_end in sorted(spans):
        if (span_start - cursor).total_seconds() >= silent_after_s:
            out.append({"from": cursor.isoformat(), "to": span_start.isoformat(),
                        "silent_s": (span_start - cursor).total_seconds()})  # fmt: skip
        cursor = max(cursor, span_end)
    if (end - cursor).total_seconds() >= silent_after_s:
        out.append(
            {"from": cursor.isoformat(), "to": end.isoformat(), "silent_s": (end - cursor).total_seconds()}
        )
    return out


def device_timeline(session: Session, device_id: str, *, history_range: HistoryRange) -> dict[str, Any]:
    """Series per bucket of ``history_range`` (``None`` where the device sent nothing) and the lists of its
    install steps, silent periods and buffered arrivals."""
    r = history_range
    with session.begin():
        device = session.get(DeviceRow, device_id[:32])
        if device is None:
            raise NotFoundError("no such device", code="device_not_found", got=device_id[:80])
        state = session.get(TelemetryDeviceRow, device.id)
        windows = session.execute(
            select(
                TelemetryWindowRow.start_at,
                TelemetryWindowRow.end_at,
                TelemetryWindowRow.received_at,
                TelemetryWindowRow.late_s,
                TelemetryWindowRow.resources,
            ).where(
                TelemetryWindowRow.device_id == device.id,
                TelemetryWindowRow.end_at >= r.start_at,
                TelemetryWindowRow.end_at <= r.end_at,
            )
        ).all()
        models = session.execute(
            select(
                TelemetryModelWindowRow.end_at,
                TelemetryModelWindowRow.model_version,
                TelemetryModelWindowRow.requests,
                TelemetryModelWindowRow.requests_by_rung,
            ).where(
                TelemetryModelWindowRow.device_id == device.id,
                TelemetryModelWindowRow.end_at >= r.start_at,
                TelemetryModelWindowRow.end_at <= r.end_at,
            )
        ).all()
        events = session.execute(
            select(
                TelemetryEventRow.at,
                TelemetryEventRow.kind,
                TelemetryEventRow.code,
                TelemetryEventRow.details,
            )
            .where(
                TelemetryEventRow.device_id == device.id,
                TelemetryEventRow.kind.in_(INSTALL_EVENT_KINDS),
                TelemetryEventRow.received_at >= r.start_at,
            )
            .order_by(TelemetryEventRow.at)
            .limit(MAX_EVENTS)
        ).all()
        last_success_at = state.last_success_at if state is not None else None
    start_s = r.start_at.timestamp() // r.bucket_s * r.bucket_s
    count = max(1, math.ceil((r.end_at.timestamp() - start_s) / r.bucket_s))

    def index(at: datetime) -> int:
        return min(count - 1, max(0, int((_utc(at).timestamp() - start_s) // r.bucket_s)))

    temperature: list[float | None] = [None] * count
    memory: list[float | None] = [None] * count
    late: list[float | None] = [None] * count
    for _start, end, _received, late_s, resources in windows:
        i = index(end)
        late[i] = max(late[i] or 0.0, late_s)
        res = resources or {}
        if res.get("cpu_temp_c") is not None:
            temperature[i] = max(temperature[i] or -math.inf, float(res["cpu_temp_c"]))
        total, available = res.get("mem_total_bytes"), res.get("mem_available_bytes")
        if total and available is not None:
            memory[i] = max(memory[i] or 0.0, 1 - available / total)
    versions: dict[str, list[float | None]] = {}
    rungs: dict[str, list[float | None]] = {}
    for end, version, requests, by_rung in models:
        i = index(end)
        series = versions.setdefault(version, [None] * count)
        series[i] = (series[i] or 0) + requests
        for rung, n in (by_rung or {}).items():
            line = rungs.setdefault(rung, [None] * count)
            line[i] = (line[i] or 0) + n
    spans = [(_utc(s), _utc(e)) for s, e, *_ in windows]
    buffered = [
        {"window_end": _utc(e).isoformat(), "received_at": _utc(rec).isoformat(), "late_s": late_s}
        for _s, e, rec, late_s, _res in sorted(windows, key=lambda w: w[1])
        if late_s >= BUFFERED_AFTER_S
    ]
    return {
        "device_id": device.id,
        "hardware_class": device.hardware_class,
        "range": r.to_wire(),
        "buckets": [
            datetime.fromtimestamp(start_s + i * r.bucket_s, tz=timezone.utc).isoformat()
            for i in range(count)
        ],
        "series": {
            "requests_by_version": dict(sorted(versions.items())),
            "requests_by_rung": dict(sorted(rungs.items())),
            "cpu_temp_c": {"temperature": temperature},
            "memory_pressure": {"memory used": memory},
            "late_s": {"lateness": late},
        },
        "install_steps": [
            {"at": _utc(at).isoformat(), "kind": kind, "code": code, "details": details or {}}
            for at, kind, code, details in events
        ],
        "silent": gaps(
            spans, start=r.start_at, end=r.end_at - timedelta(seconds=0), silent_after_s=SILENT_AFTER_S
        ),
        "buffered": buffered,
        "last_success_at": _utc(last_success_at).isoformat() if last_success_at else None,
        "empty": not windows,
    }
