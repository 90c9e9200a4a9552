"""An artifact manifest as the agent reads it (mirrors ``edgefleet.protocol.manifest``).

The agent reads a manifest that TUF verified (the fetch child) or that it stored after that check (a slot's
copy). The struct carries every field, the build's record (``optimization``, ``metrics``) too: an installed
version's content address is the SHA-256 of its canonical manifest (``install.slots.version_key``), the same
bytes the pydantic model gave, so versions installed by an earlier agent keep their address. Fields a newer
server adds are not kept (``docs/decisions.md``)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import msgspec

from edgefleet.protocol.names import artifact_files_problem, is_safe_relpath
from edgefleet.protocol.wire.base import Name, Sha256Hex, WireStruct
from edgefleet.protocol.wire.hardware_class import Precision, RuntimeSpec

__all__ = [
    "ArtifactFile",
    "ArtifactManifest",
    "HealthCheck",
    "InputRange",
    "Metrics",
    "Optimization",
    "Signature",
    "TensorSpec",
]

InputKind = Literal["image", "signal", "tabular", "none"]
DType = Literal["float32", "float16", "float64", "int8", "uint8", "int32", "int64", "bool"]


class ArtifactFile(WireStruct, kw_only=True):
    path: str
    sha256: Sha256Hex
    length: Annotated[int, msgspec.Meta(ge=0)]

    def __post_init__(self) -> None:
        if not is_safe_relpath(self.path):
            raise ValueError("path must be relative, without '..', of [A-Za-z0-9._/-]")


class TensorSpec(WireStruct, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    dtype: DType
    shape: list[int | str | None]


class Signature(WireStruct, kw_only=True):
    inputs: Annotated[list[TensorSpec], msgspec.Meta(min_length=1)]
    outputs: Annotated[list[TensorSpec], msgspec.Meta(min_length=1)]


class InputRange(WireStruct, kw_only=True):
    min: float
    max: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min) and math.isfinite(self.max)):
            raise ValueError("min and max must be finite")
        if self.min > self.max:
            raise ValueError("min must be <= max")


class Optimization(WireStruct, kw_only=True):
    source_sha256: Sha256Hex
    quantization: Literal["none", "fp16", "int8_static", "int8_dynamic", "mixed"] = "none"
    calibration_method: str | None = None
    sparsity: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)] = 0.0
    calibration_sha256: Sha256Hex | None = None
    candidate: str = "fp32"


class Metrics(WireStruct, kw_only=True):
    task_metric: str | None = None
    task_value: float | None = None
    reference_value: float | None = None
    top1_agreement: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    latency_p50_ms: Annotated[float, msgspec.Meta(ge=0)] | None = None
    latency_p95_ms: Annotated[float, msgspec.Meta(ge=0)] | None = None
    size_bytes: Annotated[int, msgspec.Meta(ge=0)] | None = None
    peak_memory_bytes: Annotated[int, msgspec.Meta(ge=0)] | None = None
    latency_unmeasured: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    sustained_last_p95_ms: Annotated[float, msgspec.Meta(ge=0)] | None = None
    sustained_drift_ratio: Annotated[float, msgspec.Meta(ge=0)] | None = None
    sustained_measured_on: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    sustained_unmeasured: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


class HealthCheck(WireStruct, kw_only=True):
    golden_file: str
    atol: Annotated[float, msgspec.Meta(ge=0)] = 1e-3
    rtol: Annotated[float, msgspec.Meta(ge=0)] = 1e-3
    latency_ceiling_ms: Annotated[float, msgspec.Meta(gt=0)]
    warmup_runs: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 3


class ArtifactManifest(WireStruct, kw_only=True):
    """What a device needs to trust, load and check one build."""

    schema_version: int = 1
    model: Name
    version: Name
    hardware_class: Name
    runtime: RuntimeSpec
    precision: Precision = "fp32"
    entrypoint: str
    files: Annotated[list[ArtifactFile], msgspec.Meta(min_length=1, max_length=256)]
    signature: Signature
    optimization: Optimization
    metrics: Metrics = msgspec.field(default_factory=Metrics)
    health_check: HealthCheck
    release_counter: Annotated[int, msgspec.Meta(ge=0)]
    input_kind: InputKind = "none"
    input_ranges: Annotated[dict[str, InputRange], msgspec.Meta(max_length=64)] = {}

    def __post_init__(self) -> None:
        problem = artifact_files_problem(
            [f.path for f in self.files], self.entrypoint, self.health_check.golden_file
        )
        if problem is not None:
            raise ValueError(problem)

    @property
    def total_bytes(self) -> int:
        return sum(f.length for f in self.files)

    def file(self, path: str) -> ArtifactFile:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(path)
