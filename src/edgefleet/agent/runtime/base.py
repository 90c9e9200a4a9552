"""The runtime-adapter interface: what the installer and the serving layer need from an inference runtime.

An adapter loads one model file into a ``LoadedModel`` whose input/output signature has been checked against
the manifest. Adapters for other runtimes (OpenVINO, LiteRT) implement the same two protocols; nothing else
in the agent names a runtime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edgefleet.protocol.errors import EdgefleetError
from edgefleet.protocol.wire.manifest import Signature, TensorSpec

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


class ModelLoadError(EdgefleetError):
    """The runtime could not load the model file (corrupt, unsupported op, missing provider...)."""

    code = "model_load_failed"


class SignatureMismatchError(EdgefleetError):
    """The loaded model's inputs/outputs differ from what the manifest declares."""

    code = "model_signature_mismatch"


class InferenceFailedError(EdgefleetError):
    """A run raised inside the runtime, or was cancelled (code ``inference_cancelled``)."""

    code = "inference_failed"


@dataclass(frozen=True)
class LoadOptions:
    execution_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    """In preference order (the manifest's, from its hardware class); absent ones are skipped."""
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    warmup_runs: int = 0


class LoadedModel(Protocol):
    @property
    def providers(self) -> tuple[str, ...]:
        """The execution providers actually in use, in order."""

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once. Raises ``InferenceFailedError``. Safe to call from several threads."""

    def cancel(self) -> None:
        """Abort runs in flight (they raise ``InferenceFailedError`` code ``inference_cancelled``)."""

    def close(self) -> None:
        """Release the model; later calls to ``predict`` fail."""


class RuntimeAdapter(Protocol):
    name: str

    def load(self, model_path: Path, signature: Signature, options: LoadOptions) -> LoadedModel:
        """Load, check the signature, warm up. Raises ``ModelLoadError`` or ``SignatureMismatchError``."""


def _dims_match(declared: Sequence[int | str | None], actual: Sequence[int | str | None]) -> bool:
    if len(declared) != len(actual):
        return False
    for want, have in zip(declared, actual, strict=True):
        if isinstance(want, int) and isinstance(have, int) and want != have:
            return False
        if isinstance(want, int) and not isinstance(have, int):
            return False  # the manifest promises a fixed size the model does not enforce
    return True


def check_signature(declared: Signature, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
    """Pure: the model's tensors must be exactly the manifest's, by name, dtype and shape.

    A dimension the manifest declares dynamic (``None`` or a name) accepts any model dimension.
    """
    for kind, want, have in (("input", declared.inputs, inputs), ("output", declared.outputs, outputs)):
        want_names = [t.name for t in want]
        have_names = [t.name for t in have]
        if sorted(want_names) != sorted(have_names):
            raise SignatureMismatchError(
                f"model {kind} names differ from the manifest", expected=want_names, got=have_names
            )
        by_name = {t.name: t for t in have}
        for spec in want:
            actual = by_name[spec.name]
            if spec.dtype != actual.dtype or not _dims_match(spec.shape, actual.shape):
                raise SignatureMismatchError(
                    f"model {kind} {spec.name!r} differs from the manifest",
                    expected={"dtype": spec.dtype, "shape": spec.shape},
                    got={"dtype": actual.dtype, "shape": actual.shape},
                )


def sample_inputs(signature: Signature, *, batch: int = 1) -> dict[str, np.ndarray]:
    """Zero tensors matching the signature, dynamic dimensions set to ``batch`` (first) or 1 (others)."""
    out: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        shape = [
            dim if isinstance(dim, int) else (batch if i == 0 else 1) for i, dim in enumerate(spec.shape)
        ]
        out[spec.name] = np.zeros(shape, dtype=np.dtype(spec.dtype))
    return out
