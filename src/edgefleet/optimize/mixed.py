"""Accuracy-aware quantization: keep the most sensitive nodes in float until the quality bound holds.

1. Sensitivity: quantize one node at a time (ranges from one shared calibration run, cached) and measure
   how far the outputs move from the FP32 reference on the validation inputs (mean absolute difference).
2. Greedy: exclude the k most sensitive nodes, k = 1, 2, ... up to ``max_excluded``, until the candidate
   is within the bound. The first that holds is the mixed candidate; the search record says what was tried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefleet.optimize.candidates import Candidate
from edgefleet.optimize.dataset import Dataset
from edgefleet.optimize.quality import Quality
from edgefleet.optimize.quantize import make_int8_static, quantizable_nodes

__all__ = ["MixedSearch", "search_mixed_precision"]


@dataclass
class MixedSearch:
    """What the search did: sensitivities per node and every exclusion tried."""

    sensitivity: dict[str, float] = field(default_factory=dict)
    tried: list[dict[str, Any]] = field(default_factory=list)
    candidate: Candidate | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "sensitivity": self.sensitivity,
            "tried": self.tried,
            "chosen": None if self.candidate is None else self.candidate.name,
        }


def search_mixed_precision(
    source: Path,
    work_dir: Path,
    calibration: Dataset,
    *,
    method: str,
    per_channel: bool,
    reduce_range: bool,
    max_samples: int,
    max_sensitivity_nodes: int,
    max_excluded: int,
    evaluate: Callable[[Candidate], Quality],
    accept: Callable[[Quality], tuple[bool, list[str]]],
) -> MixedSearch:
    search = MixedSearch()
    nodes = quantizable_nodes(source)
    if not nodes:
        return search
    cache = work_dir / f"calibration-{method}.json"
    scratch = work_dir / "mixed"
    scratch.mkdir(exist_ok=True)
    common: dict[str, Any] = {
        "method": method,
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "max_samples": max_samples,
    }
    for index, node in enumerate(nodes[:max_sensitivity_nodes]):
        single = make_int8_static(
            source, scratch, calibration, only=(node,), cache_path=cache, name=f"sens-{index}", **common
        )
        search.sensitivity[node] = evaluate(single).mean_abs_diff
        single.path.unlink(missing_ok=True)
    ranked = sorted(search.sensitivity, key=lambda n: search.sensitivity[n], reverse=True)
    for k in range(1, min(max_excluded, len(ranked)) + 1):
        excluded = tuple(ranked[:k])
        candidate = make_int8_static(
            source,
            work_dir,
            calibration,
            exclude=excluded,
            cache_path=cache,
            name=f"mixed-{method}-x{k}",
            notes=(f"accuracy-aware: {k} most sensitive node(s) kept in float: {', '.join(excluded)}",),
            **common,
        )
        quality = evaluate(candidate)
        ok, misses = accept(quality)
        search.tried.append(
            {"excluded": list(excluded), "agreement": quality.agreement, "ok": ok, "misses": misses}
        )
        if ok:
            search.candidate = candidate
            return search
        candidate.path.unlink(missing_ok=True)
    return search
