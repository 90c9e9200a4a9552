"""Runtimes, precisions and execution providers by name, and the rule on a list of providers.

Plain data and a plain rule, so the pydantic ``RuntimeSpec`` and the agent's struct (``protocol.wire``) apply
the same text."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["EXECUTION_PROVIDERS", "PRECISIONS", "RUNTIME_NAMES", "providers_problem"]

RUNTIME_NAMES = ("onnxruntime", "openvino", "litert")
PRECISIONS = ("fp32", "fp16", "int8")
EXECUTION_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "CPUExecutionProvider",
)


def providers_problem(value: Sequence[str]) -> str | None:
    """What is wrong with a class's execution providers, or None: each known, none repeated."""
    unknown = [p for p in value if p not in EXECUTION_PROVIDERS]
    if unknown:
        return f"unknown execution providers {unknown}; known: {list(EXECUTION_PROVIDERS)}"
    if len(set(value)) != len(value):
        return "execution providers must not repeat"
    return None
