"""Shadow evaluation: a candidate model answers a sampled fraction of live requests beside the active one.

Off the active path: the active answer is computed and returned first; a sampled request's inputs and the
active outputs are copied and handed to a small worker pool. The active path's cost is the sampling decision
and, for a sampled request, the copies and a queue put. When ``max_pending`` comparisons are already waiting
the sample is skipped (counted), never queued: that is the stated budget. Only agreement statistics are kept
(top-1 agreement for classifiers, rows within the tolerance for regressors, max/mean abs difference, latency
of both); each comparison's statistics go to the metrics sink (``record_shadow(..., sample=)``), which sums
them into the telemetry window. The inputs and outputs never leave.

The tolerance of a regressor's agreement is the candidate manifest's health-check ``atol``/``rtol`` (the
same rule as the golden check: ``|candidate - active| <= atol + rtol * |active|`` for every element of a
row), unless ``ShadowConfig`` overrides it (docs/decisions.md).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from edgefleet.agent.runtime.base import LoadedModel
from edgefleet.agent.serve.metrics import MetricsSink, NullMetrics, ShadowSample
from edgefleet.protocol.errors import EdgefleetError

__all__ = [
    "AgreementStats",
    "Comparison",
    "ShadowConfig",
    "ShadowEvaluator",
    "ShadowVerdict",
    "Tolerance",
    "compare",
    "resolve_tolerance",
    "shadow_verdict",
]

log = logging.getLogger("edgefleet.agent.serve")
ShadowVerdict = Literal["pending", "pass", "fail"]


@dataclass(frozen=True)
class ShadowConfig:
    sample_fraction: float = 0.1
    max_pending: int = 4
    """Comparisons waiting for the worker; past this a sample is skipped, never queued."""
    workers: int = 1
    task: Literal["auto", "classifier", "regressor"] = "auto"
    atol: float | None = None
    """Absolute tolerance of agreement; ``None``: the candidate manifest's ``health_check.atol``."""
    rtol: float | None = None
    """Relative tolerance of agreement; ``None``: the candidate manifest's ``health_check.rtol``."""

    def __post_init__(self) -> None:
        if not 0.0 < self.sample_fraction <= 1.0:
            raise ValueError(f"sample_fraction must be in (0, 1], got {self.sample_fraction}")
        if self.max_pending < 1 or not 1 <= self.workers <= 8:
            raise ValueError("need max_pending >= 1 and 1 <= workers <= 8")
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")


@dataclass(frozen=True)
class Tolerance:
    atol: float = 1e-3
    rtol: float = 1e-3


def resolve_tolerance(config: ShadowConfig, manifest_atol: float, manifest_rtol: float) -> Tolerance:
    """Pure: the config's tolerance where set, else the candidate manifest's health-check tolerance."""
    return Tolerance(
        atol=config.atol if config.atol is not None else manifest_atol,
        rtol=config.rtol if config.rtol is not None else manifest_rtol,
    )


@dataclass(frozen=True)
class Comparison:
    rows: int
    top1_matches: int | None
    max_abs_diff: float
    mean_abs_diff: float
    rows_within_tolerance: int = 0
    """rows whose every element satisfies ``|c - a| <= atol + rtol * |a|`` (a NaN never does)"""

    def agreement(self) -> float:
        """Top-1 share for a classifier, share of rows within the tolerance otherwise (1.0 for no rows)."""
        if not self.rows:
            return 1.0
        matched = self.top1_matches if self.top1_matches is not None else self.rows_within_tolerance
        return matched / self.rows


def compare(
    active: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    output: str,
    *,
    classifier: bool,
    tolerance: Tolerance | None = None,
) -> Comparison:
    """Pure: agreement of one output; shapes must match (else code ``shadow_shape_mismatch``)."""
    a = np.asarray(active[output])
    c = np.asarray(candidate.get(output)) if output in candidate else None
    if c is None or a.shape != c.shape:
        raise EdgefleetError(
            "candidate output differs in shape",
            code="shadow_shape_mismatch",
            expected=list(a.shape),
            got=None if c is None else list(c.shape),
        )
    tol = tolerance or Tolerance()
    a64 = a.astype(np.float64)
    diff = np.abs(a64 - c.astype(np.float64))
    finite = bool(np.isfinite(diff).all())
    max_abs = float(diff.max()) if diff.size and finite else (math.inf if diff.size else 0.0)
    mean_abs = float(diff.mean()) if diff.size and finite else (math.inf if diff.size else 0.0)
    rows = a.shape[0] if a.ndim >= 1 else 1
    if diff.size:
        within = diff <= tol.atol + tol.rtol * np.abs(a64)  # NaN compares False: never within
        rows_within = int(within.reshape(rows, -1).all(axis=1).sum())
    else:
        rows_within = rows
    matches = None
    if classifier and a.ndim >= 2 and a.size:
        matches = int((a.reshape(rows, -1).argmax(axis=1) == c.reshape(rows, -1).argmax(axis=1)).sum())
    return Comparison(
        rows=rows,
        top1_matches=matches,
        max_abs_diff=max_abs,
        mean_abs_diff=mean_abs,
        rows_within_tolerance=rows_within,
    )


