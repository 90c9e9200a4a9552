"""Where a runtime placed a model against where the class wants it: a class that asks for an accelerator
(CUDA, TensorRT, an OpenVINO GPU/NPU) whose runtime silently put the model on the CPU has not got its
preferred rung (ARCHITECTURE 3.5), and serving must say so rather than report ``preferred``."""

from __future__ import annotations

from edgefleet.agent.runtime.base import LoadedModel
from edgefleet.protocol.errors import EdgefleetError

__all__ = ["CPU_ONLY", "AcceleratorUnavailableError", "check_preferred"]

_CPU = ("CPUExecutionProvider",)
CPU_ONLY = {("CPUExecutionProvider",), ("OpenVINO:CPU",), ("LiteRT:CPU",)}
"""What a model on the CPU reports as its providers (ONNX Runtime, OpenVINO native, LiteRT)."""


class AcceleratorUnavailableError(EdgefleetError):
    """The preferred rung loaded, but on the CPU. Carries that model so the ``cpu`` rung can serve it
    without loading it twice."""

    code = "accelerator_unavailable"

    def __init__(self, model: LoadedModel, wanted: list[str]) -> None:
        super().__init__(
            "the class's accelerator is not available on this device; the model would run on the CPU",
            expected=wanted,
            got=list(model.providers),
        )
        self.cpu_model: LoadedModel | None = model

    def release(self) -> None:
        if self.cpu_model is not None:
            self.cpu_model.close()
            self.cpu_model = None


def check_preferred(model: LoadedModel, providers: tuple[str, ...]) -> bool:
    """Whether the preferred rung is the CPU. A class that asks for an accelerator (CUDA, TensorRT, an
    OpenVINO GPU/NPU) whose runtime silently placed the model on the CPU has not got its preferred rung:
    ``accelerator_unavailable`` sends serving down to the ``cpu`` rung, where it is reported (mode, reason,
    degraded time) and the accelerator is probed again with backoff."""
    on_cpu = tuple(model.providers) in CPU_ONLY
    wanted = [p for p in providers if p not in _CPU]
    if wanted and on_cpu:
        raise AcceleratorUnavailableError(model, wanted)
    return on_cpu
