"""LiteRT classes (``runtime.name = "litert"``): a ``.tflite`` source, validated, measured and packaged.

A ``.tflite`` file is already compiled for its runtime: the build does not re-quantize it. It loads the
model in LiteRT (anything LiteRT refuses is ``model_load_failed``), reads its signature, checks the data
against it, runs it on the validation set (the source is its own FP32 reference; a quality figure needs
labels), reads its precision from the file (``int8`` when its weights are int8-quantized tensors, ``fp16``
when they are float16, else ``fp32``), and measures latency with the class's threads. A class whose
precisions exclude the model's, or whose model budget it exceeds, fails with the reason; the others get
``model.tflite`` + golden vectors + manifest, signed at publish like any artifact.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefleet.optimize import package
from edgefleet.optimize.config import BuildConfig, model_name_from
from edgefleet.optimize.dataset import load_dataset
from edgefleet.optimize.errors import BuildError, BuildInputError
from edgefleet.optimize.quality import measure_quality
from edgefleet.protocol.hardware_class import HardwareClass
from edgefleet.protocol.manifest import Signature, TensorSpec

__all__ = ["MODEL_FILE", "LiteRtBuildResult", "build_litert", "tflite_precision"]

MODEL_FILE = "model.tflite"


@dataclass
class LiteRtBuildResult:
    out: Path
    precision: str
    signature: Signature
    built: dict[str, dict[str, Any]] = field(default_factory=dict)
    """class name -> manifest."""
    failed: dict[str, str] = field(default_factory=dict)
    """class name -> why it got no artifact."""


def _interpreter(path: Path, threads: int) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise BuildError(
            "LiteRT classes need ai-edge-litert (pip install edgefleet[litert])", code="runtime_not_installed"
        ) from exc
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise BuildInputError(
            f"LiteRT cannot load {path.name}: {str(exc)[:300]}",
            code="model_load_failed",
            expected="a .tflite model LiteRT runs",
            got=str(exc)[:200],
        ) from exc
    return interpreter


def _spec(detail: dict[str, Any]) -> TensorSpec:
    dims = detail.get("shape_signature")
    if dims is None or len(dims) == 0:
        dims = detail["shape"]
    shape: list[int | str | None] = [None if int(d) < 0 else int(d) for d in dims]
    return TensorSpec(name=detail["name"], dtype=np.dtype(detail["dtype"]).name, shape=shape)


def tflite_precision(tensor_details: list[dict[str, Any]]) -> str:
    """Pure: ``int8`` when the model holds quantized int8/uint8 tensors (a scale per tensor or channel),
    ``fp16`` when it holds float16 tensors (f16 weights dequantized at load), else ``fp32``."""
    kinds = {np.dtype(d["dtype"]).name for d in tensor_details}
    quantized = any(
        np.dtype(d["dtype"]).name in ("int8", "uint8")
        and len(d.get("quantization_parameters", {}).get("scales", []))
        for d in tensor_details
    )
    if quantized:
        return "int8"
    return "fp16" if "float16" in kinds else "fp32"


def _run(interpreter: Any, arrays: dict[str, np.ndarray], count: int) -> tuple[list[np.ndarray], list[float]]:
    """Outputs per output tensor (batch 1, stacked) and the latency of each run in ms."""
    inputs = {d["name"]: d["index"] for d in interpreter.get_input_details()}
    outputs = [d["index"] for d in interpreter.get_output_details()]
    got: list[list[np.ndarray]] = [[] for _ in outputs]
    times: list[float] = []
    for i in range(count):
        for name, index in inputs.items():
            interpreter.set_tensor(index, np.ascontiguousarray(arrays[name][i : i + 1]))
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1000.0)
        for k, index in enumerate(outputs):
            got[k].append(interpreter.get_tensor(index))
    return [np.concatenate(g, axis=0) for g in got], times


def _misses(hwclass: HardwareClass, precision: str, size_bytes: int, p95_ms: float) -> list[str]:
    """Pure: why this model cannot be this class's artifact (empty: it can)."""
    out = []
    if hwclass.runtime.name != "litert":
        out.append(f"class runtime is {hwclass.runtime.name}, a .tflite source builds only LiteRT classes")
    if precision not in hwclass.precisions:
        out.append(f"model precision {precision} not among the class's {list(hwclass.precisions)}")
    if size_bytes > hwclass.budgets.max_model_mb * 1024 * 1024:
        out.append(
            f"model is {size_bytes} bytes, over the class budget of {hwclass.budgets.max_model_mb} MiB"
        )
    if p95_ms > hwclass.performance.latency_p95_ms:
        out.append(
            f"latency p95 {p95_ms:.2f} ms over the class envelope {hwclass.performance.latency_p95_ms} ms"
        )
    return out


