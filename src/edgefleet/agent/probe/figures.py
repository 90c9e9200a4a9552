"""Pure arithmetic of a probe: quality against the FP32 reference.

Percentiles and the sustained-load drift live in ``edgefleet.sustained.drift`` (shared with the build's
class emulation)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["quality_figures"]


def quality_figures(
    task: str, outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray | None
) -> dict[str, Any]:
    """The device's outputs against the FP32 reference computed at build time, on the same inputs."""
    out = outputs.reshape(len(outputs), -1).astype(np.float64)
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    has_nan = bool(not np.isfinite(out).all())
    diff = np.abs(out - ref)
    figures: dict[str, Any] = {
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "has_nan": has_nan,
        "task_metric": None,
        "task_value": None,
    }
    if task == "classification":
        predicted = out.argmax(axis=1)
        figures["agreement_metric"] = "top1_agreement"
        figures["agreement"] = float((predicted == ref.argmax(axis=1)).mean())
        if labels is not None:
            figures["task_metric"] = "accuracy"
            figures["task_value"] = float((predicted == labels.reshape(-1)).mean())
    elif task == "regression":  # against the reference's span, as the build judges it
        spread = float(ref.max() - ref.min()) if ref.size else 0.0
        spread = spread or 1.0
        figures["agreement_metric"] = "1-rmse/range"
        figures["agreement"] = float(1.0 - np.sqrt(((out - ref) ** 2).mean()) / spread)
    else:
        norms = np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1)
        cosine = (out * ref).sum(axis=1) / np.where(norms == 0, 1.0, norms)
        figures["agreement_metric"] = "cosine"
        figures["agreement"] = float(cosine.mean())
    return figures
