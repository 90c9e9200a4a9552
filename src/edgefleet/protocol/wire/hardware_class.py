"""A hardware class as the agent reads it (mirrors ``edgefleet.protocol.hardware_class``).

The agent reads the class pinned at enrollment (``identity/class.json``): its threads, budgets, batch size,
bandwidths and update windows. The struct carries every field of the model (``CLASS_IGNORED`` is empty), so a
stored class the server would refuse is refused here too; the rules a schema cannot carry (a window's syntax,
CPU flag names, providers) are the model's own functions (``protocol.class_rules``,
``protocol.runtime_names``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

from edgefleet.protocol.class_rules import (
    MAX_WINDOW_OVERRIDES,
    checked_cpu_features,
    checked_window,
    device_window,
)
from edgefleet.protocol.runtime_names import providers_problem
from edgefleet.protocol.wire.base import Name, WireStruct, to_plain

__all__ = [
    "CLASS_IGNORED",
    "Budgets",
    "HardwareClass",
    "Performance",
    "Precision",
    "RuntimeSpec",
    "Threads",
    "WindowOverride",
]

CLASS_IGNORED: tuple[str, ...] = ()
"""The model's fields the agent's struct leaves out (none: the conformance test checks them all)."""
Precision = Literal["fp32", "fp16", "int8"]


def _cpu_only() -> list[str]:
    return ["CPUExecutionProvider"]


def _fp32_only() -> list[Precision]:
    return ["fp32"]


class RuntimeSpec(WireStruct, kw_only=True):
    name: Literal["onnxruntime", "openvino", "litert"] = "onnxruntime"
    min_version: str = "1.16"
    execution_providers: Annotated[list[str], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=_cpu_only
    )

    def __post_init__(self) -> None:
        problem = providers_problem(self.execution_providers)
        if problem is not None:
            raise ValueError(problem)


class Threads(WireStruct, kw_only=True):
    intra_op: Annotated[int, msgspec.Meta(ge=1, le=256)] = 1
    inter_op: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1


class Budgets(WireStruct, kw_only=True):
    ram_mb: Annotated[int, msgspec.Meta(gt=0)]
    storage_mb: Annotated[int, msgspec.Meta(gt=0)]
    max_model_mb: Annotated[float, msgspec.Meta(gt=0)]
    cpu_cores: Annotated[float, msgspec.Meta(gt=0, le=1024)] | None = None
    storage_read_mb_s: Annotated[float, msgspec.Meta(gt=0, le=100_000)] | None = None


class Performance(WireStruct, kw_only=True):
    latency_p95_ms: Annotated[float, msgspec.Meta(gt=0)]
    max_batch: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 1
    load_time_ms: Annotated[float, msgspec.Meta(gt=0)] | None = None
    sustained_latency_p95_ms: Annotated[float, msgspec.Meta(gt=0, le=3_600_000)] | None = None


class WindowOverride(WireStruct, kw_only=True):
    """A class's update window for the devices whose labels match ``labels`` (all of them, exactly)."""

    labels: Annotated[dict[str, str], msgspec.Meta(min_length=1, max_length=16)]
    update_window: str

    def __post_init__(self) -> None:
        checked_window(self.update_window)


class HardwareClass(WireStruct, kw_only=True):
    """A named deployment target, as the server stored it and the device pinned it at enrollment."""

    schema_version: int = 1
    name: Name
    description: str = ""
    cpu_arch: Literal["x86_64", "aarch64", "armv7l", "riscv64"]
    accelerator: str = "none"
    objective: Literal["latency", "size", "balanced"] = "latency"
    runtime: RuntimeSpec = msgspec.field(default_factory=RuntimeSpec)
    precisions: Annotated[list[Precision], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=_fp32_only
    )
    supported_ops: list[str] = []
    cpu_features: list[str] | None = None
    threads: Threads = msgspec.field(default_factory=Threads)
    budgets: Budgets
    performance: Performance
    thermal_notes: str = ""
    power_w: Annotated[float, msgspec.Meta(gt=0)] | None = None
    connectivity: Literal["always", "intermittent", "rare"] = "intermittent"
    update_window: str = "any"
    window_overrides: Annotated[list[WindowOverride], msgspec.Meta(max_length=MAX_WINDOW_OVERRIDES)] = []
    telemetry_bytes_per_s: Annotated[int, msgspec.Meta(gt=0)] = 2048
    download_bytes_per_s: Annotated[int, msgspec.Meta(gt=0)] | None = None

    def __post_init__(self) -> None:
        checked_window(self.update_window)
        self.cpu_features = checked_cpu_features(self.cpu_features)

    def window_for(self, labels: Mapping[str, str]) -> str:
        """The window text for a device with ``labels``: the first matching override, else the class's."""
        return device_window(to_plain(self), labels)
