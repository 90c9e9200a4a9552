"""Telemetry use cases: idempotent ingest, fleet health, one device's telemetry, retention, Prometheus text.

Ingest is idempotent on ``(device, boot_id, sequence)``: the records already stored are acknowledged again
and not counted again, so a device whose acknowledgement was lost can simply resend. Identity is the
authenticated device (the request signature); a batch naming another device is refused.

Time: windows are stored on the server's clock. A batch carries ``sent_at`` (device clock); the difference
to the server's receive time is the device's clock offset, applied to every window of the batch (so a device
whose clock is off by hours still lands in the right place, as long as its clock did not jump between the
window and the upload). Ordering never uses wall time: records are keyed and listed by sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import ConflictError, NotFoundError, PermissionDeniedError
from edgefleet.protocol.telemetry import TelemetryBatch, TelemetryRecord, merge_counts, quantile_from_buckets
from edgefleet.server.services.devices import StatusThresholds, device_status
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.telemetry import (
    TelemetryDeviceRow,
    TelemetryEventRow,
    TelemetryModelWindowRow,
    TelemetryWindowRow,
)

__all__ = [
    "Freshness",
    "IngestResult",
    "device_telemetry",
    "fleet_health",
    "ingest_batch",
    "prometheus_text",
    "prune_telemetry",
]

MAX_DETAIL_DEVICES = 100


@dataclass(frozen=True)
class Freshness:
    """When a device's telemetry counts as stale: its newest window ended more than this long ago."""

    stale_after_s: float = 300.0
    retention_s: float = 30 * 86400.0


@dataclass
class IngestResult:
    acked: dict[str, list[int]] = field(default_factory=dict)
    accepted: int = 0
    duplicates: int = 0
    expired: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {
            "acked": self.acked,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "expired": self.expired,
        }


# --- ingest -----------------------------------------------------------------------------------------------


def ingest_batch(
    session: Session, device: DeviceRow, batch: TelemetryBatch, *, now: datetime, freshness: Freshness
) -> IngestResult:
    """Store the new records of ``batch`` for the authenticated ``device``; acknowledge all of them."""
    if batch.device_id != device.id:
        raise PermissionDeniedError(
            "a batch may only carry the sending device's own telemetry",
            code="device_mismatch",
            expected=device.id,
            got=batch.device_id[:64],
        )
    for attempt in range(2):
        try:
            return _ingest(session, device, batch, now=now, freshness=freshness)
        except IntegrityError as exc:  # the same records arrived concurrently; the retry sees them stored
            session.rollback()
            if attempt == 1:
                raise ConflictError("telemetry ingest raced twice", code="telemetry_conflict") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _ingest(
    session: Session, device: DeviceRow, batch: TelemetryBatch, *, now: datetime, freshness: Freshness
) -> IngestResult:
    offset = now - batch.sent_at
    oldest_kept = now - timedelta(seconds=freshness.retention_s)
    result = IngestResult()
    keys = list(dict.fromkeys(batch.keys()))
    with session.begin():
        stored = _stored_keys(session, device.id, keys)
        new_windows: list[tuple[TelemetryWindowRow, TelemetryRecord]] = []
        newest_end: datetime | None = None
        seen: set[tuple[str, int]] = set()
        for record in batch.records:
            key = (record.boot_id, record.sequence)
            result.acked.setdefault(record.boot_id, []).append(record.sequence)
            if key in stored or key in seen:
                result.duplicates += 1
                continue
            seen.add(key)
            if record.window is not None:
                window = record.window
                end_at = min(window.end_at + offset, now)
                start_at = min(window.start_at + offset, end_at)
                if end_at < oldest_kept:
                    result.expired += 1
                    continue
                row = TelemetryWindowRow(
                    device_id=device.id,
                    hardware_class=device.hardware_class,
                    boot_id=record.boot_id,
                    sequence=record.sequence,
                    start_at=start_at,
                    end_at=end_at,
                    device_end_at=window.end_at,
                    received_at=now,
                    late_s=max(0.0, (now - end_at).total_seconds()),
                    degraded_s=dict(window.degraded_s),
                    resources=window.resources.model_dump(mode="json") if window.resources else None,
                )
                session.add(row)
                new_windows.append((row, record))
                newest_end = end_at if newest_end is None else max(newest_end, end_at)
            elif record.event is not None:
                event = record.event
                session.add(
                    TelemetryEventRow(
                        device_id=device.id,
                        boot_id=record.boot_id,
                        sequence=record.sequence,
                        at=min(event.at + offset, now),
                        received_at=now,
                        kind=event.kind,
                        code=event.code,
                        details=dict(event.details),
                    )
                )
            result.accepted += 1
        session.flush()  # window ids
        for row, record in new_windows:
            assert record.window is not None
            for model in record.window.models:
                session.add(
                    TelemetryModelWindowRow(
                        window_id=row.id,
                        device_id=device.id,
                        hardware_class=device.hardware_class,
                        model_version=model.model_version,
                        end_at=row.end_at,
                        requests=model.requests,
                        errors=model.errors,
                        errors_by_code=dict(model.errors_by_code),
                        requests_by_rung=dict(model.requests_by_rung),
                        latency_buckets={str(k): v for k, v in model.latency.buckets.items()},
                        latency_sum_ms=model.latency.sum_ms,
                        latency_max_ms=model.latency.max_ms,
                        shadow_compared=model.shadow.compared,
                        shadow_agreement_sum=model.shadow.agreement_sum,
                        health_passed=model.health_checks.passed,
                        health_failed=model.health_checks.failed,
                        health_failed_by_code=dict(model.health_checks.failed_by_code),
                    )
                )
        _update_device_state(session, device.id, batch, result, newest_end=newest_end, now=now)
    return result


