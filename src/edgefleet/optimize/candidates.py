"""Candidate builds of one model: FP32 (offline graph optimizations), FP16, pruned, and students.

INT8 candidates live in ``quantize``; the accuracy-aware mixed-precision search in ``mixed``. Every
candidate is a file on disk plus a record of how it was made; measuring and choosing happen elsewhere.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from edgefleet.optimize.errors import BuildError, BuildInputError
from edgefleet.optimize.model_info import ModelInfo, load_model
from edgefleet.optimize.session import SessionSettings, open_session

__all__ = [
    "Candidate",
    "CandidateKind",
    "make_fp16",
    "make_fp32",
    "make_pruned",
    "make_student",
    "prunable_weights",
]

CandidateKind = Literal["fp32", "fp16", "int8_static", "int8_dynamic", "pruned", "mixed", "student"]
Quantization = Literal["none", "fp16", "int8_static", "int8_dynamic", "mixed"]

_PRUNABLE_OPS = {"Conv": 1, "MatMul": 1, "Gemm": 1, "ConvTranspose": 1}


@dataclass(frozen=True)
class Candidate:
    """One build of the model. ``precisions`` are what it needs from a class (fp16 needs 'fp16', ...)."""

    name: str
    kind: CandidateKind
    path: Path
    precision: Literal["fp32", "fp16", "int8"]
    quantization: Quantization = "none"
    calibration_method: str | None = None
    per_channel: bool = False
    reduce_range: bool = False
    sparsity: float = 0.0
    excluded_nodes: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    size_bytes: int = -1

    def __post_init__(self) -> None:
        if self.size_bytes < 0:  # recorded once: the work directory does not outlive the build
            object.__setattr__(self, "size_bytes", self.path.stat().st_size)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = self.path.name
        return out


def make_fp32(source: Path, out_dir: Path, settings: SessionSettings) -> Candidate:
    """The FP32 baseline: the runtime's offline graph optimizations at the *basic* level.

    Basic (constant folding, redundant-node removal) stays portable across execution providers; extended
    and layout optimizations are hardware-specific and are left to the device's runtime at load time.
    """
    path = out_dir / "fp32.onnx"
    open_session(source, settings, level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, optimized_path=path)
    return Candidate("fp32", "fp32", path, "fp32", notes=("onnxruntime offline graph optimization: basic",))


def make_fp16(source: Path, out_dir: Path) -> Candidate:
    """All float weights and activations in FP16, inputs and outputs kept FP32 (for GPU classes)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    path = out_dir / "fp16.onnx"
    try:
        model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    except Exception as exc:
        raise BuildError(
            f"FP16 conversion failed: {exc}", code="candidate_failed", got=str(exc)[:300]
        ) from exc
    onnx.save(model, str(path))
    return Candidate("fp16", "fp16", path, "fp16", quantization="fp16", notes=("keep_io_types=True",))


def prunable_weights(model: onnx.ModelProto) -> list[str]:
    """Initializers used as the weight of Conv/MatMul/Gemm with >= 2 dims (biases stay dense)."""
    inits = {i.name: i for i in model.graph.initializer}
    names: list[str] = []
    for node in model.graph.node:
        index = _PRUNABLE_OPS.get(node.op_type)
        if index is None or len(node.input) <= index:
            continue
        name = node.input[index]
        if name in inits and len(inits[name].dims) >= 2 and name not in names:
            names.append(name)
    return names


def make_pruned(source: Path, out_dir: Path, sparsity: float) -> Candidate:
    """Unstructured magnitude pruning per tensor: the smallest ``sparsity`` fraction of each weight -> 0.

    Without fine-tuning and on a dense runtime this buys no speed; it can buy compressed size. It is
    measured like any candidate and only wins if it actually pays on the class.
    """
    if not 0.0 < sparsity < 1.0:
        raise BuildInputError(
            "sparsity must be in (0, 1)", code="invalid_build_input", expected="(0, 1)", got=sparsity
        )
    model = onnx.load(str(source))
    targets = set(prunable_weights(model))
    for init in model.graph.initializer:
        if init.name not in targets:
            continue
        weights = numpy_helper.to_array(init).copy()
        cut = int(weights.size * sparsity)
        if cut == 0:
            continue
        threshold = np.partition(np.abs(weights).ravel(), cut - 1)[cut - 1]
        weights[np.abs(weights) <= threshold] = 0
        init.CopyFrom(numpy_helper.from_array(weights, init.name))
    name = f"pruned-{round(sparsity * 100)}"
    path = out_dir / f"{name}.onnx"
    onnx.save(model, str(path))
    return Candidate(
        name, "pruned", path, "fp32", sparsity=sparsity, notes=(f"{len(targets)} weight tensors pruned",)
    )


def make_student(student: Path, teacher: ModelInfo, out_dir: Path, index: int) -> Candidate:
    """The distillation hook: a student trained elsewhere, evaluated like any candidate.

    The student must take the teacher's inputs (names, dtypes) and produce its outputs (names), so that
    it is a drop-in replacement on the device.
    """
    _, info = load_model(student)
    got_in = [(t.name, t.dtype) for t in info.signature.inputs]
    want_in = [(t.name, t.dtype) for t in teacher.signature.inputs]
    got_out = [t.name for t in info.signature.outputs]
    want_out = [t.name for t in teacher.signature.outputs]
    if got_in != want_in or got_out != want_out:
        raise BuildInputError(
            f"student {student.name} is not a drop-in replacement for the model",
            code="student_signature_mismatch",
            expected={"inputs": want_in, "outputs": want_out},
            got={"inputs": got_in, "outputs": got_out},
        )
    name = f"student-{index}"
    path = out_dir / f"{name}.onnx"
    shutil.copyfile(student, path)
    return Candidate(name, "student", path, "fp32", notes=(f"student model {student.name}",))
