"""The ONNX Runtime adapter: providers in the class's preference order, class thread settings, warm-up."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgefleet.agent.runtime.base import (
    InferenceFailedError,
    LoadOptions,
    ModelLoadError,
    check_signature,
    sample_inputs,
)
from edgefleet.protocol.wire.manifest import Signature, TensorSpec

__all__ = ["OnnxRuntimeAdapter", "OrtModel", "select_providers"]

log = logging.getLogger("edgefleet.agent.runtime")

_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def select_providers(preferred: Sequence[str], available: Sequence[str]) -> tuple[list[str], list[str]]:
    """Pure: (the preferred providers present here, in order; the ones skipped). CPU is always last resort."""
    chosen = [p for p in preferred if p in available]
    skipped = [p for p in preferred if p not in available]
    if "CPUExecutionProvider" not in chosen and "CPUExecutionProvider" in available:
        chosen.append("CPUExecutionProvider")
    return chosen, skipped


def _spec(arg: ort.NodeArg) -> TensorSpec:
    return TensorSpec(name=arg.name, dtype=_ORT_DTYPES.get(arg.type, arg.type), shape=arg.shape)


def _run_function(session: ort.InferenceSession) -> Any:
    """The callable that runs the session. On a CPU-only session that is the C binding's ``run`` under
    ``InferenceSession.run``: the wrapper only re-checks input names (``validate_inputs`` already checked
    names, dtypes and shapes against the manifest, and the binding checks again) and offers provider
    fallback, which a CPU-only session has no use for. It costs ~5 us a call, a third of a small CNN's run.
    Any other session, or an onnxruntime without that attribute, uses the public ``run``."""
    binding = getattr(session, "_sess", None)
    if session.get_providers() == ["CPUExecutionProvider"] and callable(getattr(binding, "run", None)):
        return binding.run  # type: ignore[union-attr]
    return session.run


class OrtModel:
    """One ``InferenceSession``. ``predict`` is thread-safe; ``cancel`` terminates runs in flight."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        self._output_names = [o.name for o in session.get_outputs()]  # asked once, not per call
        # One RunOptions shared by every run: ``cancel`` terminates all runs in flight and refuses later ones
        # (a cancelled model is only ever closed), so the hot path needs no per-call options or lock.
        self._options = ort.RunOptions()
        self._closed = False
        self._run = _run_function(session)

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(self._session.get_providers())

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._closed:
            raise InferenceFailedError("model is closed", code="model_closed")
        options = self._options
        try:
            feed = inputs if isinstance(inputs, dict) else dict(inputs)
            outputs = self._run(self._output_names, feed, options)
        except Exception as exc:  # onnxruntime raises its own, unexported exception types
            code = "inference_cancelled" if options.terminate else "inference_failed"
            raise InferenceFailedError(f"inference failed: {exc}", code=code) from exc
        return dict(zip(self._output_names, outputs, strict=True))

    def cancel(self) -> None:
        self._options.terminate = True

    def close(self) -> None:
        self._closed = True
        self.cancel()


class OnnxRuntimeAdapter:
    name = "onnxruntime"

    def __init__(self, available_providers: Sequence[str] | None = None) -> None:
        self._available = (
            list(available_providers) if available_providers is not None else ort.get_available_providers()
        )

    def load(self, model_path: Path, signature: Signature, options: LoadOptions) -> OrtModel:
        providers, skipped = select_providers(options.execution_providers, self._available)
        if skipped:
            log.info("event=providers_skipped skipped=%s using=%s", ",".join(skipped), ",".join(providers))
        if not providers:
            raise ModelLoadError(
                "none of the execution providers is present on this device",
                code="no_execution_provider",
                expected=list(options.execution_providers),
                got=list(self._available),
            )
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.intra_op_threads
        so.inter_op_num_threads = options.inter_op_threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(model_path), sess_options=so, providers=providers)
        except Exception as exc:  # InvalidGraph, Fail, NoSuchFile, ... all unexported
            raise ModelLoadError(f"onnxruntime could not load the model: {exc}", got=str(model_path)) from exc
        check_signature(
            signature, [_spec(a) for a in session.get_inputs()], [_spec(a) for a in session.get_outputs()]
        )
        model = OrtModel(session)
        warm = sample_inputs(signature)
        for _ in range(options.warmup_runs):
            model.predict(warm)
        return model