@dataclass
class AgreementStats:
    candidate_version: str
    samples: int = 0
    rows: int = 0
    top1_matches: int = 0
    top1_rows: int = 0
    tolerance_matches: int = 0
    atol: float | None = None
    rtol: float | None = None
    max_abs_diff: float = 0.0
    sum_mean_abs_diff: float = 0.0
    active_latency_ms_sum: float = 0.0
    candidate_latency_ms_sum: float = 0.0
    candidate_latency_ms_max: float = 0.0
    skipped_budget: int = 0
    candidate_errors: dict[str, int] = field(default_factory=dict)

    @property
    def top1_agreement(self) -> float | None:
        return self.top1_matches / self.top1_rows if self.top1_rows else None

    @property
    def tolerance_agreement(self) -> float | None:
        """Share of compared rows within ``atol``/``rtol`` of the active answer."""
        return self.tolerance_matches / self.rows if self.rows else None

    @property
    def mean_abs_diff(self) -> float | None:
        return self.sum_mean_abs_diff / self.samples if self.samples else None

    def add(self, comparison: Comparison, active_ms: float, candidate_ms: float) -> None:
        self.samples += 1
        self.rows += comparison.rows
        if comparison.top1_matches is not None:
            self.top1_matches += comparison.top1_matches
            self.top1_rows += comparison.rows
        self.tolerance_matches += comparison.rows_within_tolerance
        self.max_abs_diff = max(self.max_abs_diff, comparison.max_abs_diff)
        self.sum_mean_abs_diff += comparison.mean_abs_diff
        self.active_latency_ms_sum += active_ms
        self.candidate_latency_ms_sum += candidate_ms
        self.candidate_latency_ms_max = max(self.candidate_latency_ms_max, candidate_ms)

    def to_dict(self) -> dict[str, object]:
        n = max(self.samples, 1)
        return {
            "candidate_version": self.candidate_version,
            "samples": self.samples,
            "rows": self.rows,
            "top1_agreement": self.top1_agreement,
            "tolerance_agreement": self.tolerance_agreement,
            "tolerance": {"atol": self.atol, "rtol": self.rtol},
            "max_abs_diff": self.max_abs_diff if self.samples else None,
            "mean_abs_diff": self.mean_abs_diff,
            "active_latency_ms_mean": self.active_latency_ms_sum / n if self.samples else None,
            "candidate_latency_ms_mean": self.candidate_latency_ms_sum / n if self.samples else None,
            "candidate_latency_ms_max": self.candidate_latency_ms_max if self.samples else None,
            "skipped_budget": self.skipped_budget,
            "candidate_errors": dict(self.candidate_errors),
        }


def shadow_verdict(
    stats: AgreementStats,
    *,
    min_samples: int,
    min_top1_agreement: float | None = None,
    min_tolerance_agreement: float | None = None,
    max_mean_abs_diff: float | None = None,
    max_error_fraction: float = 0.0,
) -> ShadowVerdict:
    """Pure gate for activation: ``pending`` until ``min_samples`` comparisons, then pass/fail."""
    errors = sum(stats.candidate_errors.values())
    total = stats.samples + errors
    if total and errors / total > max_error_fraction and total >= min_samples:
        return "fail"
    if stats.samples < min_samples:
        return "pending"
    agreement = stats.top1_agreement
    if min_top1_agreement is not None and (agreement is None or agreement < min_top1_agreement):
        return "fail"
    within = stats.tolerance_agreement
    if min_tolerance_agreement is not None and (within is None or within < min_tolerance_agreement):
        return "fail"
    mean = stats.mean_abs_diff
    if max_mean_abs_diff is not None and (mean is None or mean > max_mean_abs_diff):
        return "fail"
    return "pass"


