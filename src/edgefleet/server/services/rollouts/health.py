"""Live model health for rollout gates, read from ingested telemetry (exact merges of device windows).

Telemetry's ``model_version`` is ``<model>/<version>``; with the device's hardware class it names one
artifact, and a rollout's devices all belong to its classes.

The sums and the merged latency histogram are computed by the database (``SUM`` over the windows, the
histograms' buckets through ``json_each``) over a subquery naming the exposed devices: the engine's tick
reads a handful of rows whatever the stage's size, not one row (and six JSON documents) per window.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Select, case, cast, func, select, true
from sqlalchemy.orm import Session

from edgefleet.protocol.telemetry import quantile_from_buckets
from edgefleet.server.services.rollouts.gates import StageHealth
from edgefleet.server.store.telemetry import TelemetryModelWindowRow

__all__ = ["BASELINE_LOOKBACK", "stage_health"]

BASELINE_LOOKBACK = timedelta(hours=24)
T = TelemetryModelWindowRow


def stage_health(
    session: Session,
    *,
    devices: Select[Any] | None,
    target_versions: Collection[str],
    baseline_versions: Collection[str],
    since: datetime,
) -> StageHealth:
    """The new version on ``devices`` (a select of device ids; ``None``: no device exposed) since ``since``,
    and the previous version's p95 on the same devices during the day before (the relative-latency
    baseline)."""
    if devices is None or not target_versions:
        return StageHealth()
    where = (
        T.device_id.in_(devices),
        T.model_version.in_(list(target_versions)),
        T.end_at >= since,
    )
    totals = session.execute(
        select(
            func.coalesce(func.sum(T.requests), 0),
            func.coalesce(func.sum(T.errors), 0),
            func.coalesce(func.sum(func.coalesce(T.input_faults, 0)), 0),
            func.coalesce(func.sum(T.shadow_compared), 0),
            func.coalesce(func.sum(T.shadow_agreement_sum), 0.0),
            func.count(
                func.distinct(case(((T.requests != 0) | (T.shadow_compared != 0), T.device_id), else_=None))
            ),
        ).where(*where)
    ).one()
    requests, errors, input_faults, shadow_compared, shadow_sum, reporting = totals
    return StageHealth(
        requests=int(requests),
        errors=int(errors),
        input_faults=int(input_faults),
        latency_p95_ms=quantile_from_buckets(_buckets(session, where), 0.95),
        baseline_p95_ms=_baseline_p95(session, devices, baseline_versions, since),
        shadow_agreement=float(shadow_sum) / int(shadow_compared) if shadow_compared else None,
        shadow_compared=int(shadow_compared),
        reporting_devices=int(reporting),
    )


def _buckets(session: Session, where: tuple[ColumnElement[bool], ...]) -> dict[int, int]:
    """The latency histograms of the matching windows merged bucket by bucket, by the database."""
    each_fn: Any = func.json_each_text if session.get_bind().dialect.name == "postgresql" else func.json_each
    each = each_fn(T.latency_buckets).table_valued("key", "value").alias("bucket")
    rows = session.execute(
        select(each.c.key, func.sum(cast(each.c.value, BigInteger)))
        .select_from(T)
        .join(each, true())
        .where(*where)
        .group_by(each.c.key)
    )
    return {int(key): int(count or 0) for key, count in rows}


def _baseline_p95(
    session: Session, devices: Select[Any], baseline_versions: Collection[str], since: datetime
) -> float | None:
    if not baseline_versions:
        return None
    where = (
        T.device_id.in_(devices),
        T.model_version.in_(list(baseline_versions)),
        T.end_at >= since - BASELINE_LOOKBACK,
        T.end_at <= since,
    )
    return quantile_from_buckets(_buckets(session, where), 0.95)
