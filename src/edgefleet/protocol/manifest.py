"""The artifact manifest (ARCHITECTURE 3.1): one build of a model version for one hardware class."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from edgefleet.protocol.document import Document, Name, Part, Sha256Hex, is_safe_relpath
from edgefleet.protocol.hardware_class import Precision, RuntimeSpec
from edgefleet.protocol.limits import MAX_MANIFEST_BYTES
from edgefleet.protocol.names import (
    MANIFEST_FILE,
    artifact_files_problem,
    artifact_target_path,
    manifest_target_path,
)

__all__ = [
    "MANIFEST_FILE",
    "MAX_MANIFEST_BYTES",
    "ArtifactFile",
    "ArtifactManifest",
    "HealthCheck",
    "InputKind",
    "InputRange",
    "Metrics",
    "Optimization",
    "Signature",
    "TensorSpec",
    "artifact_target_path",
    "manifest_target_path",
]

InputKind = Literal["image", "signal", "tabular", "none"]
"""What the model's input is: the build perturbs it accordingly (noise, blur, dropouts, missing values)."""
DType = Literal["float32", "float16", "float64", "int8", "uint8", "int32", "int64", "bool"]


class ArtifactFile(Part):
    path: str
    sha256: Sha256Hex
    length: int = Field(ge=0)

    @field_validator("path")
    @classmethod
    def _safe(cls, value: str) -> str:
        if not is_safe_relpath(value):
            raise ValueError("path must be relative, without '..', of [A-Za-z0-9._/-]")
        return value


class TensorSpec(Part):
    name: str = Field(min_length=1, max_length=128)
    dtype: DType
    shape: list[int | str | None] = Field(description="None or a name for a dynamic dimension")


class Signature(Part):
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)


class InputRange(Part):
    """The values one input may hold in service: the calibration set's range, widened by a margin. The
    serving guard refuses a request outside it (``input_out_of_range``: a failing sensor, not the model)."""

    min: float = Field(allow_inf_nan=False)
    max: float = Field(allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> InputRange:
        if self.min > self.max:
            raise ValueError("min must be <= max")
        return self


class Optimization(Part):
    source_sha256: Sha256Hex
    quantization: Literal["none", "fp16", "int8_static", "int8_dynamic", "mixed"] = "none"
    calibration_method: str | None = None
    sparsity: float = Field(default=0.0, ge=0.0, lt=1.0)
    calibration_sha256: Sha256Hex | None = None
    candidate: str = "fp32"


class Metrics(Part):
    task_metric: str | None = None
    task_value: float | None = None
    reference_value: float | None = None
    top1_agreement: float | None = Field(default=None, ge=0, le=1)
    latency_p50_ms: float | None = Field(default=None, ge=0)
    latency_p95_ms: float | None = Field(default=None, ge=0)
    size_bytes: int | None = Field(default=None, ge=0)
    peak_memory_bytes: int | None = Field(default=None, ge=0)
    latency_unmeasured: str | None = Field(
        default=None,
        max_length=1000,
        description="why the class's latency was not measured where the build ran (its execution provider "
        "is missing there), and the probe that would settle it; absent: latency was measured",
    )
    sustained_last_p95_ms: float | None = Field(
        default=None, ge=0, description="p95 of the last window of a run under sustained load; None: no run"
    )
    sustained_drift_ratio: float | None = Field(default=None, ge=0, description="last / first window p95")
    sustained_measured_on: str | None = Field(default=None, max_length=500)
    sustained_unmeasured: str | None = Field(
        default=None,
        max_length=1000,
        description="the class declares a sustained-latency budget the chosen candidate was not run under",
    )


class HealthCheck(Part):
    golden_file: str = Field(description="an .npz among the artifact's files: inputs and expected outputs")
    atol: float = Field(default=1e-3, ge=0)
    rtol: float = Field(default=1e-3, ge=0)
    latency_ceiling_ms: float = Field(gt=0)
    warmup_runs: int = Field(default=3, ge=0, le=1000)


class ArtifactManifest(Document):
    """What a device needs to trust, load and check one build."""

    KIND = "artifact manifest"

    model: Name
    version: Name
    hardware_class: Name
    runtime: RuntimeSpec
    precision: Precision = "fp32"
    entrypoint: str = Field(description="the model file among files, e.g. model.onnx")
    files: list[ArtifactFile] = Field(min_length=1, max_length=256)
    signature: Signature
    optimization: Optimization
    metrics: Metrics = Field(default_factory=Metrics)
    health_check: HealthCheck
    release_counter: int = Field(ge=0)
    input_kind: InputKind = "none"
    input_ranges: dict[str, InputRange] = Field(
        default_factory=dict, max_length=64, description="per float input; absent: no range check"
    )

    @model_validator(mode="after")
    def _files_consistent(self) -> ArtifactManifest:
        problem = artifact_files_problem(
            [f.path for f in self.files], self.entrypoint, self.health_check.golden_file
        )
        if problem is not None:
            raise ValueError(problem)
        return self

    @property
    def total_bytes(self) -> int:
        return sum(f.length for f in self.files)

    def file(self, path: str) -> ArtifactFile:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(path)
