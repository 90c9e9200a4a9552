"""What each inference runtime edgefleet has an agent adapter for can serve (ARCHITECTURE 2: "a class must be
servable by an adapter"), and the one rule that judges a hardware class against it.

The control plane refuses, at ``class apply``, a class no adapter can serve; the agent names the same
runtimes. A runtime is listed here only once the agent has an adapter for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.hardware_class import HardwareClass

__all__ = ["RUNTIME_SUPPORT", "SERVABLE_RUNTIMES", "RuntimeSupport", "check_servable"]


@dataclass(frozen=True)
class RuntimeSupport:
    execution_providers: tuple[str, ...]
    """The class providers the adapter honours (in the class's preference order, CPU as the last resort)."""
    precisions: tuple[str, ...]
    extra: str
    """The agent extra that installs the runtime (``pip install edgefleet[<extra>]``)."""


RUNTIME_SUPPORT: dict[str, RuntimeSupport] = {
    "onnxruntime": RuntimeSupport(
        execution_providers=(
            "TensorrtExecutionProvider",
            "CUDAExecutionProvider",
            "OpenVINOExecutionProvider",
            "CPUExecutionProvider",
        ),
        precisions=("fp32", "fp16", "int8"),
        extra="agent",
    ),
    # The OpenVINO native adapter: ``OpenVINOExecutionProvider`` in a class asks for the device's GPU or NPU
    # plugin, ``CPUExecutionProvider`` for the CPU plugin. CUDA/TensorRT mean nothing to it.
    "openvino": RuntimeSupport(
        execution_providers=("OpenVINOExecutionProvider", "CPUExecutionProvider"),
        precisions=("fp32", "fp16", "int8"),
        extra="openvino",
    ),
}
SERVABLE_RUNTIMES = tuple(RUNTIME_SUPPORT)


def check_servable(doc: HardwareClass) -> None:
    """Pure: raise ``InvalidDocumentError`` when no agent adapter can serve ``doc``.

    Codes: ``runtime_unsupported`` (no adapter for the runtime), ``execution_provider_unsupported`` (a
    provider the runtime's adapter cannot use), ``precision_unsupported`` (a precision it cannot run).
    """
    runtime = doc.runtime.name
    support = RUNTIME_SUPPORT.get(runtime)
    if support is None:
        raise InvalidDocumentError(
            f"class {doc.name!r}: no agent adapter serves runtime {runtime!r}",
            code="runtime_unsupported",
            expected=list(SERVABLE_RUNTIMES),
            got=runtime,
        )
    providers = [p for p in doc.runtime.execution_providers if p not in support.execution_providers]
    if providers:
        raise InvalidDocumentError(
            f"class {doc.name!r}: runtime {runtime!r} cannot use execution providers {providers}",
            code="execution_provider_unsupported",
            expected=list(support.execution_providers),
            got=list(doc.runtime.execution_providers),
        )
    precisions = [p for p in doc.precisions if p not in support.precisions]
    if precisions:
        raise InvalidDocumentError(
            f"class {doc.name!r}: runtime {runtime!r} cannot run precisions {precisions}",
            code="precision_unsupported",
            expected=list(support.precisions),
            got=list(doc.precisions),
        )
