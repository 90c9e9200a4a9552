"""Telemetry's plain rules: bucket arithmetic, kinds, priorities, bounds, and the additions of the mergeable
summaries. No validation library.

The pydantic models (``edgefleet.protocol.telemetry``, which re-exports every name here) and the agent's
msgspec structs (``edgefleet.protocol.wire.telemetry``) both take their constants, patterns and rules from
here, so each rule has one text. ``histogram_add``/``shadow_add`` and their merges work on either side's
object (``HistogramFields``, ``ShadowFields``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

__all__ = [
    "BOOT_ID_PATTERN",
    "CODE_PATTERN",
    "ERROR_KINDS",
    "EVENT_KINDS",
    "LATENCY_BUCKETS_PER_OCTAVE",
    "LATENCY_MAX_INDEX",
    "LATENCY_MIN_MS",
    "MAX_BATCH_RECORDS",
    "MAX_BATCH_UNCOMPRESSED_BYTES",
    "MAX_CODES",
    "MAX_COUNT",
    "MAX_MODELS_PER_WINDOW",
    "MAX_SEQUENCE",
    "PRIORITY_BY_EVENT_KIND",
    "PRIORITY_KEEP",
    "PRIORITY_METRICS",
    "PRIORITY_NOTICE",
    "SHADOW_SUM_FIELDS",
    "TELEMETRY_BATCH_SCHEMA_VERSION",
    "EventKind",
    "HistogramFields",
    "ShadowFields",
    "ShadowSample",
    "error_kind",
    "histogram_add",
    "histogram_merge",
    "latency_bucket_index",
    "latency_bucket_upper_ms",
    "merge_counts",
    "quantile_from_buckets",
    "record_payload_problem",
    "shadow_add",
    "shadow_merge",
]

LATENCY_MIN_MS = 0.01
"""Upper bound of bucket 0; bucket ``i`` holds latencies in ``(upper(i-1), upper(i)]``."""
LATENCY_BUCKETS_PER_OCTAVE = 8
"""8 buckets per doubling: a quantile read from the merged histogram is within ~9% of the true value."""
LATENCY_MAX_INDEX = 208
"""Bucket 208 ends at ~690 s; anything slower lands in it."""
MAX_BATCH_RECORDS = 500
MAX_BATCH_UNCOMPRESSED_BYTES = 4 * 1024**2
MAX_MODELS_PER_WINDOW = 32
MAX_CODES = 64
MAX_COUNT = 2**53
"""A count's bound: exact in a JSON reader's double."""
MAX_SEQUENCE = 2**62
TELEMETRY_BATCH_SCHEMA_VERSION = 1
CODE_PATTERN = r"^[a-z0-9_.:-]{1,64}$"
"""Error codes, rung names, update states: the keys of a window's counters."""
BOOT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

PRIORITY_METRICS = 0
"""Windows: dropped first (oldest first) when the device queue is full."""
PRIORITY_NOTICE = 1
"""Degraded-mode and health events: dropped only when no metrics are left to drop."""
PRIORITY_KEEP = 2
"""Update, rollback, security and clock events: never evicted by a lower priority."""

EventKind = Literal["update", "rollback", "security", "clock_untrusted", "degraded", "health", "other"]
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)
PRIORITY_BY_EVENT_KIND: dict[str, int] = {
    "update": PRIORITY_KEEP,
    "rollback": PRIORITY_KEEP,
    "security": PRIORITY_KEEP,
    "clock_untrusted": PRIORITY_KEEP,
    "degraded": PRIORITY_NOTICE,
    "health": PRIORITY_NOTICE,
    "other": PRIORITY_METRICS,
}

ERROR_KINDS = ("input", "model", "capacity", "unavailable")
"""What failed a request: its *input* (a failing sensor: NaN, wrong shape, out of the calibrated range, a
malformed body), the *model* (a run that raised), *capacity* (the bounded queue was full) or *unavailable*
(nothing could answer: deferred by the rule, no model installed)."""
_INPUT_PREFIXES = ("tensor_", "input_", "body_")
_CAPACITY_CODES = frozenset({"server_busy"})
_UNAVAILABLE_CODES = frozenset({"inference_deferred", "no_model_loaded"})


def error_kind(code: str) -> str:
    """The one rule that sorts a serving error code into ``ERROR_KINDS``. Input faults are not model
    errors: they never enter ``errors_by_code`` (so never a rollout's error rate), but
    ``input_faults_by_code``."""
    if code.startswith(_INPUT_PREFIXES):
        return "input"
    if code in _CAPACITY_CODES:
        return "capacity"
    if code in _UNAVAILABLE_CODES:
        return "unavailable"
    return "model"


def latency_bucket_index(latency_ms: float) -> int:
    """The bucket of one latency: ``ceil(8 * log2(latency / 0.01 ms))``, clamped to ``[0, 208]``."""
    if not latency_ms > LATENCY_MIN_MS:  # also catches NaN and negatives
        return 0
    index = math.ceil(LATENCY_BUCKETS_PER_OCTAVE * math.log2(latency_ms / LATENCY_MIN_MS))
    return min(max(index, 0), LATENCY_MAX_INDEX)


def latency_bucket_upper_ms(index: int) -> float:
    return float(LATENCY_MIN_MS * 2 ** (index / LATENCY_BUCKETS_PER_OCTAVE))