def _stored_keys(session: Session, device_id: str, keys: list[tuple[str, int]]) -> set[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    if not keys:
        return out
    for table in (TelemetryWindowRow, TelemetryEventRow):
        rows = session.execute(
            select(table.boot_id, table.sequence).where(
                table.device_id == device_id, tuple_(table.boot_id, table.sequence).in_(keys)
            )
        )
        out.update((str(b), int(s)) for b, s in rows)
    return out


def _update_device_state(
    session: Session,
    device_id: str,
    batch: TelemetryBatch,
    result: IngestResult,
    *,
    newest_end: datetime | None,
    now: datetime,
) -> None:
    state = session.get(TelemetryDeviceRow, device_id, with_for_update=True)
    if state is None:
        state = TelemetryDeviceRow(
            device_id=device_id,
            dropped={},
            queue_bytes=0,
            queue_records=0,
            last_batch_at=now,
            last_window_end_at=None,
            records_accepted=0,
            records_duplicate=0,
        )
        session.add(state)
    dropped = dict(state.dropped or {})
    for name, count in batch.dropped.items():  # cumulative on the device: keep the largest seen
        dropped[name] = max(int(dropped.get(name, 0)), count)
    state.dropped = dropped
    state.queue_bytes = batch.queue_bytes
    state.queue_records = batch.queue_records
    state.last_batch_at = now
    if newest_end is not None and (state.last_window_end_at is None or newest_end > state.last_window_end_at):
        state.last_window_end_at = newest_end
    state.records_accepted = (state.records_accepted or 0) + result.accepted
    state.records_duplicate = (state.records_duplicate or 0) + result.duplicates


# --- aggregation (pure) -------------------------------------------------------------------------------------


@dataclass
class _Agg:
    """An exact sum of model windows: counts add, histogram buckets add."""

    requests: int = 0
    errors: int = 0
    errors_by_code: dict[str, int] = field(default_factory=dict)
    requests_by_rung: dict[str, int] = field(default_factory=dict)
    buckets: dict[int, int] = field(default_factory=dict)
    latency_sum_ms: float = 0.0
    latency_max_ms: float = 0.0
    shadow_compared: int = 0
    shadow_agreement_sum: float = 0.0
    health_passed: int = 0
    health_failed: int = 0
    health_failed_by_code: dict[str, int] = field(default_factory=dict)
    devices: set[str] = field(default_factory=set)

    def add(self, row: TelemetryModelWindowRow) -> None:
        self.requests += row.requests
        self.errors += row.errors
        merge_counts(self.errors_by_code, row.errors_by_code)
        merge_counts(self.requests_by_rung, row.requests_by_rung)
        merge_counts(self.buckets, {int(k): int(v) for k, v in row.latency_buckets.items()})
        self.latency_sum_ms += row.latency_sum_ms
        self.latency_max_ms = max(self.latency_max_ms, row.latency_max_ms)
        self.shadow_compared += row.shadow_compared
        self.shadow_agreement_sum += row.shadow_agreement_sum
        self.health_passed += row.health_passed
        self.health_failed += row.health_failed
        merge_counts(self.health_failed_by_code, row.health_failed_by_code)
        self.devices.add(row.device_id)

    def to_wire(self, *, span_s: float) -> dict[str, Any]:
        latency_count = sum(self.buckets.values())
        return {
            "devices": len(self.devices),
            "requests": self.requests,
            "errors": self.errors,
            "request_rate_per_s": self.requests / span_s if span_s > 0 else None,
            "error_rate": self.errors / self.requests if self.requests else None,
            "errors_by_code": dict(sorted(self.errors_by_code.items())),
            "requests_by_rung": dict(sorted(self.requests_by_rung.items())),
            "latency_ms": {
                "p50": quantile_from_buckets(self.buckets, 0.50),
                "p95": quantile_from_buckets(self.buckets, 0.95),
                "p99": quantile_from_buckets(self.buckets, 0.99),
                "mean": self.latency_sum_ms / latency_count if latency_count else None,
                "max": self.latency_max_ms if latency_count else None,
                "count": latency_count,
                "buckets": {str(k): v for k, v in sorted(self.buckets.items())},
            },
            "shadow": {
                "compared": self.shadow_compared,
                "agreement": self.shadow_agreement_sum / self.shadow_compared
                if self.shadow_compared
                else None,
            },
            "health_checks": {
                "passed": self.health_passed,
                "failed": self.health_failed,
                "failed_by_code": dict(sorted(self.health_failed_by_code.items())),
            },
        }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _lag_s(at: datetime | None, now: datetime) -> float | None:
    return None if at is None else max(0.0, (now - at).total_seconds())


# --- queries ------------------------------------------------------------------------------------------------


def fleet_health(
    session: Session,
    *,
    now: datetime,
    since: datetime,
    hardware_class: str | None = None,
    model_version: str | None = None,
    labels: dict[str, str] | None = None,
    freshness: Freshness,
    thresholds: StatusThresholds,
) -> dict[str, Any]:
    """Exact fleet aggregates of windows ending in ``[since, now]``, with how fresh the data is."""
    span_s = max(0.0, (now - since).total_seconds())
    with session.begin():
        dev_stmt = select(DeviceRow)
        if hardware_class is not None:
            dev_stmt = dev_stmt.where(DeviceRow.hardware_class == hardware_class)
        devices = [
            d
            for d in session.execute(dev_stmt).scalars()
            if all(d.labels.get(k) == v for k, v in (labels or {}).items())
        ]
        device_ids = {d.id for d in devices}
        stmt = select(TelemetryModelWindowRow).where(
            TelemetryModelWindowRow.end_at >= since, TelemetryModelWindowRow.end_at <= now
        )
        if hardware_class is not None:
            stmt = stmt.where(TelemetryModelWindowRow.hardware_class == hardware_class)
        if model_version is not None:
            stmt = stmt.where(TelemetryModelWindowRow.model_version == model_version)
        rows = [r for r in session.execute(stmt).scalars() if r.device_id in device_ids]
        win_stmt = select(
            TelemetryWindowRow.device_id,
            TelemetryWindowRow.hardware_class,
            TelemetryWindowRow.degraded_s,
            TelemetryWindowRow.late_s,
        ).where(TelemetryWindowRow.end_at >= since, TelemetryWindowRow.end_at <= now)
        if hardware_class is not None:
            win_stmt = win_stmt.where(TelemetryWindowRow.hardware_class == hardware_class)
        windows = [w for w in session.execute(win_stmt) if w.device_id in device_ids]
        states = (
            {
                s.device_id: s
                for s in session.execute(
                    select(TelemetryDeviceRow).where(TelemetryDeviceRow.device_id.in_(device_ids))
                ).scalars()
            }
            if device_ids
            else {}
        )

    total = _Agg()
    by_version: dict[str, _Agg] = {}
    by_class: dict[str, _Agg] = {}
    by_site: dict[str, _Agg] = {}
    site_of = {d.id: d.labels.get("site") for d in devices}
    for row in rows:
        total.add(row)
        by_version.setdefault(row.model_version, _Agg()).add(row)
        by_class.setdefault(row.hardware_class, _Agg()).add(row)
        site = site_of.get(row.device_id)
        if site is not None:
            by_site.setdefault(site, _Agg()).add(row)
    degraded: dict[str, float] = {}
    max_late_s = 0.0
    if model_version is None:  # degraded time is per device, not per model version
        for w in windows:
            merge_counts(degraded, w.degraded_s or {})
    for w in windows:
        max_late_s = max(max_late_s, float(w.late_s))

    stale: list[str] = []
    newest: datetime | None = None
    status_counts: dict[str, int] = {}
    for d in devices:
        status = device_status(
            last_seen_at=d.last_seen_at, revoked=d.revoked_at is not None, now=now, thresholds=thresholds
        ).value
        status_counts[status] = status_counts.get(status, 0) + 1
        state = states.get(d.id)
        end = state.last_window_end_at if state else None
        if end is not None:
            newest = end if newest is None else max(newest, end)
        if d.revoked_at is None and (end is None or (now - end).total_seconds() > freshness.stale_after_s):
            stale.append(d.id)
    dropped: dict[str, int] = {}
    for state in states.values():
        merge_counts(dropped, state.dropped or {})

    def groups(aggs: dict[str, _Agg], key: str) -> list[dict[str, Any]]:
        return [{key: name, **agg.to_wire(span_s=span_s)} for name, agg in sorted(aggs.items())]

    return {
        "since": since.isoformat(),
        "until": now.isoformat(),
        "filters": {"hardware_class": hardware_class, "model_version": model_version, "labels": labels or {}},
        "totals": {**total.to_wire(span_s=span_s), "degraded_s": dict(sorted(degraded.items()))},
        "by_model_version": groups(by_version, "model_version"),
        "by_hardware_class": groups(by_class, "hardware_class"),
        "by_site": groups(by_site, "site"),
        "devices": {
            "total": len(devices),
            "reporting": len(total.devices),
            "by_status": dict(sorted(status_counts.items())),
            "stale_data": len(stale),
            "stale_data_ids": sorted(stale)[:MAX_DETAIL_DEVICES],
        },
        "data": {
            "newest_window_end_at": _iso(newest),
            "lag_s": _lag_s(newest, now),
            "max_late_s": max_late_s,
            "stale_after_s": freshness.stale_after_s,
        },
        "dropped": dict(sorted(dropped.items())),
    }


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
        total = _Agg()
        by_version: dict[str, _Agg] = {}
        for row in rows:
            total.add(row)
            by_version.setdefault(row.model_version, _Agg()).add(row)
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
    span_s = max(0.0, (now - since).total_seconds())
    last_end = state.last_window_end_at if state else None
    lag = _lag_s(last_end, now)
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
        "last_seen_at": _iso(device.last_seen_at),
        "data": {
            "last_window_end_at": _iso(last_end),
            "lag_s": lag,
            "stale": lag is None or lag > freshness.stale_after_s,
            "last_batch_at": _iso(state.last_batch_at if state else None),
        },
        "queue": {
            "bytes": state.queue_bytes if state else None,
            "records": state.queue_records if state else None,
            "dropped": dict(sorted((state.dropped or {}).items())) if state else {},
            "records_accepted": state.records_accepted if state else 0,
            "records_duplicate": state.records_duplicate if state else 0,
        },
        "since": since.isoformat(),
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
            }
            for m in sorted(models, key=lambda m: m.model_version)
        ],
    }


