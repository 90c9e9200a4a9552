"""Hardware classes: named deployment targets and their budgets (ARCHITECTURE 2)."""

from __future__ import annotations

import sys
from typing import Any, Literal

from pydantic import Field, field_validator

from edgefleet.protocol.document import Document, Name, Part
from edgefleet.protocol.errors import InvalidDocumentError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "EXECUTION_PROVIDERS",
    "PRECISIONS",
    "Budgets",
    "HardwareClass",
    "Performance",
    "RuntimeSpec",
    "Threads",
    "parse_classes_toml",
]

PRECISIONS = ("fp32", "fp16", "int8")
Precision = Literal["fp32", "fp16", "int8"]
EXECUTION_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "CPUExecutionProvider",
)
MAX_CLASSES_FILE_BYTES = 1_000_000


class RuntimeSpec(Part):
    name: Literal["onnxruntime", "openvino", "litert"] = "onnxruntime"
    min_version: str = "1.16"
    execution_providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"], min_length=1)

    @field_validator("execution_providers")
    @classmethod
    def _known_providers(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p not in EXECUTION_PROVIDERS]
        if unknown:
            raise ValueError(f"unknown execution providers {unknown}; known: {list(EXECUTION_PROVIDERS)}")
        if len(set(value)) != len(value):
            raise ValueError("execution providers must not repeat")
        return value


class Threads(Part):
    intra_op: int = Field(default=1, ge=1, le=256)
    inter_op: int = Field(default=1, ge=1, le=64)


class Budgets(Part):
    ram_mb: int = Field(gt=0)
    storage_mb: int = Field(gt=0)
    max_model_mb: float = Field(gt=0)
    cpu_cores: float | None = Field(
        default=None,
        gt=0,
        le=1024,
        description="CPU time the model may use, in cores (a cgroup cpu.max quota); None: threads.intra_op",
    )
    storage_read_mb_s: float | None = Field(
        default=None,
        gt=0,
        le=100_000,
        description="sequential read speed of the class's storage (MB/s): the build reads the model at it "
        "to measure load time and first inference; None: not declared",
    )


class Performance(Part):
    latency_p95_ms: float = Field(gt=0, description="batch 1, after warm-up")
    max_batch: int = Field(default=1, ge=1, le=4096)
    load_time_ms: float | None = Field(
        default=None, gt=0, description="budget for creating the runtime session from the file; None: none"
    )
    sustained_latency_p95_ms: float | None = Field(
        default=None,
        gt=0,
        le=3_600_000,
        description="budget for the p95 of the last window (minute) of a run under sustained load, batch 1; "
        "judged on devices' or emulated figures, never the build host's; None: none",
    )


class HardwareClass(Document):
    """A named deployment target. Operators apply these from a TOML file."""

    @field_validator("cpu_features")
    @classmethod
    def _flag_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        bad = [f for f in value if not f or len(f) > 32 or not f.replace("_", "").isalnum()]
        if bad:
            raise ValueError(f"cpu feature names are /proc/cpuinfo flags (letters, digits, _); got {bad}")
        return sorted({f.lower() for f in value})

    KIND = "hardware class"

    name: Name
    description: str = ""
    cpu_arch: Literal["x86_64", "aarch64", "armv7l", "riscv64"]
    accelerator: str = "none"
    objective: Literal["latency", "size", "balanced"] = Field(
        default="latency",
        description="what the build optimizes once every hard budget holds: latency, model size, or both",
    )
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    precisions: list[Precision] = Field(default_factory=lambda: list[Precision](["fp32"]), min_length=1)
    supported_ops: list[str] = Field(default_factory=list, description="empty: all ops of the runtime")
    cpu_features: list[str] | None = Field(
        default=None,
        description="the devices' CPU flags as /proc/cpuinfo names them (e.g. avx2, avx512_vnni, asimddp); "
        "None: unknown, and the build assumes the most conservative CPU of the arch",
    )
    threads: Threads = Field(default_factory=Threads)
    budgets: Budgets
    performance: Performance
    thermal_notes: str = ""
    power_w: float | None = Field(default=None, gt=0)
    connectivity: Literal["always", "intermittent", "rare"] = "intermittent"
    update_window: str = Field(default="any", description="e.g. '02:00-04:00 local' or 'any'")
    telemetry_bytes_per_s: int = Field(default=2048, gt=0)
    download_bytes_per_s: int | None = Field(
        default=None,
        gt=0,
        description="the most an update download (full files and deltas) may use of the link; None: no cap",
    )


def parse_classes_toml(text: str | bytes) -> list[HardwareClass]:
    """Parse a classes file: ``[class.<name>]`` tables, each a hardware class.

    Raises ``InvalidDocumentError`` (code ``malformed_toml`` or ``invalid_document``) naming the class.
    """
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if len(raw) > MAX_CLASSES_FILE_BYTES:
        raise InvalidDocumentError(
            "classes file too large", code="document_too_large", expected=MAX_CLASSES_FILE_BYTES, got=len(raw)
        )
    try:
        data: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidDocumentError(
            f"classes file is not valid TOML: {exc}", code="malformed_toml", expected="TOML", got=str(exc)
        ) from exc
    version = data.get("schema_version", HardwareClass.SCHEMA_VERSION)
    tables = data.get("class")
    if not isinstance(tables, dict) or not tables:
        raise InvalidDocumentError(
            "classes file has no [class.<name>] tables", expected="[class.<name>] tables", got=sorted(data)
        )
    out: list[HardwareClass] = []
    for name, body in tables.items():
        if not isinstance(body, dict):
            raise InvalidDocumentError(
                f"class {name!r} must be a table", expected="table", got=type(body).__name__
            )
        try:
            out.append(HardwareClass.parse({"schema_version": version, **body, "name": name}))
        except InvalidDocumentError as exc:
            exc.message = f"class {name!r}: {exc.message}"
            exc.args = (exc.message,)
            raise
    return out
