"""Fleet health: exact aggregates of the windows of a fleet, a class, a model version or a label selection,
with device counts by status and how fresh the data is.

The whole fleet or a class reads the per-minute rollups and, for its device counts, when each device last
reported each version (``telemetry_reporters``); a label selection reads the selected devices' own windows.
Sums are exact (``telemetry_sums``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, func, or_, select
from sqlalchemy.orm import Session

from edgefleet.protocol.telemetry import merge_counts
from edgefleet.server.services.devices import DeviceStatus, StatusThresholds, device_status, status_clauses
from edgefleet.server.services.field_health import fleet_field
from edgefleet.server.services.telemetry import Freshness
from edgefleet.server.services.telemetry_reporters import reporters_in
from edgefleet.server.services.telemetry_sums import SUM_COLUMNS, TelemetrySum, iso_or_none, lag_s
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.telemetry import (
    TelemetryDeviceRow,
    TelemetryModelWindowRow,
    TelemetryRollupRow,
    TelemetryWindowRow,
)

__all__ = ["MAX_DETAIL_DEVICES", "fleet_health"]

MAX_DETAIL_DEVICES = 100


def _model_rows(
    session: Session,
    since: datetime,
    now: datetime,
    hardware_class: str | None,
    model_version: str | None,
    device_ids: set[str],
) -> list[Any]:
    stmt = select(*SUM_COLUMNS).where(
        TelemetryModelWindowRow.end_at >= since, TelemetryModelWindowRow.end_at <= now
    )
    if hardware_class is not None:
        stmt = stmt.where(TelemetryModelWindowRow.hardware_class == hardware_class)
    if model_version is not None:
        stmt = stmt.where(TelemetryModelWindowRow.model_version == model_version)
    return [r for r in session.execute(stmt) if r.device_id in device_ids]


def _rollup_rows(
    session: Session,
    since: datetime,
    now: datetime,
    hardware_class: str | None,
    model_version: str | None,
    *,
    window_level: bool,
) -> list[Any]:
    """Rollups of the minutes from the one holding ``since`` to ``now`` (minute resolution), as plain rows
    (no ORM objects: an hour of 40 sites is thousands of rows). ``window_level``: the rows of model_version
    ``""`` and only their degraded time and lateness; else the model versions' rows without those (each
    JSON column read is a decode per row, the bulk of the time)."""
    table = TelemetryRollupRow.__table__
    skip = {"minute_at", "degraded_s", "max_late_s"}
    columns = (
        [table.c.degraded_s, table.c.max_late_s]
        if window_level
        else [c for c in table.c if c.name not in skip]
    )
    stmt = select(*columns).where(
        table.c.minute_at >= since.replace(second=0, microsecond=0),
        table.c.minute_at <= now,
        table.c.model_version == "" if window_level else table.c.model_version != "",
    )
    if hardware_class is not None:
        stmt = stmt.where(table.c.hardware_class == hardware_class)
    if model_version is not None and not window_level:
        stmt = stmt.where(table.c.model_version == model_version)
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
    cells: dict[tuple[str, str, str | None], TelemetrySum] = {}

    def cell_of(version: str, hw_class: str, site: str | None) -> TelemetrySum:
        cell = cells.get((version, hw_class, site))
        if cell is None:
            cell = cells[(version, hw_class, site)] = TelemetrySum()
        return cell

    degraded: dict[str, float] = {}
    max_late_s = 0.0
    devices: list[Any] = []
    states: dict[str, Any] = {}
    with session.begin():
        if labels:
            # A label selection: the selected devices' own windows (plain column tuples, not ORM objects).
            dev_stmt = select(
                DeviceRow.id, DeviceRow.labels, DeviceRow.last_seen_at, DeviceRow.revoked_at
            ).where(DeviceRow.decommissioned_at.is_(None))
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
            # and who reported from each (device, version, class, site)'s newest window end.
            for row in _rollup_rows(session, since, now, hardware_class, None, window_level=True):
                if model_version is None:
                    merge_counts(degraded, row.degraded_s or {})
                max_late_s = max(max_late_s, float(row.max_late_s))
            for row in _rollup_rows(session, since, now, hardware_class, model_version, window_level=False):
                cell_of(row.model_version, row.hardware_class, row.site or None).add(row)
            for device_id, version, hw_class, site_label in reporters_in(
                session, since, now, hardware_class, model_version
            ):
                cell_of(version, hw_class, site_label or None).devices.add(device_id)

    total = TelemetrySum()
    by_version: dict[str, TelemetrySum] = {}
    by_class: dict[str, TelemetrySum] = {}
    by_site: dict[str, TelemetrySum] = {}
    for (version, hw_class, site), cell in cells.items():
        total.merge(cell)
        by_version.setdefault(version, TelemetrySum()).merge(cell)
        by_class.setdefault(hw_class, TelemetrySum()).merge(cell)
        if site is not None:
            by_site.setdefault(site, TelemetrySum()).merge(cell)

    if labels:
        status_counts, stale_count, stale_ids, newest, dropped = _device_summary(
            devices, states, now, freshness, thresholds
        )
    else:  # the whole fleet or a class: counted in SQL (no per-device datetimes to parse)
        with session.begin():
            status_counts, stale_count, stale_ids, newest, dropped = _device_summary_sql(
                session, hardware_class, now, freshness, thresholds
            )
    with session.begin():
        field_signals = fleet_field(session, now=now, hardware_class=hardware_class)

    def groups(aggs: dict[str, TelemetrySum], key: str) -> list[dict[str, Any]]:
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
            "stale_data": stale_count,
            "stale_data_ids": stale_ids,
        },
        "data": {
            "newest_window_end_at": iso_or_none(newest),
            "lag_s": lag_s(newest, now),
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
) -> tuple[dict[str, int], int, list[str], datetime | None, dict[str, int]]:
    """Status counts, how many devices have stale data and the first ``MAX_DETAIL_DEVICES`` of them by id,
    the newest window and the queues' drops, over ``devices``."""
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
    return status_counts, len(stale), sorted(stale)[:MAX_DETAIL_DEVICES], newest, dropped


