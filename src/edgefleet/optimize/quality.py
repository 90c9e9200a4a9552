"""Quality of a candidate against labels and against the FP32 reference. Pure functions on arrays."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from edgefleet.optimize.errors import BuildInputError

__all__ = ["Quality", "Task", "check_labels", "measure_quality", "within_bound"]

Task = Literal["classification", "regression", "embedding"]


@dataclass(frozen=True)
class Quality:
    """``agreement`` is top-1 agreement (classification), or 1 - RMSE/std (regression), or mean cosine
    similarity (embedding), always against the FP32 reference's outputs on the same real inputs."""

    task_metric: str | None
    task_value: float | None
    agreement_metric: str
    agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    has_nan: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1).astype(np.float64)


def check_labels(labels: np.ndarray, reference: np.ndarray, task: Task, *, what: str) -> None:
    """Labels must be usable for ``task`` given the reference output's shape."""
    if task == "classification":
        classes = _flat(reference).shape[1]
        if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 1:
            raise BuildInputError(
                f"{what} labels must be a 1-D integer class index",
                code="labels_mismatch",
                expected=f"int array of shape (N,), values in [0, {classes})",
                got=f"{labels.dtype} {list(labels.shape)}",
            )
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise BuildInputError(
                f"{what} labels name classes the model does not output",
                code="labels_mismatch",
                expected=f"values in [0, {classes})",
                got=f"[{int(labels.min())}, {int(labels.max())}]",
            )
    elif (
        task == "regression" and _flat(labels.reshape(len(labels), -1)).shape[1] != _flat(reference).shape[1]
    ):
        raise BuildInputError(
            f"{what} labels do not match the model output",
            code="labels_mismatch",
            expected=f"{_flat(reference).shape[1]} values per sample",
            got=list(labels.shape),
        )


def measure_quality(
    task: Task, output: np.ndarray, reference: np.ndarray, labels: np.ndarray | None
) -> Quality:
    out, ref = _flat(output), _flat(reference)
    has_nan = bool(not np.isfinite(out).all())
    diff = np.abs(np.nan_to_num(out, nan=np.inf) - ref)
    metric: str | None = None
    value: float | None = None
    if task == "classification":
        agreement_metric = "top1_agreement"
        agreement = float((out.argmax(1) == ref.argmax(1)).mean())
        if labels is not None:
            metric, value = "accuracy", float((out.argmax(1) == labels).mean())
    elif task == "regression":
        agreement_metric = "1-rmse/std"
        scale = float(ref.std()) or 1.0
        rmse = float(np.sqrt(np.mean((out - ref) ** 2))) if not has_nan else float("inf")
        agreement = max(0.0, 1.0 - rmse / scale)
        if labels is not None:
            y = _flat(labels.reshape(len(labels), -1))
            ss_res = float(((out - y) ** 2).sum())
            ss_tot = float(((y - y.mean(0)) ** 2).sum()) or 1.0
            metric, value = "r2", 1.0 - ss_res / ss_tot
    else:
        agreement_metric = "mean_cosine"
        num = (out * ref).sum(1)
        den = np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1)
        agreement = float(np.mean(num / np.maximum(den, 1e-12)))
    if has_nan:
        agreement = 0.0
    return Quality(
        task_metric=metric,
        task_value=value,
        agreement_metric=agreement_metric,
        agreement=agreement,
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        has_nan=has_nan,
    )


def within_bound(
    quality: Quality, reference: Quality, *, min_metric_ratio: float, min_agreement: float
) -> tuple[bool, list[str]]:
    """Pure: does ``quality`` keep >= ratio of the reference metric and >= the agreement floor?"""
    misses: list[str] = []
    if quality.has_nan:
        misses.append("outputs contain NaN or infinity")
    if quality.agreement < min_agreement:
        misses.append(f"{quality.agreement_metric} {quality.agreement:.4f} < {min_agreement:.4f}")
    if quality.task_value is not None and reference.task_value is not None:
        ref = reference.task_value
        floor = ref - (1.0 - min_metric_ratio) * abs(ref)
        if quality.task_value < floor:
            misses.append(
                f"{quality.task_metric} {quality.task_value:.4f} < {floor:.4f} "
                f"({min_metric_ratio:.0%} of FP32 {ref:.4f})"
            )
    return not misses, misses