class ShadowEvaluator:
    """Owns the candidate model while shadowing. ``offer`` is called on the active path after each answer."""

    def __init__(
        self,
        candidate: LoadedModel,
        candidate_version: str,
        primary_output: str,
        config: ShadowConfig,
        *,
        tolerance: Tolerance | None = None,
        metrics: MetricsSink | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """``tolerance``: what counts as agreeing (``resolve_tolerance``; default the config's, else 1e-3)."""
        self._model = candidate
        self._output = primary_output
        self.config = config
        self.tolerance = tolerance or resolve_tolerance(config, 1e-3, 1e-3)
        self._metrics = metrics or NullMetrics()
        self._clock = clock
        # imported here: ~0.5 MiB resident in an agent that runs no shadow
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="edgefleet-shadow")
        self._lock = threading.Lock()
        self._pending = 0
        self._credit = 0.0
        self._stats = AgreementStats(
            candidate_version=candidate_version, atol=self.tolerance.atol, rtol=self.tolerance.rtol
        )
        self._closed = False

    @property
    def candidate_version(self) -> str:
        return self._stats.candidate_version

    def offer(
        self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray], active_ms: float
    ) -> bool:
        """Sample deterministically at ``sample_fraction``; True when a comparison was queued."""
        credit = self._credit + self.config.sample_fraction
        if credit < 1.0:
            self._credit = credit
            return False
        self._credit = credit - 1.0
        with self._lock:
            if self._closed:
                return False
            if self._pending >= self.config.max_pending:
                self._stats.skipped_budget += 1
                skipped = True
            else:
                skipped = False
                self._pending += 1
        if skipped:
            self._metrics.record_shadow_skipped(self._stats.candidate_version)
            return False
        copied_in = {k: np.array(v, copy=True) for k, v in inputs.items()}
        copied_out = {k: np.array(v, copy=True) for k, v in outputs.items()}
        try:
            self._pool.submit(self._compare, copied_in, copied_out, active_ms)
        except RuntimeError:  # the pool was shut down in between
            with self._lock:
                self._pending -= 1
            return False
        return True

    def _compare(
        self, inputs: dict[str, np.ndarray], active: dict[str, np.ndarray], active_ms: float
    ) -> None:
        try:
            start = self._clock()
            try:
                got = self._model.predict(inputs)
                candidate_ms = (self._clock() - start) * 1000.0
                classifier = self._is_classifier(active)
                comparison = compare(
                    active, got, self._output, classifier=classifier, tolerance=self.tolerance
                )
            except EdgefleetError as exc:
                with self._lock:
                    errors = self._stats.candidate_errors
                    errors[exc.code] = errors.get(exc.code, 0) + 1
                self._metrics.record_shadow_error(self._stats.candidate_version, exc.code)
                return
            with self._lock:
                self._stats.add(comparison, active_ms, candidate_ms)
            sample = ShadowSample(
                rows=comparison.rows,
                top1_matches=comparison.top1_matches,
                rows_within_tolerance=comparison.rows_within_tolerance,
                max_abs_diff=comparison.max_abs_diff,
                mean_abs_diff=comparison.mean_abs_diff,
                active_ms=active_ms,
                candidate_ms=candidate_ms,
            )
            self._metrics.record_shadow(
                comparison.agreement(), model_version=self._stats.candidate_version, sample=sample
            )
        except Exception:  # never let a comparison kill the worker silently
            log.exception("event=shadow_compare_crashed")
        finally:
            with self._lock:
                self._pending -= 1

    def _is_classifier(self, active: Mapping[str, np.ndarray]) -> bool:
        if self.config.task != "auto":
            return self.config.task == "classifier"
        out = np.asarray(active[self._output])
        return out.dtype.kind == "f" and out.ndim == 2 and out.shape[1] >= 2

    def stats(self) -> AgreementStats:
        with self._lock:
            return AgreementStats(
                **{**self._stats.__dict__, "candidate_errors": dict(self._stats.candidate_errors)}
            )

    def drain(self, timeout_s: float = 30.0) -> None:
        """Wait (bounded) for the queued comparisons; for tests and for a final report."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._pending == 0:
                    return
            time.sleep(0.005)

    def close(self) -> AgreementStats:
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._pending = 0
        return self.stats()
