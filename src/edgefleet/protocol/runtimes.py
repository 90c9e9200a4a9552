"""What each inference runtime edgefleet has an agent adapter for can serve (ARCHITECTURE 2: "a class must be
servable by an adapter"), and the one rule that judges a hardware class against it.

The control plane refuses, at ``class apply``, a class no adapter can serve; the agent names the same
runtimes. A runtime is listed here only once the agent has an adapter for it. The agent imports this module
(the runtimes it serves, OpenVINO's compile properties), so it imports the pydantic ``HardwareClass`` for
type checking only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgefleet.protocol.errors import InvalidDocumentError

if TYPE_CHECKING:  # pydantic: the server's check only; the agent imports this module without it
    from edgefleet.protocol.hardware_class import HardwareClass

__all__ = [
    "OPENVINO_DTYPES",
    "RUNTIME_SUPPORT",
    "SERVABLE_RUNTIMES",
    "RuntimeSupport",
    "check_servable",
    "openvino_compile_config",
]


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
    # LiteRT serves .tflite on the CPU (XNNPACK); GPU/NPU delegates are not wired yet.
    "litert": RuntimeSupport(
        execution_providers=("CPUExecutionProvider",),
        precisions=("fp32", "fp16", "int8"),
        extra="litert",
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


def openvino_compile_config(device: str, threads: int) -> dict[str, Any]:
    """Pure: the OpenVINO properties both the build (measuring) and the agent (serving) compile with, so a
    build is measured as it is served. CPU and GPU are held to f32 execution: left to itself the CPU plugin
    runs bf16 on cores with AMX or AVX512-BF16 (and GPU runs f16), which silently changes the answers the
    build validated (seen here: 3 % relative error on a small classifier). Quantized layers stay int8."""
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads}
    if device.split(".")[0] in ("CPU", "GPU"):
        config["INFERENCE_PRECISION_HINT"] = "f32"
    return config


OPENVINO_DTYPES = {
    "f32": "float32",
    "f16": "float16",
    "f64": "float64",
    "i8": "int8",
    "u8": "uint8",
    "i32": "int32",
    "i64": "int64",
    "boolean": "bool",
}
"""OpenVINO element type names -> the manifest's dtype names (the build writes IR signatures with it, the
agent checks a loaded model against the manifest with it)."""
