"""A hardware class as the agent reads it (mirrors ``edgefleet.protocol.hardware_class``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from edgefleet.protocol.runtime_names import providers_problem
from edgefleet.protocol.wire.base import WireStruct

__all__ = ["Precision", "RuntimeSpec", "Threads"]

Precision = Literal["fp32", "fp16", "int8"]


def _cpu_only() -> list[str]:
    return ["CPUExecutionProvider"]


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
