"""One device's telemetry: totals since a time, its newest windows and events, and how fresh its data is."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import NotFoundError
from edgefleet.protocol.telemetry import quantile_from_buckets
from edgefleet.server.services.devices import StatusThresholds, device_status
from edgefleet.server.services.field_health import device_field
from edgefleet.server.services.telemetry import Freshness
from edgefleet.server.services.telemetry_sums import TelemetrySum, iso_or_none, lag_s, shadow_to_wire
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.telemetry import (
    TelemetryDeviceRow,
    TelemetryEventRow,
    TelemetryModelWindowRow,
    TelemetryWindowRow,
)

__all__ = ["device_telemetry"]


def device_telemetry(
    session: Session,
    device_id: str,
    *,
    now: datetime,
    since: datetime,
    limit: int,
    freshness: Freshness,
    thresholds: StatusThresholds,
) -> dict[str, Any]:
    """One device: totals since ``since``, its newest windows and events (by sequence), data freshness."""
    with session.begin():
        device = session.get(DeviceRow, device_id[:32])
        if device is None:
            raise NotFoundError("no such device", code="device_not_found", got=device_id[:80])
        state = session.get(TelemetryDeviceRow, device.id)
        rows = session.execute(
            select(TelemetryModelWindowRow).where(
                TelemetryModelWindowRow.device_id == device.id,
                TelemetryModelWindowRow.end_at >= since,
                TelemetryModelWindowRow.end_at <= now,
            )
        ).scalars()
        total = TelemetrySum()
        by_version: dict[str, TelemetrySum] = {}
        for row in rows:
            total.add(row)
            by_version.setdefault(row.model_version, TelemetrySum()).add(row)
        windows = list(
            session.execute(
                select(TelemetryWindowRow)
                .where(TelemetryWindowRow.device_id == device.id)
                .order_by(TelemetryWindowRow.sequence.desc(), TelemetryWindowRow.id.desc())
                .limit(limit)
            ).scalars()
        )
        per_window: dict[int, list[TelemetryModelWindowRow]] = {}
        if windows:
            for m in session.execute(
                select(TelemetryModelWindowRow).where(
                    TelemetryModelWindowRow.window_id.in_([w.id for w in windows])
                )
            ).scalars():
                per_window.setdefault(m.window_id, []).append(m)
        events = list(
            session.execute(
                select(TelemetryEventRow)
                .where(TelemetryEventRow.device_id == device.id)
                .order_by(TelemetryEventRow.sequence.desc(), TelemetryEventRow.id.desc())
                .limit(limit)
            ).scalars()
        )
        field_status = device_field(session, device.id, now=now)
    span_s = max(0.0, (now - since).total_seconds())
    last_end = state.last_window_end_at if state else None
    lag = lag_s(last_end, now)
    return {
        "device_id": device.id,
        "hardware_class": device.hardware_class,
        "labels": device.labels,
        "status": device_status(
            last_seen_at=device.last_seen_at,
            revoked=device.revoked_at is not None,
            now=now,
            thresholds=thresholds,
        ).value,
        "last_seen_at": iso_or_none(device.last_seen_at),
        "data": {
            "last_window_end_at": iso_or_none(last_end),
            "lag_s": lag,
            "stale": lag is None or lag > freshness.stale_after_s,
            "last_batch_at": iso_or_none(state.last_batch_at if state else None),
        },
        "queue": {
            "bytes": state.queue_bytes if state else None,
            "records": state.queue_records if state else None,
            "dropped": dict(sorted((state.dropped or {}).items())) if state else {},
            "records_accepted": state.records_accepted if state else 0,
            "records_duplicate": state.records_duplicate if state else 0,
        },
        "since": since.isoformat(),
        "field": field_status,
        "totals": total.to_wire(span_s=span_s),
        "by_model_version": [
            {"model_version": name, **agg.to_wire(span_s=span_s)} for name, agg in sorted(by_version.items())
        ],
        "windows": [_window_to_wire(w, per_window.get(w.id, []), freshness=freshness) for w in windows],
        "events": [
            {
                "boot_id": e.boot_id,
                "sequence": e.sequence,
                "at": e.at.isoformat(),
                "received_at": e.received_at.isoformat(),
                "kind": e.kind,
                "code": e.code,
                "details": e.details,
            }
            for e in events
        ],
    }


def _window_to_wire(
    w: TelemetryWindowRow, models: list[TelemetryModelWindowRow], *, freshness: Freshness
) -> dict[str, Any]:
    return {
        "boot_id": w.boot_id,
        "sequence": w.sequence,
        "start_at": w.start_at.isoformat(),
        "end_at": w.end_at.isoformat(),
        "device_end_at": w.device_end_at.isoformat(),
        "received_at": w.received_at.isoformat(),
        "late_s": w.late_s,
        "late": w.late_s > freshness.stale_after_s,
        "degraded_s": w.degraded_s,
        "resources": w.resources,
        "models": [
            {
                "model_version": m.model_version,
                "requests": m.requests,
                "errors": m.errors,
                "errors_by_code": m.errors_by_code,
                "requests_by_rung": m.requests_by_rung,
                "latency_p95_ms": quantile_from_buckets(
                    {int(k): v for k, v in m.latency_buckets.items()}, 0.95
                ),
                "shadow": shadow_to_wire(m.shadow_compared, m.shadow_agreement_sum, m.shadow_stats or {}),
            }
            for m in sorted(models, key=lambda m: m.model_version)
        ],
    }
