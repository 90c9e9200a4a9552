"""Robustness of each candidate to degraded input: quality under each perturbation of the model's input kind.

For every perturbation (``perturbations.perturbations_for(kind)``) the validation inputs are perturbed once
(seeded) and FP32 and every candidate run on the *same* perturbed inputs. Per perturbation the report holds:

* FP32 under the perturbation, against clean FP32 (how much the model itself degrades) and against labels;
* each candidate under the perturbation, against FP32 under the same perturbation (agreement) and labels.

``robustness_misses`` (pure) refuses a candidate that keeps the bound on clean inputs but not on perturbed
ones: its agreement with FP32 under a perturbation below ``min_agreement``, or its task metric below
``min_metric_ratio`` of FP32's under the same perturbation (``quality.within_bound``, the same rule as on
clean inputs, with its own, usually looser, thresholds).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgefleet.optimize.perturbations import perturb, perturbations_for
from edgefleet.optimize.quality import Quality, Task, measure_quality, within_bound

__all__ = [
    "PerturbedResult",
    "RobustnessPolicy",
    "RobustnessReport",
    "evaluate_robustness",
    "robustness_misses",
]

KEEP_SAMPLES = 500
"""as many as a probe's worker judges quality on"""

Run = Callable[[str, Mapping[str, np.ndarray]], np.ndarray]
"""(candidate name, inputs) -> the judged output on those inputs"""


@dataclass(frozen=True)
class RobustnessPolicy:
    min_agreement: float = 0.95
    min_metric_ratio: float = 0.97


@dataclass(frozen=True)
class PerturbedResult:
    perturbation: str
    strength: float
    fp32: Quality
    """FP32 on the perturbed inputs against FP32 on the clean ones (and against the labels)"""
    candidates: dict[str, Quality] = field(default_factory=dict)
    """each candidate on the perturbed inputs against FP32 on the same perturbed inputs (and the labels)"""

    def to_dict(self) -> dict[str, Any]:
        return {
            "perturbation": self.perturbation,
            "strength": self.strength,
            "fp32": self.fp32.to_dict(),
            "candidates": {name: q.to_dict() for name, q in sorted(self.candidates.items())},
        }


@dataclass(frozen=True)
class RobustnessReport:
    input_kind: str
    seed: int
    policy: RobustnessPolicy
    results: tuple[PerturbedResult, ...] = ()
    sets: dict[str, tuple[dict[str, np.ndarray], np.ndarray]] = field(default_factory=dict)
    """per perturbation, its first ``KEEP_SAMPLES`` perturbed inputs and FP32's judged output on them: what
    travels with a probe so devices measure on the same inputs (not in ``to_dict``)"""

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_kind": self.input_kind,
            "seed": self.seed,
            "min_agreement": self.policy.min_agreement,
            "min_metric_ratio": self.policy.min_metric_ratio,
            "perturbations": [r.to_dict() for r in self.results],
        }

    def misses(self, candidate: str) -> list[str]:
        return robustness_misses(candidate, self)

    def summary(self, candidate: str) -> dict[str, Any]:
        """Compact, for a manifest: per perturbation, FP32's and ``candidate``'s task value and agreement."""
        rows = []
        for r in self.results:
            q = r.candidates.get(candidate, r.fp32 if candidate == "fp32" else None)
            rows.append(
                {
                    "perturbation": r.perturbation,
                    "strength": r.strength,
                    "fp32_task_value": r.fp32.task_value,
                    "fp32_agreement_with_clean": r.fp32.agreement,
                    "task_value": None if q is None else q.task_value,
                    "agreement_with_fp32": 1.0
                    if candidate == "fp32"
                    else (None if q is None else q.agreement),
                }
            )
        return {
            "input_kind": self.input_kind,
            "seed": self.seed,
            "candidate": candidate,
            "perturbations": rows,
        }


def robustness_misses(candidate: str, report: RobustnessReport, *, fp32_name: str = "fp32") -> list[str]:
    """Pure: why ``candidate`` is not robust enough (empty: it is), one reason per perturbation missed."""
    if candidate == fp32_name:
        return []
    reasons = []
    for result in report.results:
        quality = result.candidates.get(candidate)
        if quality is None:
            continue
        # The candidate is judged against FP32 under the same perturbation: FP32's own (task) figures there
        # are the reference, and agreement is already measured against FP32's perturbed outputs.
        reference = Quality(
            task_metric=result.fp32.task_metric,
            task_value=result.fp32.task_value,
            agreement_metric=quality.agreement_metric,
            agreement=1.0,
            max_abs_diff=0.0,
            mean_abs_diff=0.0,
            has_nan=False,
        )
        ok, misses = within_bound(
            quality,
            reference,
            min_metric_ratio=report.policy.min_metric_ratio,
            min_agreement=report.policy.min_agreement,
        )
        if not ok:
            reasons.append(f"under {result.perturbation} ({result.strength:g}): " + "; ".join(misses))
    return reasons


def evaluate_robustness(
    *,
    names: list[str],
    inputs: Mapping[str, np.ndarray],
    labels: np.ndarray | None,
    task: Task,
    kind: str,
    run: Run,
    clean_fp32: np.ndarray,
    strengths: Mapping[str, float] | None = None,
    seed: int = 0,
    policy: RobustnessPolicy | None = None,
    fp32_name: str = "fp32",
) -> RobustnessReport:
    """Run FP32 and each of ``names`` on every perturbation of ``kind`` (seeded: perturbation ``i`` uses
    ``seed + i``). ``run`` returns the judged output of one candidate on a set of inputs."""
    policy = policy or RobustnessPolicy()
    results = []
    sets: dict[str, tuple[dict[str, np.ndarray], np.ndarray]] = {}
    for index, perturbation in enumerate(perturbations_for(kind, strengths)):
        perturbed = perturb(inputs, perturbation, seed=seed + index)
        fp32_out = run(fp32_name, perturbed)
        fp32_quality = measure_quality(task, fp32_out, clean_fp32, labels)
        candidates = {
            name: measure_quality(task, run(name, perturbed), fp32_out, labels)
            for name in names
            if name != fp32_name
        }
        results.append(PerturbedResult(perturbation.name, perturbation.strength, fp32_quality, candidates))
        sets[perturbation.name] = (
            {k: v[:KEEP_SAMPLES] for k, v in perturbed.items()},
            fp32_out[:KEEP_SAMPLES],
        )
    return RobustnessReport(kind, seed, policy, tuple(results), sets)
