"""Live model health for rollout gates, read from ingested telemetry (exact merges of device windows).

Telemetry's ``model_version`` is ``<model>/<version>``; with the device's hardware class it names one
artifact, and a rollout's devices all belong to its classes.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.protocol.telemetry import merge_counts, quantile_from_buckets
from edgefleet.server.services.rollouts.gates import StageHealth
from edgefleet.server.store.in_lists import in_batches
from edgefleet.server.store.telemetry import TelemetryModelWindowRow

__all__ = ["BASELINE_LOOKBACK", "stage_health"]

BASELINE_LOOKBACK = timedelta(hours=24)


def stage_health(
    session: Session,
    *,
    device_ids: Collection[str],
    target_versions: Collection[str],
    baseline_versions: Collection[str],
    since: datetime,
) -> StageHealth:
    """The new version on ``device_ids`` since ``since``, and the previous version's p95 on the same devices
    during the day before (the relative-latency baseline)."""
    if not device_ids or not target_versions:
        return StageHealth()
    rows = (
        row
        for ids in in_batches(device_ids)  # a stage may hold 100,000 devices
        for row in session.execute(
            select(TelemetryModelWindowRow).where(
                TelemetryModelWindowRow.device_id.in_(ids),
                TelemetryModelWindowRow.model_version.in_(list(target_versions)),
                TelemetryModelWindowRow.end_at >= since,
            )
        ).scalars()
    )
    requests = errors = input_faults = shadow_compared = 0
    shadow_sum = 0.0
    buckets: dict[int, int] = {}
    reporting: set[str] = set()
    for row in rows:
        requests += row.requests
        errors += row.errors
        input_faults += row.input_faults or 0
        shadow_compared += row.shadow_compared
        shadow_sum += row.shadow_agreement_sum
        merge_counts(buckets, {int(k): int(v) for k, v in row.latency_buckets.items()})
        if row.requests or row.shadow_compared:
            reporting.add(row.device_id)
    return StageHealth(
        requests=requests,
        errors=errors,
        input_faults=input_faults,
        latency_p95_ms=quantile_from_buckets(buckets, 0.95),
        baseline_p95_ms=_baseline_p95(session, device_ids, baseline_versions, since),
        shadow_agreement=shadow_sum / shadow_compared if shadow_compared else None,
        shadow_compared=shadow_compared,
        reporting_devices=len(reporting),
    )


def _baseline_p95(
    session: Session, device_ids: Collection[str], baseline_versions: Collection[str], since: datetime
) -> float | None:
    if not baseline_versions:
        return None
    buckets: dict[int, int] = {}
    for ids in in_batches(device_ids):
        for latency in session.execute(
            select(TelemetryModelWindowRow.latency_buckets).where(
                TelemetryModelWindowRow.device_id.in_(ids),
                TelemetryModelWindowRow.model_version.in_(list(baseline_versions)),
                TelemetryModelWindowRow.end_at >= since - BASELINE_LOOKBACK,
                TelemetryModelWindowRow.end_at <= since,
            )
        ).scalars():
            merge_counts(buckets, {int(k): int(v) for k, v in latency.items()})
    return quantile_from_buckets(buckets, 0.95)
