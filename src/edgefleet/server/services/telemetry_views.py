"""Reading telemetry: exact fleet aggregates, one device's view, and the Prometheus exposition.

Aggregation is exact: counts add and latency histograms merge bucket by bucket (fixed buckets from
``protocol.telemetry``), so p50/p95/p99 of a fleet are read from the merged histogram, never averaged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import NotFoundError
from edgefleet.protocol.telemetry import merge_counts, quantile_from_buckets
from edgefleet.server.services.devices import DeviceStatus, StatusThresholds, device_status, status_clauses
from edgefleet.server.services.field_health import device_field, fleet_field
from edgefleet.server.services.telemetry import Freshness, merge_shadow_stats
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.telemetry import (
    TelemetryDeviceRow,
    TelemetryEventRow,
    TelemetryModelWindowRow,
    TelemetryRollupRow,
    TelemetryWindowRow,
)

__all__ = ["device_telemetry", "fleet_health", "prometheus_text", "shadow_to_wire"]

MAX_DETAIL_DEVICES = 100


# --- aggregation (pure) -------------------------------------------------------------------------------------


_AGG_COLUMNS = tuple(
    getattr(TelemetryModelWindowRow, name)
    for name in (
        "device_id",
        "hardware_class",
        "model_version",
        "requests",
        "errors",
        "errors_by_code",
        "requests_by_rung",
        "latency_buckets",
        "latency_sum_ms",
        "latency_max_ms",
        "shadow_compared",
        "shadow_agreement_sum",
        "shadow_stats",
        "health_passed",
        "health_failed",
        "health_failed_by_code",
        "input_faults",
        "input_faults_by_code",
    )
)
"""What ``_Agg.add`` and the grouping read: selected as columns, so rows stay plain tuples."""


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
    shadow_stats: dict[str, Any] = field(default_factory=dict)
    health_passed: int = 0
    health_failed: int = 0
    health_failed_by_code: dict[str, int] = field(default_factory=dict)
    input_faults: int = 0
    input_faults_by_code: dict[str, int] = field(default_factory=dict)
    devices: set[str] = field(default_factory=set)

    def add(self, row: Any) -> None:  # a row of _AGG_COLUMNS, a TelemetryModelWindowRow or a rollup
        self.requests += row.requests
        self.errors += row.errors
        merge_counts(self.errors_by_code, row.errors_by_code)
        merge_counts(self.requests_by_rung, row.requests_by_rung)
        merge_counts(self.buckets, {int(k): int(v) for k, v in row.latency_buckets.items()})
        self.latency_sum_ms += row.latency_sum_ms
        self.latency_max_ms = max(self.latency_max_ms, row.latency_max_ms)
        self.shadow_compared += row.shadow_compared
        self.shadow_agreement_sum += row.shadow_agreement_sum
        merge_shadow_stats(self.shadow_stats, row.shadow_stats or {})
        self.health_passed += row.health_passed
        self.health_failed += row.health_failed
        merge_counts(self.health_failed_by_code, row.health_failed_by_code)
        self.input_faults += row.input_faults or 0
        merge_counts(self.input_faults_by_code, row.input_faults_by_code or {})
        device_id = getattr(row, "device_id", None)  # rollups carry no device: counted from _reporters
        if device_id is not None:
            self.devices.add(device_id)

    def merge(self, other: _Agg) -> None:
        """Add another aggregate (exact: every field is a sum, a max or a set union)."""
        self.requests += other.requests
        self.errors += other.errors
        merge_counts(self.errors_by_code, other.errors_by_code)
        merge_counts(self.requests_by_rung, other.requests_by_rung)
        merge_counts(self.buckets, other.buckets)
        self.latency_sum_ms += other.latency_sum_ms
        self.latency_max_ms = max(self.latency_max_ms, other.latency_max_ms)
        self.shadow_compared += other.shadow_compared
        self.shadow_agreement_sum += other.shadow_agreement_sum
        merge_shadow_stats(self.shadow_stats, other.shadow_stats)
        self.health_passed += other.health_passed
        self.health_failed += other.health_failed
        merge_counts(self.health_failed_by_code, other.health_failed_by_code)
        self.input_faults += other.input_faults
        merge_counts(self.input_faults_by_code, other.input_faults_by_code)
        self.devices |= other.devices

    def to_wire(self, *, span_s: float) -> dict[str, Any]:
        latency_count = sum(self.buckets.values())
        return {
            "devices": len(self.devices),
            "requests": self.requests,
            "errors": self.errors,
            "request_rate_per_s": self.requests / span_s if span_s > 0 else None,
            "error_rate": self.errors / self.requests if self.requests else None,
            "errors_by_code": dict(sorted(self.errors_by_code.items())),
            "input_faults": self.input_faults,
            "input_faults_by_code": dict(sorted(self.input_faults_by_code.items())),
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
            "shadow": shadow_to_wire(self.shadow_compared, self.shadow_agreement_sum, self.shadow_stats),
            "health_checks": {
                "passed": self.health_passed,
                "failed": self.health_failed,
                "failed_by_code": dict(sorted(self.health_failed_by_code.items())),
            },
        }


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _histogram_to_wire(histogram: dict[str, Any]) -> dict[str, Any]:
    buckets = {int(k): int(v) for k, v in (histogram.get("buckets") or {}).items()}
    count = sum(buckets.values())
    return {
        "p50": quantile_from_buckets(buckets, 0.50),
        "p95": quantile_from_buckets(buckets, 0.95),
        "p99": quantile_from_buckets(buckets, 0.99),
        "mean": _ratio(float(histogram.get("sum_ms", 0.0)), count),
        "max": histogram.get("max_ms", 0.0) if count else None,
        "count": count,
        "buckets": {str(k): v for k, v in sorted(buckets.items())},
    }


def shadow_to_wire(compared: int, agreement_sum: float, stats: dict[str, Any]) -> dict[str, Any]:
    """Pure: the shadow figures of a group (a candidate version's comparisons with the active model).

    ``agreement`` is the mean per-comparison agreement (what rollout gates read); ``top1_agreement`` and
    ``tolerance_agreement`` are exact shares of rows; each figure is ``None`` when nothing fed it (e.g. only
    agents that sent the compared count and the agreement sum)."""
    active = _histogram_to_wire(stats.get("active_latency") or {})
    candidate = _histogram_to_wire(stats.get("candidate_latency") or {})
    diff_compared = int(stats.get("diff_compared", 0))
    errors = dict(sorted((stats.get("errors_by_code") or {}).items()))
    return {
        "compared": compared,
        "agreement": _ratio(agreement_sum, compared),
        "rows": int(stats.get("rows", 0)),
        "top1_agreement": _ratio(stats.get("top1_matches", 0), stats.get("top1_rows", 0)),
        "tolerance_agreement": _ratio(stats.get("tolerance_matches", 0), stats.get("tolerance_rows", 0)),
        "max_abs_diff": stats.get("abs_diff_max", 0.0) if diff_compared else None,
        "mean_abs_diff": _ratio(stats.get("abs_diff_mean_sum", 0.0), diff_compared),
        "non_finite": int(stats.get("non_finite", 0)),
        "skipped_budget": int(stats.get("skipped_budget", 0)),
        "errors": sum(errors.values()),
        "errors_by_code": errors,
        "active_latency_ms": active,
        "candidate_latency_ms": candidate,
        "candidate_over_active_p95": (
            candidate["p95"] / active["p95"] if candidate["p95"] is not None and active["p95"] else None
        ),
    }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _lag_s(at: datetime | None, now: datetime) -> float | None:
    return None if at is None else max(0.0, (now - at).total_seconds())


# --- queries ------------------------------------------------------------------------------------------------


def _model_rows(
    session: Session,
    since: datetime,
    now: datetime,
    hardware_class: str | None,
    model_version: str | None,
    device_ids: set[str],
) -> list[Any]:
    stmt = select(*_AGG_COLUMNS).where(
        TelemetryModelWindowRow.end_at >= since, TelemetryModelWindowRow.end_at <= now
    )
    if hardware_class is not None:
        stmt = stmt.where(TelemetryModelWindowRow.hardware_class == hardware_class)
    if model_version is not None:
        stmt = stmt.where(TelemetryModelWindowRow.model_version == model_version)
    return [r for r in session.execute(stmt) if r.device_id in device_ids]


def _rollup_rows(
    session: Session, since: datetime, now: datetime, hardware_class: str | None, model_version: str | None
) -> list[TelemetryRollupRow]:
    """Rollups of the minutes from the one holding ``since`` to ``now`` (minute resolution)."""
    stmt = select(TelemetryRollupRow).where(
        TelemetryRollupRow.minute_at >= since.replace(second=0, microsecond=0),
        TelemetryRollupRow.minute_at <= now,
    )
    if hardware_class is not None:
        stmt = stmt.where(TelemetryRollupRow.hardware_class == hardware_class)
    if model_version is not None:
        stmt = stmt.where(TelemetryRollupRow.model_version == model_version)
    return list(session.execute(stmt).scalars())


def _reporters(
    session: Session, since: datetime, now: datetime, hardware_class: str | None, model_version: str | None
) -> list[Any]:
    """Distinct (device, version, class, site) that reported in the period: the groups' device counts."""
    stmt = (
        select(
            TelemetryModelWindowRow.device_id,
            TelemetryModelWindowRow.model_version,
            TelemetryModelWindowRow.hardware_class,
            TelemetryModelWindowRow.site,
        )
        .where(TelemetryModelWindowRow.end_at >= since, TelemetryModelWindowRow.end_at <= now)
        .distinct()
    )
    if hardware_class is not None:
        stmt = stmt.where(TelemetryModelWindowRow.hardware_class == hardware_class)
    if model_version is not None:
        stmt = stmt.where(TelemetryModelWindowRow.model_version == model_version)
    return list(session.execute(stmt))


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
    # Each model row is added once, to its (version, class, site) cell; groupings merge the (few) cells.
    cells: dict[tuple[str, str, str | None], _Agg] = {}

    def cell_of(version: str, hw_class: str, site: str | None) -> _Agg:
        cell = cells.get((version, hw_class, site))
        if cell is None:
            cell = cells[(version, hw_class, site)] = _Agg()
        return cell

    degraded: dict[str, float] = {}
    max_late_s = 0.0
    devices: list[Any] = []
    states: dict[str, Any] = {}
    with session.begin():
        if labels:
            # A label selection: the selected devices' own windows (plain column tuples, not ORM objects).
            dev_stmt = select(DeviceRow.id, DeviceRow.labels, DeviceRow.last_seen_at, DeviceRow.revoked_at)
            if hardware_class is not None:
                dev_stmt = dev_stmt.where(DeviceRow.hardware_class == hardware_class)
            devices = [
                d for d in session.execute(dev_stmt) if all(d.labels.get(k) == v for k, v in labels.items())
            ]
            device_ids = {d.id for d in devices}
            site_of = {d.id: d.labels.get("site") for d in devices}
            for row in _model_rows(session, since, now, hardware_class, model_version, device_ids):
                cell_of(row.model_version, row.hardware_class, site_of.get(row.device_id)).add(row)
            win_stmt = select(
                TelemetryWindowRow.device_id, TelemetryWindowRow.degraded_s, TelemetryWindowRow.late_s
            ).where(TelemetryWindowRow.end_at >= since, TelemetryWindowRow.end_at <= now)
            if hardware_class is not None:
                win_stmt = win_stmt.where(TelemetryWindowRow.hardware_class == hardware_class)
            for w in session.execute(win_stmt):
                if w.device_id in device_ids:
                    if model_version is None:  # degraded time is per device, not per model version
                        merge_counts(degraded, w.degraded_s or {})
                    max_late_s = max(max_late_s, float(w.late_s))
            state_stmt = select(
                TelemetryDeviceRow.device_id,
                TelemetryDeviceRow.last_window_end_at,
                TelemetryDeviceRow.dropped,
            )
            states = {s.device_id: s for s in session.execute(state_stmt) if s.device_id in device_ids}
        else:
            # The whole fleet or a class: per-minute rollups (window-level figures on model_version ""),
            # and who reported from the model windows' (device, version, class, site).
            for row in _rollup_rows(session, since, now, hardware_class, None):
                if row.model_version == "":
                    if model_version is None:
                        merge_counts(degraded, row.degraded_s or {})
                    max_late_s = max(max_late_s, float(row.max_late_s))
                elif model_version is None or row.model_version == model_version:
                    cell_of(row.model_version, row.hardware_class, row.site or None).add(row)
            for device_id, version, hw_class, site in _reporters(
                session, since, now, hardware_class, model_version
            ):
                cell_of(version, hw_class, site or None).devices.add(device_id)

    total = _Agg()
    by_version: dict[str, _Agg] = {}
    by_class: dict[str, _Agg] = {}
    by_site: dict[str, _Agg] = {}
    for (version, hw_class, site), cell in cells.items():
        total.merge(cell)
        by_version.setdefault(version, _Agg()).merge(cell)
        by_class.setdefault(hw_class, _Agg()).merge(cell)
        if site is not None:
            by_site.setdefault(site, _Agg()).merge(cell)

    if labels:
        status_counts, stale, newest, dropped = _device_summary(devices, states, now, freshness, thresholds)
    else:  # the whole fleet or a class: counted in SQL (no per-device datetimes to parse)
        with session.begin():
            status_counts, stale, newest, dropped = _device_summary_sql(
                session, hardware_class, now, freshness, thresholds
            )
    with session.begin():
        field_signals = fleet_field(session, now=now, hardware_class=hardware_class)

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
            "total": sum(status_counts.values()),
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
        "field": field_signals,
    }


