"""Measurement noise: latency summaries with confidence intervals, and speed-ups that must beat them.

Pure functions on samples. A speed-up is claimed only when its whole 95 % interval lies above 1:

- *paired* (both candidates timed interleaved in the same run, ``run_id`` equal, >= 3 rounds): the per-round
  medians give per-round ratios; the interval is a Student-t interval of their logarithms. A load burst on a
  shared host hits both candidates of a round alike, so it widens nothing it should not.
- *unpaired* (different runs, devices, processes): the distribution-free interval of each median (order
  statistics of the binomial) and the ratio of their extreme ends, which is conservative.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["Interval", "Latency", "latency_from_samples", "median_interval", "speedup"]

Z95 = 1.959964
# two-sided 95 % Student-t quantiles, df 1..30; beyond: the normal quantile
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
MIN_PAIRED_ROUNDS = 3


def t95(df: int) -> float:
    return _T95[df - 1] if 1 <= df <= len(_T95) else Z95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95 % interval and how it was derived."""

    value: float
    low: float
    high: float
    method: str

    def above(self, threshold: float = 1.0) -> bool:
        """True when the whole interval lies above ``threshold`` (the difference beats the noise)."""
        return self.low > threshold

    def below(self, threshold: float = 1.0) -> bool:
        return self.high < threshold

    def text(self) -> str:
        return f"{self.value:.2f}x [{self.low:.2f}, {self.high:.2f}]"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Latency:
    """Batch-1 latency of one candidate in one place. ``p50_low_ms``/``p50_high_ms``: 95 % interval of the
    median. ``round_p50_ms``: median of each interleaved round; figures sharing ``run_id`` were timed
    interleaved in one run and are compared pairwise."""

    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    runs: int
    p50_low_ms: float
    p50_high_ms: float
    round_p50_ms: tuple[float, ...] = field(default_factory=tuple)
    run_id: str | None = None
    quiet_p95_ms: float | None = None  # p95 of the quietest round: others' load only ever adds time

    @property
    def envelope_p95_ms(self) -> float:
        """The p95 to hold against a budget on a shared build machine (the quietest round's, when known)."""
        return self.quiet_p95_ms if self.quiet_p95_ms is not None else self.p95_ms

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["round_p50_ms"] = list(self.round_p50_ms)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Latency:
        values = dict(data)
        values["round_p50_ms"] = tuple(float(x) for x in values.get("round_p50_ms") or ())
        return cls(**values)


def median_interval(samples: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Distribution-free 95 % interval of the median: order statistics at n/2 -+ 1.96 sqrt(n)/2."""
    arr = np.sort(np.asarray(samples, dtype=np.float64))
    n = len(arr)
    if n == 0:
        raise ValueError("no samples")
    half = Z95 * math.sqrt(n) / 2.0
    lo = max(0, math.floor(n / 2.0 - half) - 1)
    hi = min(n - 1, math.ceil(n / 2.0 + half))
    return float(arr[lo]), float(arr[hi])


def latency_from_samples(
    samples_ms: Sequence[float],
    *,
    rounds: Sequence[Sequence[float]] = (),
    run_id: str | None = None,
) -> Latency:
    """Summarize timed runs. ``rounds``: the same samples split by interleaved round (optional)."""
    arr = np.asarray(samples_ms, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("no latency samples")
    p50, p90, p95, p99 = (float(np.percentile(arr, q)) for q in (50, 90, 95, 99))
    low, high = median_interval(arr)
    round_p50 = tuple(float(np.median(r)) for r in rounds if len(r))
    quiet = min((float(np.percentile(r, 95)) for r in rounds if len(r)), default=None)
    return Latency(p50, p90, p95, p99, int(arr.size), low, high, round_p50, run_id, quiet)


def speedup(reference: Latency, candidate: Latency) -> Interval:
    """How many times faster ``candidate`` is than ``reference`` (p50), with its 95 % interval."""
    value = reference.p50_ms / candidate.p50_ms
    paired = (
        reference.run_id is not None
        and reference.run_id == candidate.run_id
        and len(reference.round_p50_ms) == len(candidate.round_p50_ms) >= MIN_PAIRED_ROUNDS
    )
    if paired:
        logs = np.log(np.asarray(reference.round_p50_ms) / np.asarray(candidate.round_p50_ms))
        n = len(logs)
        half = t95(n - 1) * float(logs.std(ddof=1)) / math.sqrt(n)
        centre = float(logs.mean())
        # the interval must also cover the overall estimate: rounds are short and their medians coarse
        low = min(math.exp(centre - half), value)
        high = max(math.exp(centre + half), value)
        return Interval(value, low, high, f"paired over {n} interleaved rounds (t interval)")
    low = reference.p50_low_ms / candidate.p50_high_ms
    high = reference.p50_high_ms / candidate.p50_low_ms
    return Interval(value, min(low, value), max(high, value), "unpaired median intervals")