def _device_summary_sql(
    session: Session,
    hardware_class: str | None,
    now: datetime,
    freshness: Freshness,
    thresholds: StatusThresholds,
) -> tuple[dict[str, int], int, list[str], datetime | None, dict[str, int]]:
    """The same as ``_device_summary`` for a whole class or fleet, computed by the database."""
    in_scope: list[ColumnElement[bool]] = [DeviceRow.decommissioned_at.is_(None)]  # left the fleet
    if hardware_class is not None:
        in_scope.append(DeviceRow.hardware_class == hardware_class)
    status_counts: dict[str, int] = {}
    for status in DeviceStatus:
        where = [*in_scope, *status_clauses(status, now=now, thresholds=thresholds)]
        n = int(session.execute(select(func.count()).select_from(DeviceRow).where(*where)).scalar_one())
        if n:
            status_counts[status.value] = n
    joined = select(DeviceRow.id).outerjoin(TelemetryDeviceRow, TelemetryDeviceRow.device_id == DeviceRow.id)
    stale_before = now - timedelta(seconds=freshness.stale_after_s)
    stale_data = and_(
        *in_scope,
        DeviceRow.revoked_at.is_(None),
        or_(
            TelemetryDeviceRow.last_window_end_at.is_(None),
            TelemetryDeviceRow.last_window_end_at < stale_before,
        ),
    )
    # the count in the database, and only the ids the answer lists (not one row per device of the fleet)
    stale_count = int(
        session.execute(select(func.count()).select_from(joined.where(stale_data).subquery())).scalar_one()
    )
    stale_ids = list(
        session.execute(joined.where(stale_data).order_by(DeviceRow.id).limit(MAX_DETAIL_DEVICES)).scalars()
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
        # only devices whose queue dropped something: a non-empty JSON object is longer than "{}"
        .where(*in_scope, func.length(cast(TelemetryDeviceRow.dropped, String)) > len("{}"))
    ).scalars():
        merge_counts(dropped, counts or {})
    return status_counts, stale_count, stale_ids, newest, dropped
