"""Telemetry on the wire: windowed summaries, events and the batch that carries them.

A device never ships raw per-request records. It ships one *window* per interval (default 60 s) holding, per
model version, counts, errors by code and a latency histogram whose buckets are fixed by this module, so the
server merges windows of many devices and many intervals *exactly* by adding bucket counts. Events (update
steps, rollbacks, security rejections, clock and degraded-mode changes) travel beside the windows.

Every record carries ``(boot_id, sequence)``; with the device identity (from the request signature, never
from the body) that is the idempotency key of ingest: a resent batch is counted once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from edgefleet.protocol.document import Document, Part

__all__ = [
    "ERROR_KINDS",
    "EVENT_KINDS",
    "LATENCY_BUCKETS_PER_OCTAVE",
    "LATENCY_MAX_INDEX",
    "LATENCY_MIN_MS",
    "MAX_BATCH_RECORDS",
    "MAX_BATCH_UNCOMPRESSED_BYTES",
    "PRIORITY_BY_EVENT_KIND",
    "PRIORITY_KEEP",
    "PRIORITY_METRICS",
    "PRIORITY_NOTICE",
    "SHADOW_SUM_FIELDS",
    "EventRecord",
    "HealthChecks",
    "LatencyHistogram",
    "ModelWindow",
    "ResourceSample",
    "ShadowSample",
    "ShadowStats",
    "SlotStatus",
    "TelemetryBatch",
    "TelemetryRecord",
    "TelemetryWindow",
    "error_kind",
    "latency_bucket_index",
    "latency_bucket_upper_ms",
    "merge_counts",
    "quantile_from_buckets",
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

PRIORITY_METRICS = 0
"""Windows: dropped first (oldest first) when the device queue is full."""
PRIORITY_NOTICE = 1
"""Degraded-mode and health events: dropped only when no metrics are left to drop."""
PRIORITY_KEEP = 2
"""Update, rollback, security and clock events: never evicted by a lower priority."""

EVENT_KINDS = ("update", "rollback", "security", "clock_untrusted", "degraded", "health", "other")
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

Code = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.:-]{1,64}$")]


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


Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Count = Annotated[int, Field(ge=0, le=2**53)]


def latency_bucket_index(latency_ms: float) -> int:
    """The bucket of one latency: ``ceil(8 * log2(latency / 0.01 ms))``, clamped to ``[0, 208]``."""
    if not latency_ms > LATENCY_MIN_MS:  # also catches NaN and negatives
        return 0
    index = math.ceil(LATENCY_BUCKETS_PER_OCTAVE * math.log2(latency_ms / LATENCY_MIN_MS))
    return min(max(index, 0), LATENCY_MAX_INDEX)


def latency_bucket_upper_ms(index: int) -> float:
    return float(LATENCY_MIN_MS * 2 ** (index / LATENCY_BUCKETS_PER_OCTAVE))


class LatencyHistogram(Part):
    """Sparse bucket counts keyed by bucket index. Merging is adding: exact across windows and devices."""

    buckets: dict[Annotated[int, Field(ge=0, le=LATENCY_MAX_INDEX)], Count] = Field(default_factory=dict)
    sum_ms: float = Field(default=0.0, ge=0)
    max_ms: float = Field(default=0.0, ge=0)

    @property
    def count(self) -> int:
        return sum(self.buckets.values())

    def add(self, latency_ms: float) -> None:
        index = latency_bucket_index(latency_ms)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        if math.isfinite(latency_ms) and latency_ms > 0:
            self.sum_ms += latency_ms
            self.max_ms = max(self.max_ms, latency_ms)

    def merge(self, other: LatencyHistogram) -> None:
        for index, count in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + count
        self.sum_ms += other.sum_ms
        self.max_ms = max(self.max_ms, other.max_ms)

    def quantile_ms(self, q: float) -> float | None:
        """Upper bound of the bucket holding the ``q`` quantile (conservative); ``None`` when empty."""
        return quantile_from_buckets(self.buckets, q)


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


FiniteNonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ShadowStats(Part):
    """A shadow candidate's agreement with the active model in one window, on the candidate's
    ``ModelWindow``. Every field merges exactly (``merge``): counts and sums add, maxima take the max, the
    two latency histograms add bucket by bucket. Agents before these statistics send only ``compared`` and
    ``agreement_sum``; the rest then stays zero, and each figure has its own denominator so old and new
    windows merge correctly."""

    compared: Count = 0
    agreement_sum: float = Field(default=0.0, ge=0)
    """sum of per-comparison agreement in [0, 1] (top-1 share for classifiers, share of rows within the
    tolerance for regressors); the mean is ``agreement_sum / compared``"""
    rows: Count = 0
    top1_rows: Count = 0
    """rows of classifier comparisons (the top-1 agreement's denominator)"""
    top1_matches: Count = 0
    tolerance_rows: Count = 0
    """rows compared element-wise against the tolerance (every comparison)"""
    tolerance_matches: Count = 0
    diff_compared: Count = 0
    """comparisons whose difference was finite: the denominator of the mean abs difference"""
    abs_diff_max: FiniteNonNegative = 0.0
    abs_diff_mean_sum: FiniteNonNegative = 0.0
    """sum over ``diff_compared`` comparisons of their mean abs difference"""
    non_finite: Count = 0
    skipped_budget: Count = 0
    """sampled requests not compared because ``max_pending`` comparisons were already waiting"""
    errors_by_code: dict[Code, Count] = Field(default_factory=dict, max_length=MAX_CODES)
    """candidate runs that failed, by code"""
    active_latency: LatencyHistogram = Field(default_factory=LatencyHistogram)
    candidate_latency: LatencyHistogram = Field(default_factory=LatencyHistogram)

    def add(self, agreement: float, sample: ShadowSample | None = None) -> None:
        """One comparison; ``agreement`` in [0, 1]. Without a ``sample`` only the agreement counts."""
        self.compared += 1
        self.agreement_sum += agreement
        if sample is None:
            return
        self.rows += sample.rows
        if sample.top1_matches is not None:
            self.top1_rows += sample.rows
            self.top1_matches += min(sample.top1_matches, sample.rows)
        self.tolerance_rows += sample.rows
        self.tolerance_matches += min(sample.rows_within_tolerance, sample.rows)
        if math.isfinite(sample.max_abs_diff) and math.isfinite(sample.mean_abs_diff):
            self.diff_compared += 1
            self.abs_diff_max = max(self.abs_diff_max, max(sample.max_abs_diff, 0.0))
            self.abs_diff_mean_sum += max(sample.mean_abs_diff, 0.0)
        else:
            self.non_finite += 1
        self.active_latency.add(sample.active_ms)
        self.candidate_latency.add(sample.candidate_ms)

    def merge(self, other: ShadowStats) -> None:
        for name in SHADOW_SUM_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.abs_diff_max = max(self.abs_diff_max, other.abs_diff_max)
        merge_counts(self.errors_by_code, other.errors_by_code)
        self.active_latency.merge(other.active_latency)
        self.candidate_latency.merge(other.candidate_latency)


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


class HealthChecks(Part):
    passed: Count = 0
    failed: Count = 0
    failed_by_code: dict[Code, Count] = Field(default_factory=dict, max_length=MAX_CODES)


class ModelWindow(Part):
    """One model version's activity inside one window. ``requests`` and ``errors_by_code`` leave input faults
    out (``input_faults_by_code``: requests refused for their input before the model ran)."""

    model_version: Label
    requests: Count = 0
    errors_by_code: dict[Code, Count] = Field(default_factory=dict, max_length=MAX_CODES)
    input_faults_by_code: dict[Code, Count] = Field(default_factory=dict, max_length=MAX_CODES)
    last_success_at: datetime | None = None
    """device wall clock of this version's last successful answer (in this window or before)"""
    requests_by_rung: dict[Code, Count] = Field(default_factory=dict, max_length=16)
    latency: LatencyHistogram = Field(default_factory=LatencyHistogram)
    shadow: ShadowStats = Field(default_factory=ShadowStats)
    health_checks: HealthChecks = Field(default_factory=HealthChecks)

    @property
    def errors(self) -> int:
        return sum(self.errors_by_code.values())

    @property
    def input_faults(self) -> int:
        return sum(self.input_faults_by_code.values())


class ResourceSample(Part):
    """Device resources at the end of a window. ``None`` means the OS does not expose it (not zero)."""

    cpu_temp_c: float | None = None
    cpu_throttle_count: int | None = Field(default=None, ge=0)
    mem_total_bytes: int | None = Field(default=None, ge=0)
    mem_available_bytes: int | None = Field(default=None, ge=0)
    disk_total_bytes: int | None = Field(default=None, ge=0)
    disk_free_bytes: int | None = Field(default=None, ge=0)
    load_1m: float | None = Field(default=None, ge=0)


class SlotStatus(Part):
    """One model slot's field state at the end of a window: when it last answered, when a request last
    arrived, its errors by kind since the agent started, and its update status (the installer's state)."""

    slot: Label
    model_version: Label | None = None
    """the version that answered last (``None``: nothing answered since the agent started)"""
    last_success_at: datetime | None = None
    last_request_at: datetime | None = None
    requests: Count = 0
    """requests since the agent started, input faults included"""
    errors_by_kind: dict[Code, Count] = Field(default_factory=dict, max_length=8)
    """since the agent started, keyed by ``ERROR_KINDS``"""
    update_status: Code | None = None
    update_failure_code: Code | None = None


class TelemetryWindow(Part):
    """Everything one device saw in ``[start_at, end_at)`` (device wall clock; see ``sent_at``)."""

    start_at: datetime
    end_at: datetime
    models: list[ModelWindow] = Field(default_factory=list, max_length=MAX_MODELS_PER_WINDOW)
    degraded_s: dict[Code, Annotated[float, Field(ge=0)]] = Field(default_factory=dict, max_length=16)
    """seconds spent on each degraded rung during the window"""
    resources: ResourceSample | None = None
    slots: list[SlotStatus] = Field(default_factory=list, max_length=16)


class EventRecord(Part):
    at: datetime
    kind: Literal["update", "rollback", "security", "clock_untrusted", "degraded", "health", "other"]
    code: Code
    details: dict[str, Any] = Field(default_factory=dict, max_length=32)


class TelemetryRecord(Part):
    """One queued record: a window or an event, with its idempotency key."""

    boot_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    sequence: Annotated[int, Field(ge=1, le=2**62)]
    kind: Literal["window", "event"]
    window: TelemetryWindow | None = None
    event: EventRecord | None = None

    @model_validator(mode="after")
    def _one_payload(self) -> TelemetryRecord:
        if (self.kind == "window") != (self.window is not None) or (self.kind == "event") != (
            self.event is not None
        ):
            raise ValueError(f"a {self.kind} record carries exactly its {self.kind}")
        return self


class TelemetryBatch(Document):
    """What the uploader posts (gzip-compressed) to ``POST /v1/device/telemetry``.

    ``device_id`` must equal the identity proven by the request signature; ``dropped`` holds the device
    queue's *cumulative* drop counters (so resending them is harmless).
    """

    KIND = "telemetry batch"

    device_id: Annotated[str, StringConstraints(max_length=64)]
    sent_at: datetime
    records: list[TelemetryRecord] = Field(min_length=1, max_length=MAX_BATCH_RECORDS)
    dropped: dict[Code, Count] = Field(default_factory=dict, max_length=MAX_CODES)
    queue_bytes: Count = 0
    queue_records: Count = 0

    def keys(self) -> Iterable[tuple[str, int]]:
        return ((r.boot_id, r.sequence) for r in self.records)
