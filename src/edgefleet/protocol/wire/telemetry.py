"""Telemetry as the agent builds it: windows, events, and the batch the uploader posts (mirrors
``edgefleet.protocol.telemetry``).

The recorder builds these structs and queues them as plain data (``to_body``); the server validates what
arrives with the models. Their constants and rules (bucket arithmetic, kinds, the additions of a histogram
and of the shadow statistics, a record's one payload) are ``edgefleet.protocol.telemetry_kinds``, which the
models use too."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from edgefleet.protocol.telemetry_kinds import (
    BOOT_ID_PATTERN,
    CODE_PATTERN,
    LATENCY_MAX_INDEX,
    MAX_BATCH_RECORDS,
    MAX_CODES,
    MAX_COUNT,
    MAX_MODELS_PER_WINDOW,
    MAX_SEQUENCE,
    TELEMETRY_BATCH_SCHEMA_VERSION,
    EventKind,
    ShadowSample,
    histogram_add,
    histogram_merge,
    quantile_from_buckets,
    record_payload_problem,
    shadow_add,
    shadow_merge,
)
from edgefleet.protocol.wire.base import WireStruct, whole

__all__ = [
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
    "to_body",
]

Code = Annotated[str, msgspec.Meta(pattern=whole(CODE_PATTERN))]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
BucketIndex = Annotated[int, msgspec.Meta(ge=0, le=LATENCY_MAX_INDEX)]


def to_body(struct: msgspec.Struct) -> dict[str, Any]:
    """A struct as the plain data the queue stores, as the model's ``model_dump(mode="json")`` gave it:
    datetimes as RFC 3339 text and every key as text (a histogram's bucket indexes included)."""
    out = msgspec.to_builtins(struct, str_keys=True)
    assert isinstance(out, dict)
    return out


class LatencyHistogram(WireStruct, kw_only=True):
    """Sparse bucket counts keyed by bucket index. Merging is adding: exact across windows and devices."""

    buckets: dict[BucketIndex, Count] = {}
    sum_ms: NonNegative = 0.0
    max_ms: NonNegative = 0.0

    @property
    def count(self) -> int:
        return sum(self.buckets.values())

    def add(self, latency_ms: float) -> None:
        histogram_add(self, latency_ms)

    def merge(self, other: LatencyHistogram) -> None:
        histogram_merge(self, other)

    def quantile_ms(self, q: float) -> float | None:
        return quantile_from_buckets(self.buckets, q)


class ShadowStats(WireStruct, kw_only=True):
    """A shadow candidate's agreement with the active model in one window (the model's docstring says
    what each figure is)."""

    compared: Count = 0
    agreement_sum: NonNegative = 0.0
    rows: Count = 0
    top1_rows: Count = 0
    top1_matches: Count = 0
    tolerance_rows: Count = 0
    tolerance_matches: Count = 0
    diff_compared: Count = 0
    abs_diff_max: NonNegative = 0.0
    abs_diff_mean_sum: NonNegative = 0.0
    non_finite: Count = 0
    skipped_budget: Count = 0
    errors_by_code: Annotated[dict[Code, Count], msgspec.Meta(max_length=MAX_CODES)] = {}
    active_latency: LatencyHistogram = msgspec.field(default_factory=LatencyHistogram)
    candidate_latency: LatencyHistogram = msgspec.field(default_factory=LatencyHistogram)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.abs_diff_max) and math.isfinite(self.abs_diff_mean_sum)):
            raise ValueError("abs_diff_max and abs_diff_mean_sum must be finite")

    def add(self, agreement: float, sample: ShadowSample | None = None) -> None:
        """One comparison; ``agreement`` in [0, 1]. Without a ``sample`` only the agreement counts."""
        shadow_add(self, agreement, sample)

    def merge(self, other: ShadowStats) -> None:
        shadow_merge(self, other)


class HealthChecks(WireStruct, kw_only=True):
    passed: Count = 0
    failed: Count = 0
    failed_by_code: Annotated[dict[Code, Count], msgspec.Meta(max_length=MAX_CODES)] = {}


