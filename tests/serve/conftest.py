"""Real tiny ONNX models as artifact directories, a fault-injecting adapter wrapper, a recording sink."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgefleet.agent.runtime.base import InferenceFailedError, LoadedModel, LoadOptions, ModelLoadError
from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.agent.serve import ActiveArtifact, read_artifact_dir
from edgefleet.protocol.telemetry import ShadowSample
from edgefleet.protocol.wire.manifest import Signature

IN_DIM = 16
CLASSES = 4
GPU = ("CUDAExecutionProvider", "CPUExecutionProvider")


def classifier(seed: int = 0) -> bytes:
    """MatMul + Add + Softmax over x [N, 16] -> probs [N, 4]; weights depend on ``seed``."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((IN_DIM, CLASSES)).astype(np.float32)
    b = rng.standard_normal(CLASSES).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("Add", ["h", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        ],
        f"classifier-{seed}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", IN_DIM])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", CLASSES])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def regressor(offset: float = 0.0, seed: int = 0) -> bytes:
    """MatMul + Add over x [N, 16] -> y [N, 1]; ``offset`` shifts every answer by that much."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((IN_DIM, 1)).astype(np.float32)
    b = np.array([offset], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
        f"regressor-{seed}-{offset}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", IN_DIM])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def two_inputs() -> bytes:
    """y = a * 2 + b (int64 b cast to float): two inputs of different dtypes."""
    two = np.array(2.0, dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["a", "two"], ["a2"]),
            helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["a2", "bf"], ["y"]),
        ],
        "two-inputs",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["N", 3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(two, "two")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def signature_of(model_bytes: bytes) -> dict[str, Any]:
    model = onnx.load_from_string(model_bytes)
    names = {TensorProto.FLOAT: "float32", TensorProto.INT64: "int64"}

    def spec(v: Any) -> dict[str, Any]:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
        return {"name": v.name, "dtype": names[v.type.tensor_type.elem_type], "shape": dims}

    return {"inputs": [spec(v) for v in model.graph.input], "outputs": [spec(v) for v in model.graph.output]}


def write_artifact(
    directory: Path,
    model_bytes: bytes,
    *,
    model: str = "digits",
    version: str = "1.0.0",
    providers: tuple[str, ...] = ("CPUExecutionProvider",),
    atol: float = 1e-3,
    rtol: float = 1e-3,
    input_ranges: dict[str, dict[str, float]] | None = None,
) -> ActiveArtifact:
    """``<directory>/{model.onnx, golden.npz, manifest.json}``: what ``read_artifact_dir`` reads."""
    directory.mkdir(parents=True, exist_ok=True)
    golden = io.BytesIO()
    np.savez(golden, **{"input:x": np.zeros((1, IN_DIM), np.float32)})
    files = {"model.onnx": model_bytes, "golden.npz": golden.getvalue()}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    manifest = {
        "schema_version": 1,
        "model": model,
        "version": version,
        "hardware_class": "medical-cart-cpu",
        "runtime": {"name": "onnxruntime", "execution_providers": list(providers)},
        "entrypoint": "model.onnx",
        "files": [
            {"path": n, "sha256": hashlib.sha256(d).hexdigest(), "length": len(d)} for n, d in files.items()
        ],
        "signature": signature_of(model_bytes),
        "optimization": {"source_sha256": hashlib.sha256(model_bytes).hexdigest()},
        "health_check": {
            "golden_file": "golden.npz",
            "latency_ceiling_ms": 1000.0,
            "warmup_runs": 1,
            "atol": atol,
            "rtol": rtol,
        },
        "release_counter": 1,
    }
    if input_ranges is not None:
        manifest["input_ranges"] = input_ranges
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return read_artifact_dir(directory, artifact_id=f"{model}-{version}")


@dataclass
class Faults:
    """Switches the tests flip: providers whose runs raise, providers or paths whose loads fail, a gate."""

    broken_providers: set[str] = field(default_factory=set)
    unloadable_providers: set[str] = field(default_factory=set)
    unloadable_paths: set[Path] = field(default_factory=set)
    hold: threading.Event | None = None
    entered: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    loads: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)


class FaultyModel:
    """A real ORT model that reports the providers it was asked for and raises while they are broken."""

    def __init__(self, inner: LoadedModel, providers: tuple[str, ...], faults: Faults) -> None:
        self._inner = inner
        self._providers = providers
        self._faults = faults

    @property
    def providers(self) -> tuple[str, ...]:
        return self._providers

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        faults = self._faults
        if faults.hold is not None:
            faults.entered.release()
            faults.hold.wait(30)
        if faults.broken_providers & set(self._providers):
            raise InferenceFailedError("injected: provider raised mid-run", code="inference_failed")
        return self._inner.predict(inputs)

    def cancel(self) -> None:
        self._inner.cancel()

    def close(self) -> None:
        self._inner.close()


class FaultyAdapter:
    """Wraps the real ONNX Runtime adapter (CPU underneath), as if this device had the class's GPU."""

    name = "onnxruntime"

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._inner = OnnxRuntimeAdapter()

    def load(self, model_path: Path, signature: Signature, options: LoadOptions) -> FaultyModel:
        providers = tuple(options.execution_providers)
        self.faults.loads.append((model_path.parent.name, providers))
        if self.faults.unloadable_providers & set(providers) or model_path in self.faults.unloadable_paths:
            raise ModelLoadError("injected: load failed", got=str(model_path))
        inner_options = LoadOptions(
            execution_providers=("CPUExecutionProvider",),
            intra_op_threads=options.intra_op_threads,
            inter_op_threads=options.inter_op_threads,
            warmup_runs=options.warmup_runs,
        )
        return FaultyModel(self._inner.load(model_path, signature, inner_options), providers, self.faults)


class RecordingMetrics:
    """A MetricsSink that keeps everything (the telemetry recorder's API, in memory)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, float, str | None]] = []
        self.shadow: list[tuple[float, str]] = []
        self.samples: list[ShadowSample | None] = []
        self.shadow_errors: list[tuple[str, str]] = []
        self.shadow_skipped: list[str] = []
        self.degraded: dict[str, float] = {}
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def record_request(self, model_version: str, rung: str, latency_ms: float, error_code: str | None = None):
        with self.lock:
            self.requests.append((model_version, rung, latency_ms, error_code))

    def record_shadow(
        self, agreement: float | bool, *, model_version: str = "unknown", sample: ShadowSample | None = None
    ) -> None:
        with self.lock:
            self.shadow.append((float(agreement), model_version))
            self.samples.append(sample)

    def record_shadow_error(self, model_version: str, error_code: str) -> None:
        with self.lock:
            self.shadow_errors.append((model_version, error_code))

    def record_shadow_skipped(self, model_version: str) -> None:
        with self.lock:
            self.shadow_skipped.append(model_version)

    def record_degraded_time(self, rung: str, seconds: float) -> None:
        with self.lock:
            self.degraded[rung] = self.degraded.get(rung, 0.0) + seconds

    def record_event(self, kind: str, code: str, details: dict[str, Any] | None = None) -> int | None:
        with self.lock:
            self.events.append((kind, code, dict(details or {})))
        return len(self.events)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def x(batch: int = 1, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, IN_DIM)).astype(np.float32)


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def metrics() -> RecordingMetrics:
    return RecordingMetrics()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def artifact(tmp_path: Path) -> ActiveArtifact:
    return write_artifact(tmp_path / "v1", classifier(1), version="1.0.0")
