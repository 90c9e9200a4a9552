"""A runtime that really crashes its process (SIGSEGV), for the trial-worker tests.

``CrashingAdapters`` wraps the agent's real adapters (ONNX Runtime). Loading a model file that carries the
bytes ``crash-on-load`` (in its ONNX doc string) dereferences a null pointer; so does running any input
holding a value >= ``POISON``. The worker process imports it by name (``SPEC``).
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edgefleet.agent.runtime.base import LoadedModel, LoadOptions, RuntimeAdapter
from edgefleet.agent.serve.runtimes import RuntimeAdapters
from edgefleet.protocol.wire.manifest import Signature

SPEC = "tests.agent.crashing_runtime:CrashingAdapters"
POISON = 1e6
LOAD_MARKER = b"crash-on-load"


def segfault() -> None:
    ctypes.string_at(0)  # reads address 0: SIGSEGV, the process dies without unwinding


def crash_on_load(model: bytes) -> bytes:
    import onnx

    proto = onnx.load_from_string(model)
    proto.doc_string = LOAD_MARKER.decode()
    return proto.SerializeToString()


class _CrashingModel:
    def __init__(self, inner: LoadedModel) -> None:
        self._inner = inner

    @property
    def providers(self) -> tuple[str, ...]:
        return self._inner.providers

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if any(np.asarray(v).size and float(np.max(v)) >= POISON for v in inputs.values()):
            segfault()
        return self._inner.predict(inputs)

    def cancel(self) -> None:
        self._inner.cancel()

    def close(self) -> None:
        self._inner.close()


class _CrashingAdapter:
    def __init__(self, inner: RuntimeAdapter) -> None:
        self.name = inner.name
        self._inner = inner

    def load(self, model_path: Path, signature: Signature, options: LoadOptions) -> LoadedModel:
        if LOAD_MARKER in Path(model_path).read_bytes():
            segfault()
        return _CrashingModel(self._inner.load(model_path, signature, options))


class CrashingAdapters:
    def __init__(self) -> None:
        self._inner = RuntimeAdapters()

    def __call__(self, runtime: str) -> RuntimeAdapter:
        return _CrashingAdapter(self._inner(runtime))
