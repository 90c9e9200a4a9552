"""Pure arithmetic of a sustained run: percentiles, the first and last window, drift, throttle and temperature
deltas. One truth for the probe worker on devices and the class emulation on the build host."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgefleet.protocol.probe import SustainedFigures, ThermalSnapshot

__all__ = ["percentiles_ms", "sustained_figures", "window_figures", "window_s_for"]

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
    return window_figures(first, last, duration_s, before, after, runs=len(samples))


def window_figures(
    first_s: Sequence[float],
    last_s: Sequence[float],
    duration_s: float,
    before: ThermalSnapshot,
    after: ThermalSnapshot,
    *,
    runs: int,
) -> SustainedFigures:
    """The figures from the latencies (seconds) of the runs that started in the first and in the last
    ``window_s_for(duration_s)``, and the count of all runs."""
    first_p95 = percentiles_ms(first_s)["p95_ms"] if len(first_s) else None
    last_p95 = percentiles_ms(last_s)["p95_ms"] if len(last_s) else None
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
        runs=runs,
        window_s=window_s_for(duration_s),
        first_p95_ms=first_p95,
        last_p95_ms=last_p95,
        drift_ratio=drift,
        throttle_events=throttle,
        temp_rise_c=rise,
        thermal="available" if before.available and after.available else "unavailable",
    )
