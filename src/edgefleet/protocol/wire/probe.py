"""Probes as the agent reads and writes them (mirrors ``edgefleet.protocol.probe``): the director's order
(inside the desired state), the signed bundle's index, and the results the device reports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from edgefleet.protocol.probe_names import MAX_LATENCY_SAMPLES, PROBE_ID_PATTERN, PROBE_VALIDATION_FILE
from edgefleet.protocol.wire.base import Name, WireStruct, whole
from edgefleet.protocol.wire.desired_state import Assignment

__all__ = [
    "BatchLatency",
    "CandidateFigures",
    "PerturbedFigures",
    "ProbeCandidate",
    "ProbeIndex",
    "ProbeOrder",
    "ProbeResults",
    "SustainedFigures",
    "ThermalSnapshot",
]

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
ProbeId = Annotated[str, msgspec.Meta(pattern=whole(PROBE_ID_PATTERN))]
DAY_S = 24 * 3600.0


class ProbeOrder(WireStruct, kw_only=True):
    """Signed by the director inside the desired state: measure this bundle's candidates, by then."""

    probe_id: ProbeId
    bundle: Assignment
    deadline_at: AwareDatetime
    runs: Annotated[int, msgspec.Meta(ge=5, le=100_000)] = 50
    sustained_s: Annotated[float, msgspec.Meta(ge=0.0, le=DAY_S)] = 0.0
    time_limit_s: Annotated[float, msgspec.Meta(gt=0.0, le=DAY_S)] = 300.0


class ProbeCandidate(WireStruct, kw_only=True):
    name: Name
    kind: Annotated[str, msgspec.Meta(max_length=64)] = ""
    precision: Annotated[str, msgspec.Meta(max_length=16)] = "fp32"
    file: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class ProbeIndex(WireStruct, kw_only=True):
    """``probe.json`` inside the signed bundle: what to measure and how to judge it."""

    schema_version: int = 1
    model: Name
    version: Name
    hardware_class: Name
    task: Literal["classification", "regression", "embedding"] = "classification"
    judged_output: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    reference: Name = "fp32"
    candidates: Annotated[list[ProbeCandidate], msgspec.Meta(min_length=1, max_length=64)]
    validation_file: str = PROBE_VALIDATION_FILE


class ThermalSnapshot(WireStruct, kw_only=True):
    available: bool = False
    max_temp_c: float | None = None
    temps_c: dict[str, float] = {}
    cpu_freq_khz: dict[str, int] = {}
    throttle_count: int | None = None


class BatchLatency(WireStruct, kw_only=True):
    batch: Annotated[int, msgspec.Meta(ge=1)]
    runs: Annotated[int, msgspec.Meta(ge=0)]
    p50_ms: Annotated[float, msgspec.Meta(ge=0)]
    p95_ms: Annotated[float, msgspec.Meta(ge=0)]
    p99_ms: Annotated[float, msgspec.Meta(ge=0)]


class SustainedFigures(WireStruct, kw_only=True):
    duration_s: Annotated[float, msgspec.Meta(ge=0)]
    runs: Annotated[int, msgspec.Meta(ge=0)]
    window_s: Annotated[float, msgspec.Meta(gt=0)]
    first_p95_ms: float | None = None
    last_p95_ms: float | None = None
    drift_ratio: float | None = None
    throttle_events: int | None = None
    temp_rise_c: float | None = None
    thermal: Literal["available", "unavailable"] = "unavailable"


class PerturbedFigures(WireStruct, kw_only=True):
    agreement_metric: str | None = None
    agreement: float | None = None
    task_metric: str | None = None
    task_value: float | None = None
    has_nan: bool = False


class CandidateFigures(WireStruct, kw_only=True):
    name: Name
    status: Literal["measured", "failed"]
    error_code: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    error: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    load_ms: float | None = None
    first_inference_ms: float | None = None
    latency: Annotated[list[BatchLatency], msgspec.Meta(max_length=16)] = []
    latency_samples_ms: Annotated[list[float], msgspec.Meta(max_length=MAX_LATENCY_SAMPLES)] = []
    peak_rss_bytes: int | None = None
    task_metric: str | None = None
    task_value: float | None = None
    agreement_metric: str | None = None
    agreement: float | None = None
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    has_nan: bool = False
    yielded_s: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    thermal_before: ThermalSnapshot = msgspec.field(default_factory=ThermalSnapshot)
    thermal_after: ThermalSnapshot = msgspec.field(default_factory=ThermalSnapshot)
    sustained: SustainedFigures | None = None
    robustness: Annotated[dict[str, PerturbedFigures], msgspec.Meta(max_length=16)] = {}

    def p95_ms(self, batch: int = 1) -> float | None:
        return next((b.p95_ms for b in self.latency if b.batch == batch), None)


class ProbeResults(WireStruct, kw_only=True):
    """What one device measured for one probe (``POST /v1/device/probes/{probe_id}/results``)."""

    schema_version: int = 1
    probe_id: ProbeId
    started_at: AwareDatetime
    finished_at: AwareDatetime
    error_code: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    error: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    candidates: Annotated[list[CandidateFigures], msgspec.Meta(max_length=64)] = []