# --- retention and export -------------------------------------------------------------------------------


def prune_telemetry(session: Session, *, now: datetime, freshness: Freshness) -> int:
    """Delete windows and events older than the retention. Returns the number of rows deleted."""
    cutoff = now - timedelta(seconds=freshness.retention_s)
    with session.begin():
        n = session.execute(delete(TelemetryModelWindowRow).where(TelemetryModelWindowRow.end_at < cutoff))
        w = session.execute(delete(TelemetryWindowRow).where(TelemetryWindowRow.end_at < cutoff))
        e = session.execute(delete(TelemetryEventRow).where(TelemetryEventRow.received_at < cutoff))
    return int((n.rowcount or 0) + (w.rowcount or 0) + (e.rowcount or 0))


def _prom_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(health: dict[str, Any]) -> str:
    """Prometheus text exposition (0.0.4) of a ``fleet_health`` answer, one series per class and version."""
    lines: list[str] = []

    def metric(
        name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float | None]]
    ) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if value is None or not math.isfinite(value):
                continue
            text = ",".join(f'{k}="{_prom_escape(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")

    groups = [({"hardware_class": g["hardware_class"]}, g) for g in health["by_hardware_class"]]
    versions = [({"model_version": g["model_version"]}, g) for g in health["by_model_version"]]
    both = groups + versions
    metric(
        "edgefleet_fleet_request_rate",
        "gauge",
        "Inference requests per second over the window.",
        [(lab, g["request_rate_per_s"]) for lab, g in both],
    )
    metric(
        "edgefleet_fleet_error_ratio",
        "gauge",
        "Failed requests / requests over the window.",
        [(lab, g["error_rate"]) for lab, g in both],
    )
    metric(
        "edgefleet_fleet_latency_ms",
        "gauge",
        "Latency quantiles from merged device histograms.",
        [
            ({**lab, "quantile": q}, g["latency_ms"][f"p{int(float(q) * 100)}"])
            for lab, g in both
            for q in ("0.5", "0.95", "0.99")
        ],
    )
    metric(
        "edgefleet_fleet_reporting_devices",
        "gauge",
        "Devices with telemetry in the window.",
        [(lab, float(g["devices"])) for lab, g in both],
    )
    metric(
        "edgefleet_devices",
        "gauge",
        "Enrolled devices by connection status.",
        [({"status": s}, float(n)) for s, n in health["devices"]["by_status"].items()],
    )
    metric(
        "edgefleet_devices_stale_telemetry",
        "gauge",
        "Devices whose newest telemetry is stale.",
        [({}, float(health["devices"]["stale_data"]))],
    )
    metric(
        "edgefleet_telemetry_lag_seconds",
        "gauge",
        "Age of the newest telemetry window in the fleet.",
        [({}, health["data"]["lag_s"])],
    )
    metric(
        "edgefleet_degraded_seconds",
        "gauge",
        "Seconds served on each degraded rung over the window.",
        [({"rung": r}, float(s)) for r, s in health["totals"]["degraded_s"].items()],
    )
    metric(
        "edgefleet_telemetry_dropped_records_total",
        "counter",
        "Records devices dropped under queue pressure.",
        [({"kind": k}, float(n)) for k, n in health["dropped"].items()],
    )
    return "\n".join(lines) + "\n"
