"""The class's objective among candidates that already pass every hard budget. Pure.

- ``latency`` (default): stay with FP32 unless a candidate is faster *beyond the noise* (the whole 95 %
  interval of its speed-up above ``min_speedup``, itself >= 1); among those, the fastest, and among
  candidates the fastest does not beat beyond noise, the smallest.
- ``size``: the smallest candidate (they all keep quality and meet the latency budget, or the latency is
  unmeasured here, which the selection says); sizes within 1 % count as equal, then the proven-faster one.
- ``balanced``: the lowest size ratio / proven speed-up, where the proven speed-up is the interval's
  conservative end (its low end when faster beyond noise, its high end when slower beyond noise, 1 when
  within noise).

With no latency figures that count for the class (an accelerator missing where it was measured), no
speed-up can be claimed: ``latency`` keeps FP32, ``size`` and ``balanced`` decide on size alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgefleet.optimize.noise import Interval, Latency, speedup

__all__ = ["OBJECTIVES", "Objective", "Ranked", "Row", "choose"]

Objective = Literal["latency", "size", "balanced"]
OBJECTIVES: tuple[str, ...] = ("latency", "size", "balanced")
SIZE_TIE = 0.01


@dataclass(frozen=True)
class Row:
    name: str
    size_bytes: int
    latency: Latency | None  # from the deciding place; None when latency is unmeasured there


@dataclass(frozen=True)
class Ranked:
    chosen: str
    why: str
    notes: dict[str, str]  # per candidate not chosen: why not


def _same_size(a: Row, b: Row) -> bool:
    return abs(a.size_bytes - b.size_bytes) <= SIZE_TIE * max(a.size_bytes, b.size_bytes, 1)


def _proven(interval: Interval | None) -> float:
    if interval is None:
        return 1.0
    if interval.above(1.0):
        return interval.low
    if interval.below(1.0):
        return interval.high
    return 1.0


def choose(
    objective: Objective, rows: list[Row], reference: Row | None, *, min_speedup: float = 1.0
) -> Ranked:
    """``rows``: the eligible candidates (non-empty). ``reference``: FP32's row when FP32 is eligible."""
    if not rows:
        raise ValueError("no eligible candidates")
    ref_latency = reference.latency if reference is not None else None
    vs_ref: dict[str, Interval | None] = {
        r.name: speedup(ref_latency, r.latency) if ref_latency and r.latency else None for r in rows
    }
    notes: dict[str, str] = {}
    if objective == "size":
        tied = [r for r in rows if _same_size(r, min(rows, key=lambda x: x.size_bytes))]
        smallest = min(r.size_bytes for r in tied)
        chosen = max(tied, key=lambda r: (_proven(vs_ref[r.name]), r is reference))
        for r in rows:
            if r is not chosen:
                notes[r.name] = f"larger ({r.size_bytes} bytes) than {chosen.name} ({smallest} bytes)"
        return Ranked(chosen.name, "objective size: the smallest candidate within every budget", notes)
    if objective == "balanced":
        base = reference.size_bytes if reference is not None else max(r.size_bytes for r in rows)

        def score(r: Row) -> float:
            return (r.size_bytes / max(base, 1)) / _proven(vs_ref[r.name])

        chosen = min(rows, key=lambda r: (round(score(r), 3), r is not reference))
        for r in rows:
            if r is not chosen:
                notes[r.name] = f"balanced score {score(r):.3f} vs {score(chosen):.3f} for {chosen.name}"
        return Ranked(
            chosen.name,
            f"objective balanced: lowest size ratio / proven speed-up ({score(chosen):.3f})",
            notes,
        )
    # latency
    timed = [r for r in rows if r.latency is not None]
    if not timed:
        chosen = reference or min(rows, key=lambda r: r.size_bytes)
        for r in rows:
            if r is not chosen:
                notes[r.name] = "no speed-up can be claimed without latency figures for the class"
        return Ranked(chosen.name, "objective latency, but latency is unmeasured: no speed-up claimed", notes)
    threshold = max(1.0, min_speedup)
    if reference is not None and reference.latency is not None:
        pool = [reference] + [
            r
            for r in timed
            if r is not reference and (i := vs_ref[r.name]) is not None and i.above(threshold)
        ]
        for r in timed:
            i = vs_ref[r.name]
            if r not in pool and i is not None:
                notes[r.name] = f"not faster than FP32 beyond noise: {i.text()} (needs > {threshold:.2f}x)"
    else:
        pool = timed
    fastest = min(pool, key=lambda r: r.latency.p50_ms)  # type: ignore[union-attr]
    tied = [
        r
        for r in pool
        if r is fastest or not speedup(r.latency, fastest.latency).above(1.0)  # type: ignore[arg-type]
    ]
    smallest_row = min(tied, key=lambda r: r.size_bytes)
    near = [r for r in tied if _same_size(r, smallest_row)]
    chosen = reference if reference in near else min(near, key=lambda r: r.latency.p50_ms)  # type: ignore[union-attr]
    for r in pool:
        if r is chosen:
            continue
        if r in tied:
            notes[r.name] = f"as fast as {chosen.name} within noise, and not smaller"
        else:
            notes[r.name] = f"slower than {fastest.name} beyond noise"
    if chosen is reference:
        why = "objective latency: no candidate is faster than FP32 beyond the measurement noise"
    elif vs_ref[chosen.name] is None:
        why = "objective latency: the fastest eligible candidate (FP32 itself breaks a budget)"
    else:
        why = f"objective latency: faster than FP32 beyond noise ({vs_ref[chosen.name].text()})"  # type: ignore[union-attr]
    return Ranked(chosen.name, why, notes)
