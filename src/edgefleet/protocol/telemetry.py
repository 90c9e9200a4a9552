"""Telemetry on the wire: windowed summaries, events and the batch that carries them.

A device never ships raw per-request records. It ships one *window* per interval (default 60 s) holding, per
model version, counts, errors by code and a latency histogram whose buckets are fixed by this module, so the
server merges windows of many devices and many intervals *exactly* by adding bucket counts. Events (update
steps, rollbacks, security rejections, clock and degraded-mode changes) travel beside the windows.

Every record carries ``(boot_id, sequence)``; with the device identity (from the request signature, never
from the body) that is the idempotency key of ingest: a resent batch is counted once.

The constants and plain rules (buckets, kinds, priorities, bounds, the additions) are
``protocol.telemetry_kinds``, re-exported here; the agent builds these documents through the msgspec structs
of ``protocol.wire.telemetry``, which take the same rules from there (``tests/agent/test_wire_telemetry.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, StringConstraints, model_validator

from edgefleet.protocol.document import Document, Part
from edgefleet.protocol.telemetry_kinds import (
    BOOT_ID_PATTERN,
    CODE_PATTERN,
    ERROR_KINDS,
    EVENT_KINDS,
    LATENCY_BUCKETS_PER_OCTAVE,
    LATENCY_MAX_INDEX,
    LATENCY_MIN_MS,
    MAX_BATCH_RECORDS,
    MAX_BATCH_UNCOMPRESSED_BYTES,
    MAX_CODES,
    MAX_COUNT,
    MAX_MODELS_PER_WINDOW,
    MAX_SEQUENCE,
    PRIORITY_BY_EVENT_KIND,
    PRIORITY_KEEP,
    PRIORITY_METRICS,
    PRIORITY_NOTICE,
    SHADOW_SUM_FIELDS,
    TELEMETRY_BATCH_SCHEMA_VERSION,
    EventKind,
    ShadowSample,
    error_kind,
    histogram_add,
    histogram_merge,
    latency_bucket_index,
    latency_bucket_upper_ms,
    merge_counts,
    quantile_from_buckets,
    record_payload_problem,
    shadow_add,
    shadow_merge,
)

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

Code = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]


class LatencyHistogram(Part):
    """Sparse bucket counts keyed by bucket index. Merging is adding: exact across windows and devices."""

    buckets: dict[Annotated[int, Field(ge=0, le=LATENCY_MAX_INDEX)], Count] = Field(default_factory=dict)
    sum_ms: float = Field(default=0.0, ge=0)
    max_ms: float = Field(default=0.0, ge=0)

    @property
    def count(self) -> int:
        return sum(self.buckets.values())

    def add(self, latency_ms: float) -> None:
        histogram_add(self, latency_ms)

    def merge(self, other: LatencyHistogram) -> None:
        histogram_merge(self, other)

    def quantile_ms(self, q: float) -> float | None:
        """Upper bound of the bucket holding the ``q`` quantile (conservative); ``None`` when empty."""
        return quantile_from_buckets(self.buckets, q)


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
        shadow_add(self, agreement, sample)

    def merge(self, other: ShadowStats) -> None:
        shadow_merge(self, other)


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
    kind: EventKind
    code: Code
    details: dict[str, Any] = Field(default_factory=dict, max_length=32)


class TelemetryRecord(Part):
    """One queued record: a window or an event, with its idempotency key."""

    boot_id: Annotated[str, StringConstraints(pattern=BOOT_ID_PATTERN)]
    sequence: Annotated[int, Field(ge=1, le=MAX_SEQUENCE)]
    kind: Literal["window", "event"]
    window: TelemetryWindow | None = None
    event: EventRecord | None = None

    @model_validator(mode="after")
    def _one_payload(self) -> TelemetryRecord:
        problem = record_payload_problem(
            self.kind, has_window=self.window is not None, has_event=self.event is not None
        )
        if problem is not None:
            raise ValueError(problem)
        return self


class TelemetryBatch(Document):
    """What the uploader posts (gzip-compressed) to ``POST /v1/device/telemetry``.

    ``device_id`` must equal the identity proven by the request signature; ``dropped`` holds the device
    queue's *cumulative* drop counters (so resending them is harmless).
    """

    KIND = "telemetry batch"
    SCHEMA_VERSION: ClassVar[int] = TELEMETRY_BATCH_SCHEMA_VERSION

    device_id: Annotated[str, StringConstraints(max_length=64)]
    sent_at: datetime
    records: list[TelemetryRecord] = Field(min_length=1, max_length=MAX_BATCH_RECORDS)
    dropped: dict[Code, Count] = Field(default_factory=dict, max_length=MAX_CODES)
    queue_bytes: Count = 0
    queue_records: Count = 0

    def keys(self) -> Iterable[tuple[str, int]]:
        return ((r.boot_id, r.sequence) for r in self.records)
