"""Candidate builds of one model: FP32 (offline graph optimizations), FP16, and students.

No pruning candidate: magnitude pruning without fine-tuning zeroes weights in dense tensors, which neither
removes FLOPs nor shrinks the file, so it could only win on noise; structured pruning needs the training
loop, which lives outside the build (bring the pruned model as a ``--student``).

INT8 candidates live in ``quantize``; the accuracy-aware mixed-precision search in ``mixed``. Every
candidate is a file on disk plus a record of how it was made; measuring and choosing happen elsewhere.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import onnx
import onnxruntime as ort

from edgefleet.optimize.errors import BuildError, BuildInputError
from edgefleet.optimize.model_info import ModelInfo, load_model
from edgefleet.optimize.session import SessionSettings, open_session

__all__ = [
    "Candidate",
    "CandidateKind",
    "describe",
    "make_fp16",
    "make_fp32",
    "make_student",
]

CandidateKind = Literal["fp32", "fp16", "int8_static", "int8_dynamic", "mixed", "student"]
Quantization = Literal["none", "fp16", "int8_static", "int8_dynamic", "mixed"]


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


def describe(candidate: Candidate) -> tuple[str, ...]:
    """Exactly what was done to the source model to make this candidate, in words, for the report."""
    steps: list[str] = []
    if candidate.kind == "fp32":
        steps.append("FP32: weights unchanged")  # its note says which offline graph optimization ran
    elif candidate.kind == "fp16":
        steps.append(
            "FP16: all float weights and activations converted to float16, inputs/outputs kept float32"
        )
    elif candidate.kind in ("int8_static", "mixed"):
        steps.append(
            "INT8 static QDQ: activations u8, weights s8 "
            f"{'per channel' if candidate.per_channel else 'per tensor'}"
            f", calibrated with {candidate.calibration_method} on the calibration inputs"
        )
        if candidate.excluded_nodes:
            steps.append(f"kept in float (most sensitive): {', '.join(candidate.excluded_nodes)}")
    elif candidate.kind == "int8_dynamic":
        steps.append("INT8 dynamic: MatMul/Gemm weights s8, activations quantized at run time")
    elif candidate.kind == "student":
        steps.append("student model trained elsewhere (the --student distillation input), copied unchanged")
    else:
        steps.append(f"{candidate.kind} candidate")
    if candidate.reduce_range:
        steps.append("7-bit weights (reduce_range) for x86-64 devices without VNNI")
    return tuple(steps) + tuple(candidate.notes)


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
