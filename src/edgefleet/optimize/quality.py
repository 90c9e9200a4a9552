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
    """``agreement`` is top-1 agreement (classification), or 1 - RMSE/range (regression: the error against
    the span of the reference outputs, so nearly constant or sparse outputs do not divide by almost
    nothing), or mean cosine similarity (embedding), always against the FP32 reference's outputs on the
    same real inputs.

    ``baseline_agreement``: the agreement a constant answer (the reference's mean output) would get on the
    same inputs. When it already reaches the bound, the validation inputs cannot tell a good candidate from
    a broken one: ``informative`` is False and ``warning`` asks for representative inputs."""

    task_metric: str | None
    task_value: float | None
    agreement_metric: str
    agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    has_nan: bool
    baseline_agreement: float | None = None
    informative: bool = True
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Quality:
        return cls(**data)


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


def _agreement(task: Task, out: np.ndarray, ref: np.ndarray) -> tuple[str, float]:
    if task == "classification":
        return "top1_agreement", float((out.argmax(1) == ref.argmax(1)).mean())
    if task == "regression":
        span = float(ref.max() - ref.min()) if ref.size else 0.0
        rmse = float(np.sqrt(np.mean((out - ref) ** 2)))
        if span <= 0.0:
            return "1-rmse/range", 1.0 if rmse == 0.0 else 0.0
        return "1-rmse/range", max(0.0, 1.0 - rmse / span)
    num = (out * ref).sum(1)
    den = np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1)
    return "mean_cosine", float(np.mean(num / np.maximum(den, 1e-12)))


def measure_quality(
    task: Task,
    output: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray | None,
    *,
    min_agreement: float = 0.99,
) -> Quality:
    out, ref = _flat(output), _flat(reference)
    has_nan = bool(not np.isfinite(out).all())
    diff = np.abs(np.nan_to_num(out, nan=np.inf) - ref)
    metric: str | None = None
    value: float | None = None
    agreement_metric, agreement = _agreement(task, np.nan_to_num(out), ref)
    if task == "classification" and labels is not None:
        metric, value = "accuracy", float((out.argmax(1) == labels).mean())
    elif task == "regression" and labels is not None:
        y = _flat(labels.reshape(len(labels), -1))
        ss_res = float(((out - y) ** 2).sum())
        ss_tot = float(((y - y.mean(0)) ** 2).sum()) or 1.0
        metric, value = "r2", 1.0 - ss_res / ss_tot
    if has_nan:
        agreement = 0.0
    constant = np.broadcast_to(ref.mean(0, keepdims=True), ref.shape)
    _, baseline = _agreement(task, constant, ref)
    informative = baseline < min_agreement
    warning = None
    if not informative:
        warning = (
            f"the validation inputs cannot separate a good candidate from a broken one: a constant answer "
            f"already reaches {agreement_metric} {baseline:.4f} (bound {min_agreement:.4f}); provide "
            f"representative inputs (inputs on which the model's outputs differ)"
        )
    return Quality(
        task_metric=metric,
        task_value=value,
        agreement_metric=agreement_metric,
        agreement=agreement,
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        has_nan=has_nan,
        baseline_agreement=baseline,
        informative=informative,
        warning=warning,
    )


def within_bound(
    quality: Quality, reference: Quality, *, min_metric_ratio: float, min_agreement: float
) -> tuple[bool, list[str]]:
    """Pure: does ``quality`` keep >= ratio of the reference metric and >= the agreement floor?"""
    misses: list[str] = []
    if quality.has_nan:
        misses.append("outputs contain NaN or infinity")
    if not quality.informative and quality.task_value is None:
        misses.append(
            "unproven: the validation inputs cannot separate a good candidate from a broken one "
            "(provide representative inputs or labels)"
        )
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
