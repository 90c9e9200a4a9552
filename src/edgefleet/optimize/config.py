"""The build's configuration: one explicit object made at the entry point (CLI, bench or test)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefleet.optimize.errors import BuildInputError
from edgefleet.optimize.perturbations import perturbations_for
from edgefleet.optimize.quality import Task
from edgefleet.optimize.quantize import METHODS
from edgefleet.optimize.select import MIB, ClassPolicy
from edgefleet.protocol.hardware_class import HardwareClass

__all__ = ["BuildConfig", "class_policy", "model_name_from"]

_POLICY_KEYS = ("min_metric_ratio", "min_agreement", "min_speedup")


@dataclass(frozen=True)
class BuildConfig:
    task: Task = "classification"
    output_name: str | None = None
    model_name: str | None = None
    model_version: str = "1"
    release_counter: int = 0
    calibration_methods: tuple[str, ...] = ("minmax", "entropy", "percentile")
    per_channel: tuple[bool, ...] = (False, True)
    dynamic: bool = True
    mixed: bool = True
    students: tuple[Path, ...] = ()
    input_kind: str = "none"
    """image, signal, tabular or none: which perturbations the robustness check applies (none: no check)"""
    perturbations: tuple[tuple[str, float], ...] = ()
    """(name, strength) overriding the input kind's default strengths; strength 0 leaves one out"""
    robustness_seed: int = 0
    robust_min_agreement: float = 0.95
    robust_min_metric_ratio: float = 0.97
    input_range_margin: float = 0.25
    """the serving guard's range per input: the calibration set's, widened by this share of its span"""
    min_calibration_samples: int = 32
    max_calibration_samples: int = 256
    max_validation_samples: int = 5000
    warmup_runs: int = 20
    latency_runs: int = 200
    golden_samples: int = 8
    max_sensitivity_nodes: int = 16
    max_excluded: int = 6
    min_metric_ratio: float = 0.99
    min_agreement: float = 0.99
    min_speedup: float = 1.0  # beyond noise is always required; this asks for more on top
    progress: bool = True
    keep_candidates: bool = False
    """Also write every candidate and the validation set to ``OUT/candidates/`` (for probes)."""
    emulate: bool = True  # measure each class under its limits in fresh processes (optimize/emulate.py)
    sustained_s: float = 0.0  # > 0: emulation also runs each candidate under sustained load that long
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        perturbations_for(self.input_kind, dict(self.perturbations))  # refuses unknown kinds and names
        if not 0 <= self.input_range_margin <= 100:
            raise BuildInputError(
                "input range margin out of range",
                code="invalid_build_input",
                expected="0..100 (a share of the calibration range)",
                got=self.input_range_margin,
            )
        if not 0 <= self.sustained_s <= 24 * 3600:
            raise BuildInputError(
                "sustained load duration out of range",
                code="invalid_build_input",
                expected="0..86400 seconds",
                got=self.sustained_s,
            )
        unknown = [m for m in self.calibration_methods if m not in METHODS]
        if unknown:
            raise BuildInputError(
                "unknown calibration method",
                code="invalid_build_input",
                expected=sorted(METHODS),
                got=unknown,
            )
        if not 1 <= self.latency_runs <= 100_000 or not 0 <= self.warmup_runs <= 10_000:
            raise BuildInputError(
                "latency runs out of range",
                code="invalid_build_input",
                expected="1..100000 runs, 0..10000 warm-up",
                got=[self.latency_runs, self.warmup_runs],
            )
        if self.release_counter < 0:
            raise BuildInputError(
                "release counter must be >= 0",
                code="invalid_build_input",
                expected=">= 0",
                got=self.release_counter,
            )

    @classmethod
    def test_size(cls, **overrides: Any) -> BuildConfig:
        """Few candidates, few runs: for tests and CI. The measurements are still real."""
        small: dict[str, Any] = {
            "calibration_methods": ("minmax", "percentile"),
            "per_channel": (True,),
            "min_calibration_samples": 8,
            "max_calibration_samples": 32,
            "max_validation_samples": 300,
            "warmup_runs": 3,
            "latency_runs": 30,
            "golden_samples": 4,
            "max_sensitivity_nodes": 6,
            "max_excluded": 3,
            "progress": False,
        }
        return cls(**(small | overrides))

    def replace(self, **changes: Any) -> BuildConfig:
        return dataclasses.replace(self, **changes)


def class_policy(hwclass: HardwareClass, config: BuildConfig) -> ClassPolicy:
    """The selection policy of one class: its budgets, and quality bounds from ``[class.<name>.build]``."""
    overrides = (hwclass.model_extra or {}).get("build", {})
    if not isinstance(overrides, dict) or set(overrides) - set(_POLICY_KEYS):
        raise BuildInputError(
            f"class {hwclass.name!r}: bad [build] table",
            code="invalid_build_input",
            expected=list(_POLICY_KEYS),
            got=overrides if not isinstance(overrides, dict) else sorted(overrides),
        )
    values = {k: float(overrides.get(k, getattr(config, k))) for k in _POLICY_KEYS}
    return ClassPolicy(
        precisions=tuple(hwclass.precisions),
        max_model_bytes=int(hwclass.budgets.max_model_mb * MIB),
        ram_bytes=hwclass.budgets.ram_mb * MIB,
        latency_p95_ms=hwclass.performance.latency_p95_ms,
        objective=hwclass.objective,
        load_time_ms=hwclass.performance.load_time_ms,
        sustained_latency_p95_ms=hwclass.performance.sustained_latency_p95_ms,
        preferred_provider=hwclass.runtime.execution_providers[0],
        class_name=hwclass.name,
        **values,
    )


def model_name_from(path: Path) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-._") or "model"
    return name[:63]
