"""The LiteRT runtime adapter (``pip install edgefleet[litert]``): serves ``.tflite`` models on the CPU.

LiteRT (formerly TensorFlow Lite) runs the model's own kernels (XNNPACK for float, its int8 kernels for
quantized models) with the class's thread count. One ``Interpreter`` holds one set of tensors, so runs are
serialized by a lock (``predict`` is thread-safe); an input whose batch differs from the current one
resizes the tensors first. LiteRT cannot abort a run: ``cancel`` refuses later runs, one in flight finishes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from edgefleet.agent.runtime.base import (
    InferenceFailedError,
    LoadOptions,
    ModelLoadError,
    check_signature,
    sample_inputs,
)
from edgefleet.protocol.wire.manifest import Signature, TensorSpec

__all__ = ["LiteRtAdapter", "LiteRtModel", "tensor_spec"]


def tensor_spec(detail: Mapping[str, Any]) -> TensorSpec:
    """A tensor's name, dtype and shape as the manifest writes them (``-1`` in LiteRT's shape signature is a
    dynamic dimension: ``None``)."""
    dims = detail.get("shape_signature")
    if dims is None or len(dims) == 0:
        dims = detail["shape"]
    shape: list[int | str | None] = [None if int(d) < 0 else int(d) for d in dims]
    return TensorSpec(name=detail["name"], dtype=np.dtype(detail["dtype"]).name, shape=shape)


class LiteRtModel:
    def __init__(self, interpreter: Any) -> None:
        self._interpreter = interpreter
        details = interpreter.get_input_details()
        self._inputs = {d["name"]: d["index"] for d in details}
        self._shapes = {d["name"]: tuple(int(x) for x in d["shape"]) for d in details}
        self._outputs = [(d["name"], d["index"]) for d in interpreter.get_output_details()]
        self._lock = threading.Lock()
        self._closed = False

    @property
    def providers(self) -> tuple[str, ...]:
        return ("LiteRT:CPU",)

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            if self._closed:
                raise InferenceFailedError("model is closed", code="model_closed")
            interpreter = self._interpreter
            try:
                resized = False
                for name, index in self._inputs.items():
                    shape = tuple(inputs[name].shape)
                    if self._shapes[name] != shape:
                        interpreter.resize_tensor_input(index, list(shape))
                        self._shapes[name] = shape
                        resized = True
                if resized:
                    interpreter.allocate_tensors()
                for name, index in self._inputs.items():
                    interpreter.set_tensor(index, np.ascontiguousarray(inputs[name]))
                interpreter.invoke()
                return {name: interpreter.get_tensor(index) for name, index in self._outputs}
            except (ValueError, RuntimeError, KeyError) as exc:  # LiteRT raises both for bad shapes/runs
                raise InferenceFailedError(f"inference failed: {str(exc)[:300]}") from exc

    def cancel(self) -> None:
        self._closed = True

    def close(self) -> None:
        with self._lock:
            self._closed = True


class LiteRtAdapter:
    name = "litert"

    def load(self, model_path: Path, signature: Signature, options: LoadOptions) -> LiteRtModel:
        try:
            interpreter = Interpreter(model_path=str(model_path), num_threads=options.intra_op_threads)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:  # a missing, corrupt or unsupported file
            raise ModelLoadError(
                f"LiteRT could not load the model: {str(exc)[:300]}", got=str(model_path)
            ) from exc
        check_signature(
            signature,
            [tensor_spec(d) for d in interpreter.get_input_details()],
            [tensor_spec(d) for d in interpreter.get_output_details()],
        )
        model = LiteRtModel(interpreter)
        warm = sample_inputs(signature)
        for _ in range(options.warmup_runs):
            model.predict(warm)
        return model
