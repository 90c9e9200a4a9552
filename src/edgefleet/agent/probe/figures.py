"""Pure arithmetic of a probe: percentiles, sustained-load drift, quality against the FP32 reference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgefleet.protocol.probe import SustainedFigures, ThermalSnapshot

__all__ = ["percentiles_ms", "quality_figures", "sustained_figures", "window_s_for"]

MINUTE_S = 60.0


def percentiles_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    values = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    if values.size == 0:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}


def window_s_for(duration_s: float) -> float:
    """The first and last minute; a third of the run when it is shorter than three minutes."""
    return MINUTE_S if duration_s >= 3 * MINUTE_S else max(duration_s / 3.0, 1e-3)


def sustained_figures(
    samples: Sequence[tuple[float, float]],
    duration_s: float,
    before: ThermalSnapshot,
    after: ThermalSnapshot,
) -> SustainedFigures:
    """``samples`` are (seconds since the start, latency in seconds) of every run under sustained load."""
    window = window_s_for(duration_s)
    first = [lat for t, lat in samples if t < window]
    last = [lat for t, lat in samples if t >= duration_s - window]
    first_p95 = percentiles_ms(first)["p95_ms"] if first else None
    last_p95 = percentiles_ms(last)["p95_ms"] if last else None
    drift = last_p95 / first_p95 if first_p95 and last_p95 is not None else None
    throttle = (
        after.throttle_count - before.throttle_count
        if after.throttle_count is not None and before.throttle_count is not None
        else None
    )
    rise = (
        after.max_temp_c - before.max_temp_c
        if after.max_temp_c is not None and before.max_temp_c is not None
        else None
    )
    return SustainedFigures(
        duration_s=duration_s,
        runs=len(samples),
        window_s=window,
        first_p95_ms=first_p95,
        last_p95_ms=last_p95,
        drift_ratio=drift,
        throttle_events=throttle,
        temp_rise_c=rise,
        thermal="available" if before.available and after.available else "unavailable",
    )


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
