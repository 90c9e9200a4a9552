"""Probes on the wire: the director's order to a device, the signed bundle's index, the device's results.

A probe asks real devices of a class to measure a build's candidates. The candidates and the validation
inputs travel as one release-signed bundle (an artifact-shaped TUF target set: ``probe.json``,
``candidates/<name>.onnx``, ``validation.npz``); the director names it in the desired state like an
assignment (``ProbeOrder.bundle``). The device answers with one ``ProbeResults`` document. The names, bounds
and the validation file's reading are in ``protocol.probe_names`` (the agent's structs use them too).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from edgefleet.protocol.desired_state import Assignment
from edgefleet.protocol.document import Document, Name, Part
from edgefleet.protocol.probe_names import (
    MAX_LATENCY_SAMPLES,
    MAX_PROBE_RESULTS_BYTES,
    PERTURBED_PREFIX,
    PROBE_ID_PATTERN,
    PROBE_INDEX_FILE,
    PROBE_VALIDATION_FILE,
    perturbed_sets,
)

__all__ = [
    "MAX_LATENCY_SAMPLES",
    "MAX_PROBE_RESULTS_BYTES",
    "PERTURBED_PREFIX",
    "PROBE_ID_PATTERN",
    "PROBE_INDEX_FILE",
    "PROBE_VALIDATION_FILE",
    "BatchLatency",
    "CandidateFigures",
    "ProbeCandidate",
    "ProbeIndex",
    "ProbeOrder",
    "ProbeResults",
    "SustainedFigures",
    "ThermalSnapshot",
    "perturbed_sets",
]


class ProbeOrder(Part):
    """Signed by the director inside the desired state: measure this bundle's candidates, by then."""

    probe_id: str = Field(pattern=PROBE_ID_PATTERN)
    bundle: Assignment
    deadline_at: AwareDatetime
    runs: int = Field(default=50, ge=5, le=100_000, description="timed runs per candidate and batch size")
    sustained_s: float = Field(default=0.0, ge=0.0, le=24 * 3600.0)
    time_limit_s: float = Field(default=300.0, gt=0.0, le=24 * 3600.0, description="per candidate")


class ProbeCandidate(Part):
    name: Name
    kind: str = Field(default="", max_length=64)
    precision: str = Field(default="fp32", max_length=16)
    file: str = Field(min_length=1, max_length=256, description="a path among the bundle's files")


class ProbeIndex(Document):
    """``probe.json`` inside the signed bundle: what to measure and how to judge it."""

    KIND = "probe index"

    model: Name
    version: Name
    hardware_class: Name
    task: Literal["classification", "regression", "embedding"] = "classification"
    judged_output: str = Field(min_length=1, max_length=128)
    reference: Name = Field(default="fp32", description="the candidate the others are compared with")
    candidates: list[ProbeCandidate] = Field(min_length=1, max_length=64)
    validation_file: str = PROBE_VALIDATION_FILE


class ThermalSnapshot(Part):
    """What ``/sys`` says; ``available`` is False (and the figures None) where the device exposes nothing."""

    available: bool = False
    max_temp_c: float | None = None
    temps_c: dict[str, float] = Field(default_factory=dict)
    cpu_freq_khz: dict[str, int] = Field(default_factory=dict)
    throttle_count: int | None = Field(default=None, description="sum of the CPUs' thermal throttle counters")


class BatchLatency(Part):
    batch: int = Field(ge=1)
    runs: int = Field(ge=0)
    p50_ms: float = Field(ge=0)
    p95_ms: float = Field(ge=0)
    p99_ms: float = Field(ge=0)


class SustainedFigures(Part):
    duration_s: float = Field(ge=0)
    runs: int = Field(ge=0)
    window_s: float = Field(gt=0, description="60 s, or a third of a shorter run")
    first_p95_ms: float | None = None
    last_p95_ms: float | None = None
    drift_ratio: float | None = Field(default=None, description="last window p95 / first window p95")
    throttle_events: int | None = Field(default=None, description="None: no throttle counters on this device")
    temp_rise_c: float | None = Field(default=None, description="None: no thermal zones on this device")
    thermal: Literal["available", "unavailable"] = "unavailable"


class PerturbedFigures(Part):
    """One candidate on one perturbation of the validation inputs, against FP32's outputs on the same."""

    agreement_metric: str | None = None
    agreement: float | None = None
    task_metric: str | None = None
    task_value: float | None = None
    has_nan: bool = False


class CandidateFigures(Part):
    name: Name
    status: Literal["measured", "failed"]
    error_code: str | None = Field(default=None, max_length=64)
    error: str | None = Field(default=None, max_length=1000)
    load_ms: float | None = None
    first_inference_ms: float | None = None
    latency: list[BatchLatency] = Field(default_factory=list, max_length=16)
    latency_samples_ms: list[float] = Field(
        default_factory=list,
        max_length=MAX_LATENCY_SAMPLES,
        description="batch-1 timed runs (evenly thinned to at most 500): the selection's noise interval",
    )
    peak_rss_bytes: int | None = None
    task_metric: str | None = None
    task_value: float | None = None
    agreement_metric: str | None = None
    agreement: float | None = None
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    has_nan: bool = False
    yielded_s: float = Field(default=0.0, ge=0, description="time paused because serving was busy")
    thermal_before: ThermalSnapshot = Field(default_factory=ThermalSnapshot)
    thermal_after: ThermalSnapshot = Field(default_factory=ThermalSnapshot)
    sustained: SustainedFigures | None = None
    robustness: dict[str, PerturbedFigures] = Field(
        default_factory=dict, max_length=16, description="per perturbation the bundle carried (none: none)"
    )

    def p95_ms(self, batch: int = 1) -> float | None:
        return next((b.p95_ms for b in self.latency if b.batch == batch), None)


class ProbeResults(Document):
    """What one device measured for one probe (``POST /v1/device/probes/{probe_id}/results``)."""

    KIND = "probe results"

    probe_id: str = Field(pattern=PROBE_ID_PATTERN)
    started_at: AwareDatetime
    finished_at: AwareDatetime
    error_code: str | None = Field(default=None, max_length=64, description="the whole probe failed")
    error: str | None = Field(default=None, max_length=1000)
    candidates: list[CandidateFigures] = Field(default_factory=list, max_length=64)
