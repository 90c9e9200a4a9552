"""Exact sums of telemetry windows: counts add and latency histograms merge bucket by bucket.

Histograms use the fixed buckets of ``protocol.telemetry``, so p50/p95/p99 of any group (a fleet, a class,
one device) are read from the merged histogram, never averaged. Pure: no queries here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edgefleet.protocol.telemetry import merge_counts, quantile_from_buckets
from edgefleet.server.services.telemetry import merge_shadow_stats
from edgefleet.server.store.telemetry import TelemetryModelWindowRow

__all__ = ["SUM_COLUMNS", "TelemetrySum", "iso_or_none", "lag_s", "shadow_to_wire"]


SUM_COLUMNS = tuple(
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
"""What ``TelemetrySum.add`` and the fleet grouping read: selected as columns, so rows stay plain tuples."""


@dataclass
class TelemetrySum:
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

    def add(self, row: Any) -> None:  # a row of SUM_COLUMNS, a TelemetryModelWindowRow or a rollup
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

    def merge(self, other: TelemetrySum) -> None:
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


def iso_or_none(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def lag_s(at: datetime | None, now: datetime) -> float | None:
    return None if at is None else max(0.0, (now - at).total_seconds())
