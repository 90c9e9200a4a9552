"""ONNX Runtime sessions with a class's providers and thread settings, as available on this machine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgefleet.optimize.dataset import Dataset
from edgefleet.optimize.errors import BuildError
from edgefleet.protocol.hardware_class import HardwareClass

__all__ = [
    "MAX_EVAL_BATCH",
    "REFERENCE_SETTINGS",
    "ProviderPlan",
    "SessionSettings",
    "open_session",
    "plan_providers",
    "run_dataset",
    "settings_for",
]

MAX_EVAL_BATCH = 64


@dataclass(frozen=True)
class ProviderPlan:
    """Which providers a class prefers, which of them exist here, and what we measure on."""

    preferred: tuple[str, ...]
    used: tuple[str, ...]

    @property
    def substituted(self) -> bool:
        """True when the class's first choice is absent here, so its numbers come from a stand-in."""
        return self.preferred[0] != self.used[0]

    def note(self) -> str:
        if not self.substituted:
            return f"measured on {self.used[0]}"
        return (
            f"{self.preferred[0]} is not available on the build machine; measured on {self.used[0]} instead"
        )


@dataclass(frozen=True)
class SessionSettings:
    providers: tuple[str, ...]
    intra_op: int
    inter_op: int
    capped_from: int | None = None  # the class asked for more intra-op threads than this machine has


REFERENCE_SETTINGS = SessionSettings(providers=("CPUExecutionProvider",), intra_op=1, inter_op=1)
"""How the FP32 reference and every candidate's quality are run: one CPU thread, the same for all."""


def plan_providers(hwclass: HardwareClass, available: list[str] | None = None) -> ProviderPlan:
    have = set(ort.get_available_providers() if available is None else available)
    preferred = tuple(hwclass.runtime.execution_providers)
    used = tuple(p for p in preferred if p in have) or ("CPUExecutionProvider",)
    return ProviderPlan(preferred=preferred, used=used)


def settings_for(hwclass: HardwareClass, plan: ProviderPlan, *, cores: int | None = None) -> SessionSettings:
    cores = cores or os.cpu_count() or 1
    intra = hwclass.threads.intra_op
    return SessionSettings(
        providers=plan.used,
        intra_op=min(intra, cores),
        inter_op=min(hwclass.threads.inter_op, cores),
        capped_from=intra if intra > cores else None,
    )


def open_session(
    model: Path | bytes,
    settings: SessionSettings,
    *,
    level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    optimized_path: Path | None = None,
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op
    options.inter_op_num_threads = settings.inter_op
    options.graph_optimization_level = level
    options.log_severity_level = 3
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(source, sess_options=options, providers=list(settings.providers))
    except Exception as exc:  # onnxruntime raises its own exception types
        raise BuildError(
            f"onnxruntime cannot load the model: {str(exc)[:300]}",
            code="runtime_load_failed",
            expected=f"a model loadable by onnxruntime {ort.__version__} on {list(settings.providers)}",
            got=str(exc)[:300],
        ) from exc


def run_dataset(session: ort.InferenceSession, data: Dataset, *, batch: bool) -> list[np.ndarray]:
    """Outputs for every sample, concatenated; batched where the model's first axis is dynamic."""
    names = [o.name for o in session.get_outputs()]
    parts: list[list[np.ndarray]] = [[] for _ in names]
    step = MAX_EVAL_BATCH if batch else 1
    try:
        for start in range(0, data.count, step):
            outs = session.run(names, data.batch(start, min(start + step, data.count)))
            for i, out in enumerate(outs):
                parts[i].append(np.asarray(out))
    except Exception as exc:
        raise BuildError(
            f"onnxruntime failed to run the model: {str(exc)[:300]}",
            code="runtime_run_failed",
            expected="the model to run on the given data",
            got=str(exc)[:300],
        ) from exc
    return [np.concatenate(p, axis=0) if p[0].ndim else np.stack(p) for p in parts]
