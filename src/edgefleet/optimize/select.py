"""Choosing one candidate per class. Pure: measured numbers in, a decision with its reasons out.

Rules, in order:
1. A candidate must be compatible with the class (precision allowed, ops supported, loads in the runtime).
2. It must stay within the quality bound against FP32 (metric ratio and agreement).
3. It must fit the class budgets: model size, peak memory, latency p95 envelope.
4. It must be faster than FP32 on the measured machine by at least ``min_speedup`` (FP32 itself is
   exempt). A slower INT8 is refused even if it is smaller: INT8 does not always pay.
Among the survivors: the fastest p50; candidates within ``latency_tie_ratio`` of it count as equally fast
and the smallest of those wins. No survivor: the class fails, with every candidate's misses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgefleet.optimize.measure import Compatibility, Performance
from edgefleet.optimize.quality import Quality, within_bound

__all__ = ["ClassPolicy", "Measured", "Selection", "Verdict", "select_candidate"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class ClassPolicy:
    precisions: tuple[str, ...]
    max_model_bytes: int
    ram_bytes: int
    latency_p95_ms: float
    min_metric_ratio: float = 0.99
    min_agreement: float = 0.99
    min_speedup: float = 1.05
    latency_tie_ratio: float = 1.03


@dataclass(frozen=True)
class Measured:
    """One candidate's numbers on one class. ``error`` when it could not be built or measured."""

    name: str
    kind: str
    precision: str
    size_bytes: int
    quality: Quality | None
    performance: Performance | None
    compatibility: Compatibility | None
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    name: str
    eligible: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Selection:
    chosen: str | None
    summary: str
    verdicts: tuple[Verdict, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> bool:
        return self.chosen is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _misses(m: Measured, fp32: Measured, policy: ClassPolicy) -> list[str]:
    if m.error is not None:
        return [f"not built or measured: {m.error}"]
    reasons: list[str] = []
    if m.precision not in policy.precisions:
        reasons.append(f"precision {m.precision} not allowed by the class {list(policy.precisions)}")
    if m.compatibility is not None and not m.compatibility.ok:
        if m.compatibility.unsupported_ops:
            reasons.append(f"ops not supported by the class: {list(m.compatibility.unsupported_ops)}")
        if not m.compatibility.loads:
            reasons.append(f"does not load in the runtime: {m.compatibility.error}")
    if m.quality is not None and fp32.quality is not None and m.name != fp32.name:
        _, quality_misses = within_bound(
            m.quality,
            fp32.quality,
            min_metric_ratio=policy.min_metric_ratio,
            min_agreement=policy.min_agreement,
        )
        reasons.extend(f"quality: {q}" for q in quality_misses)
    elif m.quality is not None and m.quality.has_nan:
        reasons.append("quality: outputs contain NaN or infinity")
    if m.size_bytes > policy.max_model_bytes:
        reasons.append(f"size {m.size_bytes / MIB:.2f} MiB > budget {policy.max_model_bytes / MIB:.2f} MiB")
    perf = m.performance
    if perf is not None:
        if perf.peak_memory_bytes > policy.ram_bytes:
            reasons.append(
                f"peak memory {perf.peak_memory_bytes / MIB:.1f} MiB > {policy.ram_bytes / MIB:.1f} MiB"
            )
        if perf.latency_p95_ms > policy.latency_p95_ms:
            reasons.append(
                f"latency p95 {perf.latency_p95_ms:.3f} ms > envelope {policy.latency_p95_ms:.3f} ms"
            )
        fp32_perf = fp32.performance
        if m.name != fp32.name and fp32_perf is not None:
            needed = fp32_perf.latency_p50_ms / policy.min_speedup
            if perf.latency_p50_ms > needed:
                reasons.append(
                    f"not faster than FP32: p50 {perf.latency_p50_ms:.4f} ms "
                    f"vs FP32 {fp32_perf.latency_p50_ms:.4f} ms "
                    f"(needs <= {needed:.4f} ms, {policy.min_speedup:.2f}x)"
                )
    elif m.error is None:
        reasons.append("no latency measured")
    return reasons


def select_candidate(measured: list[Measured], policy: ClassPolicy, *, fp32_name: str = "fp32") -> Selection:
    fp32 = next((m for m in measured if m.name == fp32_name), None)
    if fp32 is None:
        return Selection(None, "no FP32 reference was measured")
    verdicts = []
    for m in measured:
        reasons = _misses(m, fp32, policy)
        verdicts.append(Verdict(m.name, not reasons, tuple(reasons)))
    by_name = {m.name: m for m in measured}
    eligible = [by_name[v.name] for v in verdicts if v.eligible]
    if not eligible:
        fp32_misses = next(v.reasons for v in verdicts if v.name == fp32_name)
        return Selection(
            None, "no candidate fits the class; FP32 missed: " + "; ".join(fp32_misses), tuple(verdicts)
        )
    fastest = min(m.performance.latency_p50_ms for m in eligible if m.performance)
    tied = [
        m
        for m in eligible
        if m.performance and m.performance.latency_p50_ms <= fastest * policy.latency_tie_ratio
    ]
    chosen = min(tied, key=lambda m: (m.size_bytes, m.performance.latency_p50_ms))  # type: ignore[union-attr]
    if chosen.name == fp32_name:
        others = [v for v in verdicts if v.name != fp32_name]
        slower = [v.name for v in others if any(r.startswith("not faster than FP32") for r in v.reasons)]
        summary = "kept FP32: optimization did not help on this class"
        if slower:
            summary += f" ({', '.join(slower)} not faster than FP32 on the measured machine)"
    else:
        ratio = fp32.performance.latency_p50_ms / chosen.performance.latency_p50_ms  # type: ignore[union-attr]
        size_ratio = chosen.size_bytes / max(fp32.size_bytes, 1)
        summary = f"chose {chosen.name}: {ratio:.2f}x FP32 speed, {size_ratio:.2f}x FP32 size"
    return Selection(chosen.name, summary, tuple(verdicts))
