"""Inference runtimes behind one small interface (``RuntimeAdapter`` -> ``LoadedModel``).

``edgefleet.agent.runtime.ort`` holds the ONNX Runtime adapter; import it where a runtime is chosen, so that
this package stays importable on a device without onnxruntime.
"""

from edgefleet.agent.runtime.base import (
    InferenceFailedError,
    LoadedModel,
    LoadOptions,
    ModelLoadError,
    RuntimeAdapter,
    SignatureMismatchError,
    check_signature,
    sample_inputs,
)

__all__ = [
    "InferenceFailedError",
    "LoadOptions",
    "LoadedModel",
    "ModelLoadError",
    "RuntimeAdapter",
    "SignatureMismatchError",
    "check_signature",
    "sample_inputs",
]
