"""The OpenVINO native runtime adapter (``pip install edgefleet[openvino]``): reads ONNX (and OpenVINO IR).

Device choice from the class's providers: a class that lists any accelerator provider gets the first of
``GPU``, ``NPU`` present on this device (absent ones skipped and logged), otherwise ``CPU``. Threads from the
class (``INFERENCE_NUM_THREADS``), warm-up on load, signature checked against the manifest. One infer request
per calling thread, so ``predict`` is thread-safe; outputs are copied out of the request's buffers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from edgefleet.agent.runtime.base import (
    InferenceFailedError,
    LoadOptions,
    ModelLoadError,
    check_signature,
    sample_inputs,
)
from edgefleet.protocol.runtimes import OPENVINO_DTYPES, openvino_compile_config
from edgefleet.protocol.wire.manifest import Signature, TensorSpec

__all__ = ["OpenVinoAdapter", "OpenVinoModel", "compile_config", "select_device"]

log = logging.getLogger("edgefleet.agent.runtime")

_ACCELERATORS = ("GPU", "NPU")


def select_device(providers: Sequence[str], available: Sequence[str]) -> tuple[str, list[str]]:
    """Pure: (the OpenVINO device to use, the accelerators asked for but absent here)."""
    wants_accelerator = any(p != "CPUExecutionProvider" for p in providers)
    if not wants_accelerator:
        return "CPU", []
    for device in _ACCELERATORS:
        if any(d == device or d.startswith(f"{device}.") for d in available):
            return device, []
    return "CPU", list(_ACCELERATORS)


def _spec(port: Any) -> TensorSpec:
    dims: list[int | str | None] = [
        None if d.is_dynamic else int(d.get_length()) for d in port.get_partial_shape()
    ]
    kind = port.get_element_type().get_type_name()
    return TensorSpec(name=port.any_name, dtype=OPENVINO_DTYPES.get(kind, kind), shape=dims)


class OpenVinoModel:
    def __init__(self, compiled: Any, device: str) -> None:
        self._compiled = compiled
        self._device = device
        self._outputs = [(port, port.any_name) for port in compiled.outputs]
        self._local = threading.local()
        self._lock = threading.Lock()
        self._in_flight: set[Any] = set()
        self._cancelled: set[int] = set()
        self._closed = False

    @property
    def providers(self) -> tuple[str, ...]:
        return (f"OpenVINO:{self._device}",)

    def _request(self) -> Any:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        return request

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = self._request()
        with self._lock:
            if self._closed:
                raise InferenceFailedError("model is closed", code="model_closed")
            self._in_flight.add(request)
        try:
            results = request.infer(dict(inputs))
            return {name: np.array(results[port], copy=True) for port, name in self._outputs}
        except Exception as exc:  # openvino raises RuntimeError for everything
            with self._lock:
                cancelled = id(request) in self._cancelled
            code = "inference_cancelled" if cancelled else "inference_failed"
            raise InferenceFailedError(f"inference failed: {exc}", code=code) from exc
        finally:
            with self._lock:
                self._in_flight.discard(request)
                self._cancelled.discard(id(request))

    def cancel(self) -> None:
        with self._lock:
            for request in self._in_flight:
                self._cancelled.add(id(request))
                request.cancel()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.cancel()


def compile_config(device: str, options: LoadOptions) -> dict[str, Any]:
    """Pure: OpenVINO properties for ``device`` (the rule lives in ``protocol.runtimes``, shared with the
    build, which measures what the agent serves)."""
    return openvino_compile_config(device, options.intra_op_threads)


class OpenVinoAdapter:
    name = "openvino"

    def __init__(self, core: Any | None = None) -> None:
        self._core = core or ov.Core()

    def load(self, model_path: Path, signature: Signature, options: LoadOptions) -> OpenVinoModel:
        device, skipped = select_device(options.execution_providers, self._core.available_devices)
        if skipped:
            log.info("event=devices_skipped skipped=%s using=%s", ",".join(skipped), device)
        try:
            model = self._core.read_model(str(model_path))
        except Exception as exc:  # RuntimeError for a missing, corrupt or unsupported file
            raise ModelLoadError(
                f"openvino could not read the model: {str(exc)[:300]}", got=str(model_path)
            ) from exc
        check_signature(signature, [_spec(p) for p in model.inputs], [_spec(p) for p in model.outputs])
        try:
            compiled = self._core.compile_model(model, device, compile_config(device, options))
        except Exception as exc:
            raise ModelLoadError(
                f"openvino could not compile the model for {device}: {str(exc)[:300]}", got=device
            ) from exc
        loaded = OpenVinoModel(compiled, device)
        warm = sample_inputs(signature)
        for _ in range(options.warmup_runs):
            loaded.predict(warm)
        return loaded