def quantile_from_buckets(buckets: Mapping[int, int], q: float) -> float | None:
    total = sum(buckets.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(buckets):
        seen += buckets[index]
        if seen >= rank:
            return latency_bucket_upper_ms(index)
    return latency_bucket_upper_ms(max(buckets))  # pragma: no cover - rank <= total


def merge_counts(into: dict[Any, Any], more: Mapping[Any, Any]) -> None:
    """Add ``more``'s values into ``into``, key by key (counts or seconds)."""
    for key, value in more.items():
        into[key] = into.get(key, 0) + value


class HistogramFields(Protocol):
    """A latency histogram's fields: the model's or the agent's struct."""

    buckets: dict[int, int]
    sum_ms: float
    max_ms: float


def histogram_add(histogram: HistogramFields, latency_ms: float) -> None:
    """One latency into its bucket; the sum and the maximum take only finite, positive latencies."""
    index = latency_bucket_index(latency_ms)
    histogram.buckets[index] = histogram.buckets.get(index, 0) + 1
    if math.isfinite(latency_ms) and latency_ms > 0:
        histogram.sum_ms += float(latency_ms)
        histogram.max_ms = max(histogram.max_ms, float(latency_ms))


def histogram_merge(histogram: HistogramFields, other: HistogramFields) -> None:
    """Merging is adding: exact across windows and devices."""
    for index, count in other.buckets.items():
        histogram.buckets[index] = histogram.buckets.get(index, 0) + count
    histogram.sum_ms += other.sum_ms
    histogram.max_ms = max(histogram.max_ms, other.max_ms)


@dataclass(frozen=True, slots=True)
class ShadowSample:
    """One shadow comparison as the agent measured it: statistics of the two answers, never the answers or
    the inputs. ``top1_matches`` is ``None`` for a regressor; ``max_abs_diff``/``mean_abs_diff`` are
    ``inf`` when a difference was not finite (counted in ``non_finite``, kept out of the diff figures)."""

    rows: int
    top1_matches: int | None
    rows_within_tolerance: int
    """rows whose every element is within the tolerance (``|c - a| <= atol + rtol * |a|``)"""
    max_abs_diff: float
    mean_abs_diff: float
    active_ms: float
    candidate_ms: float


SHADOW_SUM_FIELDS = (
    "compared",
    "agreement_sum",
    "rows",
    "top1_rows",
    "top1_matches",
    "tolerance_rows",
    "tolerance_matches",
    "diff_compared",
    "abs_diff_mean_sum",
    "non_finite",
    "skipped_budget",
)
"""The ``ShadowStats`` fields that merge by adding (``abs_diff_max`` takes the max)."""


class ShadowFields(Protocol):
    """A window's shadow statistics: the model's ``ShadowStats`` or the agent's struct."""

    compared: int
    agreement_sum: float
    rows: int
    top1_rows: int
    top1_matches: int
    tolerance_rows: int
    tolerance_matches: int
    diff_compared: int
    abs_diff_max: float
    abs_diff_mean_sum: float
    non_finite: int
    skipped_budget: int
    errors_by_code: dict[str, int]

    @property
    def active_latency(self) -> HistogramFields: ...
    @property
    def candidate_latency(self) -> HistogramFields: ...


def shadow_add(stats: ShadowFields, agreement: float, sample: ShadowSample | None = None) -> None:
    """One comparison; ``agreement`` in [0, 1]. Without a ``sample`` only the agreement counts."""
    stats.compared += 1
    stats.agreement_sum += agreement
    if sample is None:
        return
    stats.rows += sample.rows
    if sample.top1_matches is not None:
        stats.top1_rows += sample.rows
        stats.top1_matches += min(sample.top1_matches, sample.rows)
    stats.tolerance_rows += sample.rows
    stats.tolerance_matches += min(sample.rows_within_tolerance, sample.rows)
    if math.isfinite(sample.max_abs_diff) and math.isfinite(sample.mean_abs_diff):
        stats.diff_compared += 1
        stats.abs_diff_max = max(stats.abs_diff_max, max(float(sample.max_abs_diff), 0.0))
        stats.abs_diff_mean_sum += max(float(sample.mean_abs_diff), 0.0)
    else:
        stats.non_finite += 1
    histogram_add(stats.active_latency, sample.active_ms)
    histogram_add(stats.candidate_latency, sample.candidate_ms)


def shadow_merge(stats: ShadowFields, other: ShadowFields) -> None:
    """Counts and sums add, the maximum takes the max, the histograms add bucket by bucket."""
    for name in SHADOW_SUM_FIELDS:
        setattr(stats, name, getattr(stats, name) + getattr(other, name))
    stats.abs_diff_max = max(stats.abs_diff_max, other.abs_diff_max)
    merge_counts(stats.errors_by_code, other.errors_by_code)
    histogram_merge(stats.active_latency, other.active_latency)
    histogram_merge(stats.candidate_latency, other.candidate_latency)


def record_payload_problem(kind: str, *, has_window: bool, has_event: bool) -> str | None:
    """What is wrong with a queued record's payload, or None: a window record carries exactly its window,
    an event record exactly its event."""
    if (kind == "window") != has_window or (kind == "event") != has_event:
        return f"a {kind} record carries exactly its {kind}"
    return None