def _device_summary(
    devices: list[Any],
    states: dict[str, Any],
    now: datetime,
    freshness: Freshness,
    thresholds: StatusThresholds,
) -> tuple[dict[str, int], list[str], datetime | None, dict[str, int]]:
    """Status counts, devices with stale data, the newest window and the queues' drops, over ``devices``."""
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
    return status_counts, stale, newest, dropped


def _device_summary_sql(
    session: Session,
    hardware_class: str | None,
    now: datetime,
    freshness: Freshness,
    thresholds: StatusThresholds,
) -> tuple[dict[str, int], list[str], datetime | None, dict[str, int]]:
    """The same as ``_device_summary`` for a whole class or fleet, computed by the database."""
    in_scope = [DeviceRow.hardware_class == hardware_class] if hardware_class is not None else []
    status_counts: dict[str, int] = {}
    for status in DeviceStatus:
        where = [*in_scope, *status_clauses(status, now=now, thresholds=thresholds)]
        n = int(session.execute(select(func.count()).select_from(DeviceRow).where(*where)).scalar_one())
        if n:
            status_counts[status.value] = n
    joined = select(DeviceRow.id).outerjoin(TelemetryDeviceRow, TelemetryDeviceRow.device_id == DeviceRow.id)
    stale_before = now - timedelta(seconds=freshness.stale_after_s)
    stale = list(
        session.execute(
            joined.where(
                *in_scope,
                DeviceRow.revoked_at.is_(None),
                or_(
                    TelemetryDeviceRow.last_window_end_at.is_(None),
                    TelemetryDeviceRow.last_window_end_at < stale_before,
                ),
            )
        ).scalars()
    )
    newest = session.execute(
        select(func.max(TelemetryDeviceRow.last_window_end_at))
        .join(DeviceRow, TelemetryDeviceRow.device_id == DeviceRow.id)
        .where(*in_scope)
    ).scalar_one_or_none()
    if newest is not None and newest.tzinfo is None:  # an aggregate skips the column type's conversion
        newest = newest.replace(tzinfo=timezone.utc)
    dropped: dict[str, int] = {}
    for counts in session.execute(
        select(TelemetryDeviceRow.dropped)
        .join(DeviceRow, TelemetryDeviceRow.device_id == DeviceRow.id)
        .where(*in_scope)
    ).scalars():
        merge_counts(dropped, counts or {})
    return status_counts, stale, newest, dropped


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
        field_status = device_field(session, device.id, now=now)
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
    shadowed = [(lab, g) for lab, g in versions if g["shadow"]["compared"]]
    metric(
        "edgefleet_fleet_shadow_agreement",
        "gauge",
        "Mean agreement of a shadow candidate with the active model over the window.",
        [(lab, g["shadow"]["agreement"]) for lab, g in shadowed],
    )
    metric(
        "edgefleet_fleet_shadow_comparisons",
        "gauge",
        "Shadow comparisons of a candidate version over the window.",
        [(lab, float(g["shadow"]["compared"])) for lab, g in shadowed],
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
        "edgefleet_fleet_input_faults",
        "gauge",
        "Requests refused for their input (NaN, wrong shape, out of range) over the window: not errors.",
        [(lab, float(g["input_faults"])) for lab, g in both],
    )
    field_signals = health.get("field") or {}
    metric(
        "edgefleet_devices_unhealthy",
        "gauge",
        "Devices with requests arriving but no successful inference for the configured time.",
        [({}, float(field_signals.get("unhealthy", 0)))],
    )
    metric(
        "edgefleet_devices_input_fault_surge",
        "gauge",
        "Devices whose input faults rose suddenly against their own day before (failing sensors).",
        [({}, float(field_signals.get("input_fault_surge", 0)))],
    )
    metric(
        "edgefleet_telemetry_dropped_records_total",
        "counter",
        "Records devices dropped under queue pressure.",
        [({"kind": k}, float(n)) for k, n in health["dropped"].items()],
    )
    return "\n".join(lines) + "\n"
