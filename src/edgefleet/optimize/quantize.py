"""INT8 candidates with ONNX Runtime's quantization tool, calibrated on the given real inputs.

Pitfalls handled here:
- U8S8 saturation: on x86-64 CPUs without VNNI the int8 kernels (``vpmaddubsw``) add pairs of u8*s8
  products into int16 and can saturate. ``reduce_range=True`` (7-bit weights) avoids it; we set it for
  x86-64 classes when the measuring CPU has no VNNI, and record the choice.
- Static calibration needs real inputs, enough of them: the reader walks the calibration set one sample at a
  time (batch 1, whatever the declared batch dimension).
- Pre-processing (shape inference + basic graph optimizations) runs first so Conv+BN, Gemm shapes and the
  like quantize cleanly; when pre-processing fails on an unusual model we quantize the model as it is and
  say so.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import onnx
from onnx import version_converter
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from edgefleet.optimize.candidates import Candidate
from edgefleet.optimize.dataset import Dataset
from edgefleet.optimize.errors import BuildError

__all__ = [
    "DYNAMIC_OP_TYPES",
    "METHODS",
    "DatasetReader",
    "make_int8_dynamic",
    "make_int8_static",
    "preprocess",
    "quantizable_nodes",
]

QDQ_MIN_OPSET = 13  # per-channel DequantizeLinear (axis) needs 13

METHODS: dict[str, CalibrationMethod] = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
DYNAMIC_OP_TYPES = ("MatMul", "Gemm", "Attention", "LSTM", "GRU")
STATIC_OP_TYPES = ("Conv", "MatMul", "Gemm", "ConvTranspose", "Attention")


class DatasetReader(CalibrationDataReader):
    """Feeds real calibration samples, one at a time, to ONNX Runtime's calibrator."""

    def __init__(self, data: Dataset, *, max_samples: int) -> None:
        self._data = data
        self._count = min(max_samples, data.count)
        self._iter: Iterator[int] = iter(range(self._count))

    def get_next(self) -> dict | None:
        index = next(self._iter, None)
        return None if index is None else self._data.sample(index)

    def rewind(self) -> None:
        self._iter = iter(range(self._count))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The quantization tool prints progress and logs advice on the root logger; keep our output clean."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def preprocess(source: Path, out_dir: Path) -> tuple[Path, str | None]:
    """ORT's recommended pre-processing; returns the path to quantize and a note if it was skipped."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = out_dir / "preprocessed.onnx"
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    normalized, notes = _normalize_for_qdq(source, out_dir)
    try:
        with _quiet():
            quant_pre_process(str(normalized), str(target), skip_symbolic_shape=True)
    except Exception as exc:
        target = normalized
        notes.append(f"quantization pre-processing skipped: {str(exc)[:160]}")
    note = "; ".join(notes) or None
    model = onnx.load(str(target))
    used = {n.name for n in model.graph.node if n.name}
    for index, node in enumerate(model.graph.node):
        if not node.name:  # nodes_to_exclude works by name; exporters often leave names empty
            candidate = f"{node.op_type.lower()}_{index}"
            node.name = candidate if candidate not in used else f"{candidate}_{len(used)}"
            used.add(node.name)
    named = out_dir / "preprocessed-named.onnx"
    onnx.save(model, str(named))
    return named, note


def _normalize_for_qdq(source: Path, out_dir: Path) -> tuple[Path, list[str]]:
    """Old exports (IR < 4, opset < 13, e.g. the ONNX model zoo's) break QDQ: weights listed as graph inputs
    stay float inputs beside their quantized copies (an invalid graph), and per-channel DequantizeLinear needs
    opset 13. Such a model is rewritten (weights are constants, opset 13); a current one is used as it is."""
    model = onnx.load(str(source))
    notes: list[str] = []
    inits = {i.name for i in model.graph.initializer}
    weight_inputs = [i for i in model.graph.input if i.name in inits]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), QDQ_MIN_OPSET)
    if not weight_inputs and opset >= QDQ_MIN_OPSET:
        return source, notes
    if weight_inputs:
        kept = [i for i in model.graph.input if i.name not in inits]
        del model.graph.input[:]
        model.graph.input.extend(kept)
        model.ir_version = max(model.ir_version, 7)
        notes.append(f"{len(weight_inputs)} weights listed as graph inputs made constants for quantization")
    if opset < QDQ_MIN_OPSET:
        try:
            model = version_converter.convert_version(model, QDQ_MIN_OPSET)
        except Exception as exc:  # the converter lacks an adapter for some op: quantize at the old opset
            notes.append(f"opset {opset} kept (upgrade to {QDQ_MIN_OPSET} failed: {str(exc)[:120]})")
        else:
            notes.append(f"opset {opset} upgraded to {QDQ_MIN_OPSET} for QDQ")
    out = out_dir / "normalized.onnx"
    onnx.save(model, str(out))
    return out, notes


def quantizable_nodes(model_path: Path) -> list[str]:
    """Names of the nodes a static QDQ quantization touches: compute nodes (Conv, MatMul, ...) first, then
    the others ONNX Runtime wraps in Q/DQ (Relu, MaxPool, Reshape, ...), each group in graph order."""
    from onnxruntime.quantization.registry import QDQRegistry

    model = onnx.load(str(model_path), load_external_data=False)
    named = [n for n in model.graph.node if n.name]
    compute = [n.name for n in named if n.op_type in STATIC_OP_TYPES]
    others = [n.name for n in named if n.op_type in QDQRegistry and n.op_type not in STATIC_OP_TYPES]
    return compute + others


def make_int8_static(
    source: Path,
    out_dir: Path,
    calibration: Dataset,
    *,
    method: str,
    per_channel: bool,
    reduce_range: bool,
    max_samples: int,
    exclude: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
    cache_path: Path | None = None,
    name: str | None = None,
    notes: tuple[str, ...] = (),
) -> Candidate:
    """QDQ static quantization: u8 activations, s8 weights, calibrated with ``method`` on real inputs."""
    name = name or f"int8-static-{method}{'-pc' if per_channel else ''}"
    path = out_dir / f"{name}.onnx"
    try:
        with _quiet():
            quantize_static(
                str(source),
                str(path),
                DatasetReader(calibration, max_samples=max_samples),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=list(only) if only is not None else None,
                nodes_to_exclude=list(exclude) or None,
                calibrate_method=METHODS[method],
                calibration_cache_path=str(cache_path) if cache_path else None,
            )
    except Exception as exc:
        raise BuildError(f"static quantization ({name}) failed: {exc}", code="candidate_failed") from exc
    all_notes = [*notes, "QDQ, activations uint8, weights int8"]
    if reduce_range:
        all_notes.append("reduce_range=True: 7-bit weights against U8S8 saturation on CPUs without VNNI")
    return Candidate(
        name,
        "mixed" if exclude else "int8_static",
        path,
        "int8",
        quantization="mixed" if exclude else "int8_static",
        calibration_method=method,
        per_channel=per_channel,
        reduce_range=reduce_range,
        excluded_nodes=tuple(exclude),
        notes=tuple(all_notes),
    )


def make_int8_dynamic(source: Path, out_dir: Path, *, reduce_range: bool) -> Candidate | None:
    """Dynamic quantization of MatMul/Gemm/attention weights; ``None`` when the model has none of them."""
    model = onnx.load(str(source), load_external_data=False)
    ops = [n.op_type for n in model.graph.node if n.op_type in DYNAMIC_OP_TYPES]
    if not ops:
        return None
    path = out_dir / "int8-dynamic.onnx"
    try:
        with _quiet():
            quantize_dynamic(
                str(source),
                str(path),
                op_types_to_quantize=list(DYNAMIC_OP_TYPES),
                per_channel=False,
                reduce_range=reduce_range,
                weight_type=QuantType.QInt8,
            )
    except Exception as exc:
        raise BuildError(f"dynamic quantization failed: {exc}", code="candidate_failed") from exc
    return Candidate(
        "int8-dynamic",
        "int8_dynamic",
        path,
        "int8",
        quantization="int8_dynamic",
        reduce_range=reduce_range,
        notes=(
            f"{len(ops)} MatMul/Gemm/attention nodes with int8 weights, activations quantized at run time",
        ),
    )