class ModelWindow(WireStruct, kw_only=True):
    """One model version's activity inside one window; input faults apart (``input_faults_by_code``)."""

    model_version: Label
    requests: Count = 0
    errors_by_code: Annotated[dict[Code, Count], msgspec.Meta(max_length=MAX_CODES)] = {}
    input_faults_by_code: Annotated[dict[Code, Count], msgspec.Meta(max_length=MAX_CODES)] = {}
    last_success_at: datetime | None = None
    requests_by_rung: Annotated[dict[Code, Count], msgspec.Meta(max_length=16)] = {}
    latency: LatencyHistogram = msgspec.field(default_factory=LatencyHistogram)
    shadow: ShadowStats = msgspec.field(default_factory=ShadowStats)
    health_checks: HealthChecks = msgspec.field(default_factory=HealthChecks)

    @property
    def errors(self) -> int:
        return sum(self.errors_by_code.values())

    @property
    def input_faults(self) -> int:
        return sum(self.input_faults_by_code.values())


class ResourceSample(WireStruct, kw_only=True):
    """Device resources at the end of a window. ``None`` means the OS does not expose it (not zero)."""

    cpu_temp_c: float | None = None
    cpu_throttle_count: NonNegativeInt | None = None
    mem_total_bytes: NonNegativeInt | None = None
    mem_available_bytes: NonNegativeInt | None = None
    disk_total_bytes: NonNegativeInt | None = None
    disk_free_bytes: NonNegativeInt | None = None
    load_1m: NonNegative | None = None


class SlotStatus(WireStruct, kw_only=True):
    """One model slot's field state at the end of a window."""

    slot: Label
    model_version: Label | None = None
    last_success_at: datetime | None = None
    last_request_at: datetime | None = None
    requests: Count = 0
    errors_by_kind: Annotated[dict[Code, Count], msgspec.Meta(max_length=8)] = {}
    update_status: Code | None = None
    update_failure_code: Code | None = None


class TelemetryWindow(WireStruct, kw_only=True):
    """Everything one device saw in ``[start_at, end_at)`` (device wall clock)."""

    start_at: datetime
    end_at: datetime
    models: Annotated[list[ModelWindow], msgspec.Meta(max_length=MAX_MODELS_PER_WINDOW)] = []
    degraded_s: Annotated[dict[Code, NonNegative], msgspec.Meta(max_length=16)] = {}
    resources: ResourceSample | None = None
    slots: Annotated[list[SlotStatus], msgspec.Meta(max_length=16)] = []


class EventRecord(WireStruct, kw_only=True):
    at: datetime
    kind: EventKind
    code: Code
    details: Annotated[dict[str, Any], msgspec.Meta(max_length=32)] = {}


class TelemetryRecord(WireStruct, kw_only=True):
    """One queued record: a window or an event, with its idempotency key."""

    boot_id: Annotated[str, msgspec.Meta(pattern=whole(BOOT_ID_PATTERN))]
    sequence: Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQUENCE)]
    kind: Literal["window", "event"]
    window: TelemetryWindow | None = None
    event: EventRecord | None = None

    def __post_init__(self) -> None:
        problem = record_payload_problem(
            self.kind, has_window=self.window is not None, has_event=self.event is not None
        )
        if problem is not None:
            raise ValueError(problem)


class TelemetryBatch(WireStruct, kw_only=True):
    """What the uploader posts (gzip-compressed) to ``POST /v1/device/telemetry``."""

    schema_version: int = TELEMETRY_BATCH_SCHEMA_VERSION
    device_id: Annotated[str, msgspec.Meta(max_length=64)]
    sent_at: datetime
    records: Annotated[list[TelemetryRecord], msgspec.Meta(min_length=1, max_length=MAX_BATCH_RECORDS)]
    dropped: Annotated[dict[Code, Count], msgspec.Meta(max_length=MAX_CODES)] = {}
    queue_bytes: Count = 0
    queue_records: Count = 0
