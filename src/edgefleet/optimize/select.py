"""Choosing one candidate per class. Pure: a table of figures in, a decision with its reasons out.

``select_candidate(measured, figures, policy)`` is the one selection of the project: the build calls it with
the build host's and the emulated class's figures; ``edgefleet build select --from-probe`` calls it again
with the devices' figures added. Every figure says where it was measured (``figures.Figures.where``).

Hard rules (a candidate that breaks one is not eligible, and its verdict says why):
1. built, precision allowed by the class, ops supported, loads in the runtime;
2. quality within the bound against FP32 (metric ratio and agreement; on the build host, and on the devices
   where they report quality), on validation inputs that can tell good from bad;
3. budgets: model size, peak resident memory, load time (where declared), latency p95 envelope; it did not
   fail (crash, hang, memory limit) anywhere it was measured.
Latency counts only from the most authoritative place where FP32 has figures taken on the class's own first
execution provider: devices, then the class emulated on the build host, then the build host. Figures taken on
a stand-in provider (TensorRT absent on the build host, so the CPU ran it) never judge latency: the class's
latency is then "unmeasured here" and the selection names the probe that would settle it.
4. the sustained-latency budget, where the class declares one (``sustained_judgement``): the last-window p95
   of a run under sustained load, from devices, else the class emulated on the build host (the build host's
   own figures never judge a class budget). A candidate without such a run is not refused but left unjudged,
   said in ``Selection.sustained_unmeasured`` and the summary with the command that settles it.
Among the eligible, the class's objective decides (``objective.choose``): speed-ups must beat the noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgefleet.optimize.figures import WHERE_RANK, Figures, Where
from edgefleet.optimize.measure import OVERLOADED, Compatibility
from edgefleet.optimize.noise import Interval, speedup
from edgefleet.optimize.objective import Objective, Row, choose
from edgefleet.optimize.quality import Quality, within_bound

__all__ = [
    "MIB",
    "SUSTAINED_UNMEASURED",
    "ClassPolicy",
    "Measured",
    "Selection",
    "Verdict",
    "latency_place",
    "select_candidate",
    "sustained_judgement",
    "sustained_run",
]

MIB = 1024 * 1024
SUSTAINED_UNMEASURED = "sustained latency unmeasured"


@dataclass(frozen=True)
class ClassPolicy:
    precisions: tuple[str, ...]
    max_model_bytes: int
    ram_bytes: int
    latency_p95_ms: float
    min_metric_ratio: float = 0.99
    min_agreement: float = 0.99
    min_speedup: float = 1.0
    objective: Objective = "latency"
    load_time_ms: float | None = None
    sustained_latency_p95_ms: float | None = None
    preferred_provider: str = "CPUExecutionProvider"
    class_name: str = ""


@dataclass(frozen=True)
class Measured:
    """What one candidate is, independent of where it runs. ``description``: exactly what was done to it."""

    name: str
    kind: str
    precision: str
    size_bytes: int
    quality: Quality | None
    compatibility: Compatibility | None
    error: str | None = None
    description: tuple[str, ...] = field(default_factory=tuple)
    robustness: tuple[str, ...] = field(default_factory=tuple)
    """perturbations under which it degrades beyond the tolerance (``robustness.robustness_misses``)"""


@dataclass(frozen=True)
class Verdict:
    name: str
    eligible: bool
    reasons: tuple[str, ...]
    note: str = ""  # eligible but not chosen: why not
    speedup: Interval | None = None  # vs FP32 at the deciding place


@dataclass(frozen=True)
class Selection:
    chosen: str | None
    summary: str
    verdicts: tuple[Verdict, ...] = field(default_factory=tuple)
    place: Where | None = None  # where the latency that decided came from; None: unmeasured
    latency_unmeasured: str | None = None  # why, and the probe that would settle it
    objective: str = "latency"
    envelope_unjudged: str | None = None  # the build host was too busy to hold absolute latency to a budget
    sustained_unmeasured: str | None = (
        None  # the class has a sustained budget some candidates were not run under
    )

    @property
    def failed(self) -> bool:
        return self.chosen is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _counts(f: Figures, policy: ClassPolicy) -> bool:
    """Latency figures judge the class only when taken on its own first provider (devices always do)."""
    return f.latency is not None and (f.where == "device" or f.provider in (None, policy.preferred_provider))


def latency_place(figures: list[Figures], policy: ClassPolicy, fp32_name: str = "fp32") -> Where | None:
    places: list[Where] = [f.where for f in figures if f.candidate == fp32_name and _counts(f, policy)]
    if not places:
        return None
    best: Where = max(places, key=WHERE_RANK.__getitem__)
    return best


def sustained_run(figures: list[Figures], name: str, preferred_provider: str) -> Figures | None:
    """The figures whose sustained run speaks for candidate ``name`` on the class: devices over the class
    emulated on the build host on the class's own provider; the build host's never do."""
    runs = [
        f
        for f in figures
        if f.candidate == name
        and f.where != "host"
        and (f.where == "device" or f.provider in (None, preferred_provider))
        and f.sustained is not None
        and f.sustained.last_p95_ms is not None
    ]
    return max(runs, key=lambda f: WHERE_RANK[f.where]) if runs else None


def sustained_judgement(figures: list[Figures], name: str, policy: ClassPolicy) -> tuple[str | None, bool]:
    """The class's sustained-latency budget on candidate ``name``: (why it breaks it, or None; unmeasured),
    judged on the last-window p95 of ``sustained_run``."""
    budget_ms = policy.sustained_latency_p95_ms
    if budget_ms is None:
        return None, False
    best = sustained_run(figures, name, policy.preferred_provider)
    if best is None:
        return None, True
    run = best.sustained
    last_ms = run.last_p95_ms if run is not None else None
    if run is None or last_ms is None or last_ms <= budget_ms:
        return None, False
    return (
        f"sustained latency: last-window p95 {last_ms:.3f} ms ({best.where}, {run.duration_s:g} s run) "
        f"> budget {budget_ms:.3f} ms",
        False,
    )


def _sustained_unmeasured(names: list[str], policy: ClassPolicy) -> str | None:
    if not names:
        return None
    who = policy.class_name or "<class>"
    return (
        f"{SUSTAINED_UNMEASURED} for {', '.join(names)}: the class's sustained-latency budget "
        f"({policy.sustained_latency_p95_ms:g} ms, last-window p95) is not judged for them; a run settles "
        f"it: "
        f"edgefleet build ... --sustained-s 300, or edgefleet probe create BUILD_DIR --class {who} "
        f"--sustained-s 300, then edgefleet build select BUILD_DIR --from-probe PROBE_ID"
    )


def _authoritative(figures: list[Figures], name: str, attr: str) -> Figures | None:
    have = [f for f in figures if f.candidate == name and getattr(f, attr) is not None]
    return max(have, key=lambda f: WHERE_RANK[f.where]) if have else None


def _misses(
    m: Measured, fp32: Measured, figures: list[Figures], policy: ClassPolicy, place: Where | None
) -> list[str]:
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
    bound = {"min_metric_ratio": policy.min_metric_ratio, "min_agreement": policy.min_agreement}
    if m.name != fp32.name and m.quality is not None and fp32.quality is not None:
        reasons.extend(f"quality: {q}" for q in within_bound(m.quality, fp32.quality, **bound)[1])
    elif m.quality is not None and m.quality.has_nan:
        reasons.append("quality: outputs contain NaN or infinity")
    reasons.extend(f"robustness: {r}" for r in m.robustness)
    mine = [f for f in figures if f.candidate == m.name]
    for f in mine:
        if f.error is not None:
            reasons.append(f"failed ({f.where}, {f.source}): {f.error}")
        ref = next(
            (r for r in figures if r.candidate == fp32.name and r.where == f.where and r.quality), None
        )
        if f.quality is not None and ref is not None and ref.quality is not None and m.name != fp32.name:
            reasons.extend(
                f"quality ({f.where}): {q}" for q in within_bound(f.quality, ref.quality, **bound)[1]
            )
    if m.size_bytes > policy.max_model_bytes:
        reasons.append(f"size {m.size_bytes / MIB:.2f} MiB > budget {policy.max_model_bytes / MIB:.2f} MiB")
    rss = _authoritative(figures, m.name, "peak_rss_bytes")
    if rss is not None and rss.peak_rss_bytes is not None and rss.peak_rss_bytes > policy.ram_bytes:
        reasons.append(
            f"peak memory {rss.peak_rss_bytes / MIB:.1f} MiB ({rss.where}) "
            f"> budget {policy.ram_bytes / MIB:.1f} MiB"
        )
    load = _authoritative(figures, m.name, "load_time_ms")
    budget_ms = policy.load_time_ms
    load_ms = load.load_time_ms if load is not None else None
    if budget_ms is not None and load is not None and load_ms is not None and load_ms > budget_ms:
        reasons.append(f"load time {load.load_time_ms:.1f} ms ({load.where}) > budget {budget_ms:.1f} ms")
    sustained_miss, _ = sustained_judgement(figures, m.name, policy)
    if sustained_miss is not None:
        reasons.append(sustained_miss)
    if place is not None:
        timed = next((f for f in mine if f.where == place and _counts(f, policy)), None)
        if timed is None or timed.latency is None:
            reasons.append(f"no latency measured ({place}) while FP32 has one there")
        elif _overloaded(timed):
            pass  # said once for the class (``_envelope_unjudged``); relative comparisons stay paired
        else:
            # devices: the whole p95; the build host: its quietest round's (its neighbours are not the class)
            lat = timed.latency
            p95 = lat.p95_ms if place == "device" else lat.envelope_p95_ms
            which = "p95" if place == "device" or lat.quiet_p95_ms is None else "p95 (quietest round)"
            if p95 > policy.latency_p95_ms:
                reasons.append(
                    f"latency {which} {p95:.3f} ms ({place}) > envelope {policy.latency_p95_ms:.3f} ms"
                )
    return reasons


def _overloaded(f: Figures) -> bool:
    return f.where != "device" and f.others_load_per_cpu is not None and f.others_load_per_cpu > OVERLOADED


def _envelope_unjudged(figures: list[Figures], place: Where | None, policy: ClassPolicy) -> str | None:
    busy = [f.others_load_per_cpu for f in figures if f.where == place and _overloaded(f)]
    if place is None or not busy:
        return None
    who = policy.class_name or "<class>"
    return (
        f"latency envelope not judged here: the build host was busy while timing ({max(busy):.1f} other "  # type: ignore[type-var]
        f"runnable threads per CPU), so its absolute latency says more about its neighbours than about the "
        f"class; speed-ups were still compared pairwise; a probe settles the envelope: "
        f"edgefleet probe create BUILD_DIR --class {who}"
    )


def _unmeasured_reason(figures: list[Figures], policy: ClassPolicy) -> str:
    used = sorted({f.provider for f in figures if f.latency is not None and f.provider})
    stand_in = f" (figures here were taken on {', '.join(used)}, a stand-in)" if used else ""
    who = policy.class_name or "<class>"
    return (
        f"latency unmeasured here: {policy.preferred_provider} is not available where the build ran"
        f"{stand_in}; "
        f"a probe on devices of the class settles it: edgefleet probe create BUILD_DIR --class {who}, "
        f"then edgefleet build select BUILD_DIR --from-probe PROBE_ID"
    )


def select_candidate(
    measured: list[Measured], figures: list[Figures], policy: ClassPolicy, *, fp32_name: str = "fp32"
) -> Selection:
    fp32 = next((m for m in measured if m.name == fp32_name), None)
    if fp32 is None:
        return Selection(None, "no FP32 reference was measured", objective=policy.objective)
    place = latency_place(figures, policy, fp32_name)
    unmeasured = None if place is not None else _unmeasured_reason(figures, policy)
    unjudged = _envelope_unjudged(figures, place, policy)
    misses = {m.name: _misses(m, fp32, figures, policy, place) for m in measured}
    eligible = [m for m in measured if not misses[m.name]]
    sustained = _sustained_unmeasured(
        [m.name for m in eligible if sustained_judgement(figures, m.name, policy)[1]], policy
    )

    def latency_of(name: str) -> Figures | None:
        return next(
            (f for f in figures if f.candidate == name and f.where == place and _counts(f, policy)), None
        )

    rows = {
        m.name: Row(m.name, m.size_bytes, (lf.latency if (lf := latency_of(m.name)) else None))
        for m in measured
    }
    ref_row = rows[fp32_name]
    intervals = {
        name: speedup(ref_row.latency, row.latency) if ref_row.latency and row.latency else None
        for name, row in rows.items()
    }
    if not eligible:
        verdicts = tuple(
            Verdict(m.name, False, tuple(misses[m.name]), speedup=intervals[m.name]) for m in measured
        )
        summary = "no candidate fits the class; FP32 missed: " + "; ".join(misses[fp32_name])
        return Selection(None, summary, verdicts, place, unmeasured, policy.objective, unjudged, sustained)
    ranked = choose(
        policy.objective,
        [rows[m.name] for m in eligible],
        ref_row if not misses[fp32_name] else None,
        min_speedup=policy.min_speedup,
    )
    verdicts = tuple(
        Verdict(
            m.name, not misses[m.name], tuple(misses[m.name]), ranked.notes.get(m.name, ""), intervals[m.name]
        )
        for m in measured
    )
    chosen = next(m for m in measured if m.name == ranked.chosen)
    size_ratio = chosen.size_bytes / max(fp32.size_bytes, 1)
    interval = intervals[chosen.name]
    speed = f"{interval.text()} FP32 speed ({place})" if interval is not None else "speed unmeasured"
    summary = f"chose {chosen.name}: {speed}, {size_ratio:.2f}x FP32 size; {ranked.why}"
    for note in (unmeasured, unjudged, sustained):
        if note:
            summary += "; " + note
    return Selection(chosen.name, summary, verdicts, place, unmeasured, policy.objective, unjudged, sustained)