def build_litert(
    source: Path,
    classes: list[HardwareClass],
    calibration_path: Path,
    validation_path: Path,
    out: Path,
    config: BuildConfig,
) -> LiteRtBuildResult:
    """One artifact per LiteRT class from the ``.tflite`` ``source``; bad input raises before ``out``."""
    package.check_output_free(out)
    raw = source.read_bytes()
    probe = _interpreter(source, 1)
    signature = Signature(
        inputs=[_spec(d) for d in probe.get_input_details()],
        outputs=[_spec(d) for d in probe.get_output_details()],
    )
    precision = tflite_precision(probe.get_tensor_details())
    valid = load_dataset(validation_path, signature).head(config.max_validation_samples)
    load_dataset(calibration_path, signature)  # checked like any build input (not used: nothing to calibrate)
    result = LiteRtBuildResult(out=out, precision=precision, signature=signature)
    with package.staged_output(out) as staging:
        for hwclass in classes:
            threads = hwclass.threads.intra_op
            interpreter = _interpreter(source, threads)
            outputs, _ = _run(interpreter, valid.arrays, valid.count)
            for _ in range(config.warmup_runs):
                _run(interpreter, valid.arrays, 1)
            times: list[float] = []
            while len(times) < config.latency_runs:
                times += _run(interpreter, valid.arrays, min(valid.count, config.latency_runs - len(times)))[
                    1
                ]
            p50, p95, p99 = (float(np.percentile(times, q)) for q in (50, 95, 99))
            misses = _misses(hwclass, precision, len(raw), p95)
            if misses:
                result.failed[hwclass.name] = "; ".join(misses)
                continue
            judged = 0
            quality = measure_quality(config.task, outputs[judged], outputs[judged], valid.labels)
            golden = valid.head(config.golden_samples)
            golden_out, _ = _run(interpreter, golden.arrays, golden.count)
            single, _ = _run(_interpreter(source, 1), golden.arrays, golden.count)
            spread = max(
                (
                    float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
                    for a, b in zip(golden_out, single, strict=True)
                ),
                default=0.0,
            )
            root = staging / hwclass.name
            root.mkdir(parents=True)
            shutil.copyfile(source, root / MODEL_FILE)
            names = [t.name for t in signature.outputs]
            package.write_bytes(
                root / package.GOLDEN_FILE,
                package.golden_bytes(golden.arrays, dict(zip(names, golden_out, strict=True))),
            )
            tolerance = package.derive_tolerance(candidate_vs_fp32=0.0, implementation_spread=spread)
            manifest = {
                "schema_version": 1,
                "model": config.model_name or model_name_from(source),
                "version": config.model_version,
                "hardware_class": hwclass.name,
                "runtime": hwclass.runtime.model_dump(mode="json"),
                "precision": precision,
                "entrypoint": MODEL_FILE,
                "files": [
                    package.file_entry(root, p).model_dump() for p in (MODEL_FILE, package.GOLDEN_FILE)
                ],
                "signature": signature.model_dump(mode="json"),
                "optimization": {
                    "source_sha256": hashlib.sha256(raw).hexdigest(),
                    "quantization": "int8_static"
                    if precision == "int8"
                    else ("fp16" if precision == "fp16" else "none"),
                    "candidate": "tflite-source",
                    "notes": [
                        f"the .tflite source as given ({precision}); LiteRT builds are not re-quantized"
                    ],
                },
                "metrics": {
                    "task_metric": quality.task_metric,
                    "task_value": quality.task_value,
                    "latency_p50_ms": p50,
                    "latency_p95_ms": p95,
                    "latency_p99_ms": p99,
                    "size_bytes": len(raw),
                    "validation_samples": valid.count,
                    "validation_sha256": valid.sha256,
                    "measured_on": f"LiteRT CPU on the build host, {threads} thread(s)",
                },
                "health_check": package.health_check(
                    tolerance, hwclass.performance.latency_p95_ms, names[judged]
                ),
                "release_counter": config.release_counter,
            }
            result.built[hwclass.name] = package.write_manifest(root, manifest).to_dict()
        (staging / "report.json").write_text(
            json.dumps(
                {
                    "source": source.name,
                    "precision": precision,
                    "built": sorted(result.built),
                    "failed": result.failed,
                },
                indent=2,
            )
        )
    return result
