"""Model health over time: per hardware class, each model version a series, from the telemetry rollups.

A range of up to six hours reads the per-minute rollups; a longer one reads the per-hour rollups (a week is
168 rows per version and site). Points are time buckets; each bucket's figures are exact sums of the rows
in it (latency quantiles read from the merged histogram, never averaged). Rollout events of rollouts that
target the class are returned as markers for the time axis.

``resolve_range`` is the one rule for what a range may be (pure, takes ``now``); ``health_history`` reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import InvalidDocumentError, NotFoundError
from edgefleet.protocol.telemetry import merge_counts, quantile_from_buckets
from edgefleet.server.store.registry import HardwareClassRow
from edgefleet.server.store.rollouts import RolloutEventRow, RolloutRow
from edgefleet.server.store.telemetry import TelemetryHourRollupRow, TelemetryRollupRow

__all__ = [
    "METRICS",
    "PRESETS_S",
    "HistoryRange",
    "health_history",
    "history_classes",
    "resolve_range",
]

PRESETS_S = {"hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0}
MINUTE_SOURCE_MAX_S = 6 * 3600.0
MAX_POINTS = 200
FUTURE_SLACK_S = 60.0
METRICS = {
    "latency_p50_ms": ("Latency p50", "ms"),
    "latency_p95_ms": ("Latency p95", "ms"),
    "error_rate": ("Error rate", "ratio"),
    "input_faults": ("Input faults", "count"),
    "requests": ("Requests", "count"),
    "shadow_agreement": ("Shadow agreement", "ratio"),
    "degraded_s": ("Time on degraded rungs", "s"),
}
"""name -> (title, unit); ``degraded_s`` has one series per rung, every other metric one per version."""


@dataclass(frozen=True)
class HistoryRange:
    start_at: datetime
    end_at: datetime
    bucket_s: float
    source: str
    """``minute`` or ``hour``: which rollups are read"""

    def to_wire(self) -> dict[str, Any]:
        return {
            "start_at": self.start_at.isoformat(),
            "end_at": self.end_at.isoformat(),
            "bucket_s": self.bucket_s,
            "source": self.source,
        }


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


def resolve_range(
    preset: str | None,
    start_at: datetime | None,
    end_at: datetime | None,
    *,
    now: datetime,
    retention_s: float,
) -> HistoryRange:
    """The range to chart: a preset (``hour``, ``day``, ``week``) ending now, or ``custom`` with both ends.
    Refuses (422, each with its own code) a range that is inverted, in the future, longer than the
    telemetry retention or reaching back past it: a chart of a pruned or future period would look empty
    and "fine"."""
    preset = preset or ("custom" if start_at or end_at else "day")
    if preset in PRESETS_S:
        end, start = now, now - timedelta(seconds=PRESETS_S[preset])
    elif preset == "custom":
        if start_at is None or end_at is None:
            raise InvalidDocumentError(
                "a custom range needs both a start and an end",
                code="history_range_incomplete",
                expected="start and end (ISO 8601)",
                got={"start": start_at and start_at.isoformat(), "end": end_at and end_at.isoformat()},
            )
        start, end = _utc(start_at), _utc(end_at)
    else:
        raise InvalidDocumentError(
            "unknown range", code="history_range_unknown", expected="hour|day|week|custom", got=preset[:32]
        )
    if end <= start:
        raise InvalidDocumentError(
            "the range ends before it starts",
            code="history_range_inverted",
            expected="start < end",
            got={"start": start.isoformat(), "end": end.isoformat()},
        )
    if end > now + timedelta(seconds=FUTURE_SLACK_S):
        raise InvalidDocumentError(
            "the range reaches into the future: there is no telemetry there yet",
            code="history_range_in_future",
            expected=f"end <= {now.isoformat()}",
            got=end.isoformat(),
        )
    span_s = (end - start).total_seconds()
    if span_s > retention_s:
        raise InvalidDocumentError(
            "the range is longer than the telemetry retention",
            code="history_range_too_long",
            expected=f"<= {retention_s / 86400:g} days",
            got=f"{span_s / 86400:g} days",
        )
    if start < now - timedelta(seconds=retention_s):
        raise InvalidDocumentError(
            "the range starts before the oldest telemetry kept (pruned by retention)",
            code="history_range_past_retention",
            expected=f"start >= {(now - timedelta(seconds=retention_s)).isoformat()}",
            got=start.isoformat(),
        )
    base_s, source = (60.0, "minute") if span_s <= MINUTE_SOURCE_MAX_S else (3600.0, "hour")
    bucket_s = base_s * max(1, math.ceil(span_s / MAX_POINTS / base_s))
    return HistoryRange(start, end, bucket_s, source)


def history_classes(session: Session, *, limit: int = 200) -> list[str]:
    """The hardware classes a history can be drawn for (the page's choice list)."""
    with session.begin():
        stmt = select(HardwareClassRow.name).order_by(HardwareClassRow.name).limit(limit)
        return list(session.scalars(stmt))


def _check_names(
    session: Session,
    hardware_class: str,
    model_version: str | None,
    site: str | None,
    *,
    since: datetime,
) -> None:
    """Unknown names are a 404, not an empty chart: the class must exist, the version and site must have
    reported for this class within the retention."""
    if session.get(HardwareClassRow, hardware_class[:63]) is None:
        raise NotFoundError("no such hardware class", code="history_unknown_class", got=hardware_class[:80])
    table = TelemetryHourRollupRow
    base = select(table.hour_at).where(table.hardware_class == hardware_class, table.hour_at >= since)
    if model_version is not None:
        stmt = base.where(table.model_version == model_version).limit(1)
        if session.execute(stmt).first() is None:
            raise NotFoundError(
                "no telemetry from this model version on this class within the retention",
                code="history_unknown_version",
                got=model_version[:80],
            )
    if site is not None and session.execute(base.where(table.site == site).limit(1)).first() is None:
        raise NotFoundError(
            "no device of this class with this site label reported within the retention",
            code="history_unknown_site",
            got=site[:80],
        )


@dataclass
class _Cell:
    requests: int = 0
    errors: int = 0
    input_faults: int = 0
    shadow_compared: int = 0
    shadow_agreement_sum: float = 0.0

    def __post_init__(self) -> None:
        self.buckets: dict[int, int] = {}


def _point(cell: _Cell | None, metric: str) -> float | None:
    if cell is None:
        return None
    if metric == "latency_p50_ms":
        return quantile_from_buckets(cell.buckets, 0.50)
    if metric == "latency_p95_ms":
        return quantile_from_buckets(cell.buckets, 0.95)
    if metric == "error_rate":
        return cell.errors / cell.requests if cell.requests else None
    if metric == "shadow_agreement":
        return cell.shadow_agreement_sum / cell.shadow_compared if cell.shadow_compared else None
    return float(getattr(cell, metric))


def _events(session: Session, hardware_class: str, r: HistoryRange) -> list[dict[str, Any]]:
    stmt = (
        select(RolloutEventRow.at, RolloutEventRow.kind, RolloutEventRow.rollout_id, RolloutRow.targets)
        .join(RolloutRow, RolloutRow.id == RolloutEventRow.rollout_id)
        .where(RolloutEventRow.at >= r.start_at, RolloutEventRow.at <= r.end_at)
        .order_by(RolloutEventRow.at, RolloutEventRow.id)
    )
    return [
        {"at": _utc(at).isoformat(), "kind": kind, "rollout_id": rollout_id}
        for at, kind, rollout_id, targets in session.execute(stmt)
        if hardware_class in (targets or {})
    ]


def health_history(
    session: Session,
    *,
    hardware_class: str,
    model_version: str | None,
    site: str | None,
    history_range: HistoryRange,
    retention_s: float,
    now: datetime,
) -> dict[str, Any]:
    """The series of every metric in ``METRICS`` over ``history_range`` (JSON-ready; ``None`` where a bucket
    had no data). ``empty`` is true when nothing at all reported in the range: callers say so."""
    r = history_range
    with session.begin():
        _check_names(session, hardware_class, model_version, site, since=now - timedelta(seconds=retention_s))
        table: type[TelemetryRollupRow] | type[TelemetryHourRollupRow]
        if r.source == "minute":
            table, at_column = TelemetryRollupRow, TelemetryRollupRow.minute_at
        else:
            table, at_column = TelemetryHourRollupRow, TelemetryHourRollupRow.hour_at
        stmt = select(
            at_column,
            table.model_version,
            table.requests,
            table.errors,
            table.input_faults,
            table.latency_buckets,
            table.shadow_compared,
            table.shadow_agreement_sum,
            table.degraded_s,
        ).where(
            table.hardware_class == hardware_class,
            at_column >= _floor(r.start_at, 60.0 if r.source == "minute" else 3600.0),
            at_column <= r.end_at,
        )
        if model_version is not None:
            stmt = stmt.where(table.model_version.in_((model_version, "")))
        if site is not None:
            stmt = stmt.where(table.site == site)
        rows = session.execute(stmt).all()
        events = _events(session, hardware_class, r)
    # buckets on a grid of whole bucket lengths, so each rollup row falls in exactly one bucket
    start_s = _floor(r.start_at, r.bucket_s).timestamp()
    count = max(1, math.ceil((r.end_at.timestamp() - start_s) / r.bucket_s))
    cells: dict[str, list[_Cell | None]] = {}
    degraded: dict[str, list[float | None]] = {}
    for at, version, requests, errors, faults, buckets, compared, agreement, degraded_s in rows:
        index = min(count - 1, max(0, int((_utc(at).timestamp() - start_s) // r.bucket_s)))
        if version == "":
            for rung, seconds in (degraded_s or {}).items():
                series = degraded.setdefault(rung, [None] * count)
                series[index] = (series[index] or 0.0) + float(seconds)
            continue
        series_cells = cells.setdefault(version, [None] * count)
        cell = series_cells[index]
        if cell is None:
            cell = series_cells[index] = _Cell()
        cell.requests += requests
        cell.errors += errors
        cell.input_faults += faults or 0
        cell.shadow_compared += compared
        cell.shadow_agreement_sum += agreement
        merge_counts(cell.buckets, {int(k): int(v) for k, v in (buckets or {}).items()})
    # a version named only by rows without a request, fault or comparison (an install's bookkeeping) has
    # nothing to draw: it would be a series of gaps in every chart
    versions = sorted(
        v
        for v, series_cells in cells.items()
        if any(c is not None and (c.requests or c.input_faults or c.shadow_compared) for c in series_cells)
    )
    metrics: dict[str, Any] = {}
    for name, (title, unit) in METRICS.items():
        if name == "degraded_s":
            lines = dict(sorted(degraded.items()))
        else:
            lines = {v: [_point(c, name) for c in cells[v]] for v in versions}
        metrics[name] = {"title": title, "unit": unit, "series": lines}
    return {
        "hardware_class": hardware_class,
        "model_version": model_version,
        "site": site,
        "range": r.to_wire(),
        "buckets": [
            datetime.fromtimestamp(start_s + i * r.bucket_s, tz=timezone.utc).isoformat()
            for i in range(count)
        ],
        "versions": versions,
        "metrics": metrics,
        "events": events,
        "empty": not versions and not degraded,
    }


def _floor(at: datetime, step_s: float) -> datetime:
    return datetime.fromtimestamp(at.timestamp() // step_s * step_s, tz=timezone.utc)
