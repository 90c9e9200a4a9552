"""Rollout gates, judged in one place: every gate of a stage, per hardware class, as a row with its verdict.

``evaluate_gates`` is pure. The policy halts on its first ``breach`` and waits on its ``waiting`` evidence;
the engine stores the rows in its decision; the API returns them; the dashboard and the CLI only render
them. Nothing else judges a gate.

The rule, the same for every surface:

* A gate reads the new version's health on one class's exposed devices, against that class's own envelope
  and its own previous version (a slow class cannot hide in a merged p95).
* ``install_failure_rate`` is judged once an exposed device of the class has finished installing (done or
  failed); a pending or offline device is never counted.
* The telemetry gates are judged only once the class has ``min_requests`` observations (at least 1):
  requests answered by the new version for ``error_rate``, ``latency_p95_ms`` and ``latency_p95_ratio``,
  shadow comparisons for ``shadow_agreement``. Before that their verdict is ``waiting``: a waiting gate
  never halts a rollout.
* ``latency_p95_ratio`` needs the previous version's p95 on the same devices (the day before the rollout);
  without one the gate is ``off`` for the class, and says so.
* The evidence rows (``reporting_devices``, and ``requests`` or, in a shadow stage, ``shadow_compared``)
  are ``ok`` or ``waiting``; a stage passes only when no gate is breached and no evidence row waits.
  ``requests`` is ``off`` in a serving stage without an error-rate gate, and every evidence row is ``off``
  for a class none of whose devices the stage exposes yet while another class's are.

Verdicts: ``ok``, ``breach``, ``waiting`` (not enough evidence yet) and ``off`` (switched off or not
applicable).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from edgefleet.server.services.rollouts.spec import Gates

__all__ = [
    "EVIDENCE_GATES",
    "ClassHealth",
    "GateRow",
    "InstallCounts",
    "StageHealth",
    "Verdict",
    "evaluate_gates",
]

Verdict = Literal["ok", "breach", "waiting", "off"]
EVIDENCE_GATES = ("reporting_devices", "requests", "shadow_compared")
"""Rows that gate whether a stage may pass (they never halt one)."""


@dataclass(frozen=True)
class StageHealth:
    """Live health of the new version on the exposed devices, since the rollout exposed them."""

    requests: int = 0
    errors: int = 0
    """model errors; ``requests`` and ``errors`` leave input faults out, so the error-rate gate never judges
    a failing sensor"""
    input_faults: int = 0
    """requests refused for their input (NaN, wrong shape, out of the calibrated range): observed and shown,
    not gated on"""
    latency_p95_ms: float | None = None
    baseline_p95_ms: float | None = None
    """p95 of the previous version on the same devices, before the rollout."""
    shadow_agreement: float | None = None
    shadow_compared: int = 0
    reporting_devices: int = 0


@dataclass(frozen=True)
class ClassHealth:
    """One hardware class of a rollout: the new version's health on that class's exposed devices (with the
    class's own previous version as the relative-latency baseline) and the class's own latency envelope."""

    health: StageHealth = field(default_factory=StageHealth)
    envelope_p95_ms: float = math.inf
    """The class's ``performance.latency_p95_ms``: the absolute ceiling when a stage sets none."""


@dataclass(frozen=True)
class InstallCounts:
    """A class's devices exposed by the stage (its own and earlier stages) and how their installs ended."""

    exposed: int = 0
    done: int = 0
    failed: int = 0


@dataclass(frozen=True)
class GateRow:
    """One gate of one hardware class: what was observed, against what, the verdict and why."""

    name: str
    hardware_class: str
    observed: float | None
    threshold: float | None
    comparison: Literal["max", "min"]
    """``max``: the observed value must stay at or under the threshold; ``min``: it must reach it"""
    verdict: Verdict
    why: str
    unit: str = ""
    details: Mapping[str, float] = field(default_factory=dict)
    """the numbers behind ``observed`` (e.g. failed and finished devices), repeated in a halt reason"""

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hardware_class": self.hardware_class,
            "observed": self.observed,
            "threshold": self.threshold,
            "comparison": self.comparison,
            "verdict": self.verdict,
            "why": self.why,
            "unit": self.unit,
        }


def evaluate_gates(
    gates: Gates,
    *,
    shadow_stage: bool,
    classes: Mapping[str, ClassHealth],
    installs: Mapping[str, InstallCounts],
) -> list[GateRow]:
    """Every gate of the stage for every class (classes in name order, gates in a fixed order).

    ``classes`` holds each class's health and envelope (a class missing from it has no data and no
    envelope); ``installs`` each class's exposed devices. With no exposed device at all, every class must
    bring evidence (and has none)."""
    names = sorted(set(classes) | set(installs)) or [""]
    exposed_any = any(c.exposed for c in installs.values())
    rows: list[GateRow] = []
    for name in names:
        judged = classes.get(name, ClassHealth())
        counts = installs.get(name, InstallCounts())
        exposed = counts.exposed > 0 or not exposed_any
        rows += _class_rows(gates, name, judged, counts, shadow_stage=shadow_stage, exposed=exposed)
    return rows


def _class_rows(
    gates: Gates,
    name: str,
    judged: ClassHealth,
    counts: InstallCounts,
    *,
    shadow_stage: bool,
    exposed: bool,
) -> list[GateRow]:
    health = judged.health
    need = max(gates.min_requests, 1)
    rows = [_install(gates, name, counts)]
    served = health.requests >= need
    short = f"{health.requests} of {need} requests on the new version so far"
    rows.append(_error_rate(gates, name, health, served, short))
    rows += _latency(gates, name, judged, served, short)
    rows.append(_shadow(gates, name, health, need))
    rows += _evidence(gates, name, health, shadow_stage=shadow_stage, exposed=exposed)
    return rows


def _over(observed: float, threshold: float) -> Verdict:
    return "breach" if observed > threshold else "ok"


def _install(gates: Gates, name: str, counts: InstallCounts) -> GateRow:
    limit = gates.max_install_failure_rate
    finished = counts.done + counts.failed
    if not finished:
        why = "no exposed device has finished installing yet"
        return GateRow("install_failure_rate", name, None, limit, "max", "waiting", why)
    rate = counts.failed / finished
    details = {"failed_devices": counts.failed, "finished_devices": finished}
    why = f"{counts.failed} of {finished} finished installs failed"
    verdict = _over(rate, limit)
    return GateRow("install_failure_rate", name, round(rate, 4), limit, "max", verdict, why, "", details)


def _error_rate(gates: Gates, name: str, health: StageHealth, served: bool, short: str) -> GateRow:
    limit = gates.max_error_rate
    if limit is None:
        return GateRow("error_rate", name, None, None, "max", "off", "switched off for this stage")
    if not served:
        return GateRow("error_rate", name, None, limit, "max", "waiting", short)
    rate = health.errors / health.requests
    details = {"requests": health.requests, "errors": health.errors, "input_faults": health.input_faults}
    why = (
        f"{health.errors} model errors in {health.requests} requests "
        f"({health.input_faults} input faults seen, not counted: a failing sensor is not a failing model)"
    )
    return GateRow("error_rate", name, round(rate, 4), limit, "max", _over(rate, limit), why, "", details)


def _latency(gates: Gates, name: str, judged: ClassHealth, served: bool, short: str) -> list[GateRow]:
    health = judged.health
    p95 = health.latency_p95_ms
    rows: list[GateRow] = []
    if gates.max_latency_p95_ms is not None:
        ceiling: float | None = gates.max_latency_p95_ms
        source = "the stage's ceiling"
    else:
        ceiling = judged.envelope_p95_ms if math.isfinite(judged.envelope_p95_ms) else None
        source = "the class envelope"
    if ceiling is None:
        rows.append(
            GateRow("latency_p95_ms", name, None, None, "max", "off", "no ceiling and no envelope", "ms")
        )
    elif not served or p95 is None:
        rows.append(GateRow("latency_p95_ms", name, None, ceiling, "max", "waiting", short, "ms"))
    else:
        why = f"p95 of the new version against {source}"
        rows.append(
            GateRow("latency_p95_ms", name, round(p95, 3), ceiling, "max", _over(p95, ceiling), why, "ms")
        )
    limit = gates.max_latency_p95_ratio
    baseline = health.baseline_p95_ms
    if limit is None:
        rows.append(
            GateRow("latency_p95_ratio", name, None, None, "max", "off", "switched off for this stage", "x")
        )
    elif not served or p95 is None:
        rows.append(GateRow("latency_p95_ratio", name, None, limit, "max", "waiting", short, "x"))
    elif not baseline:
        why = "no baseline: the previous version reported no latency on these devices the day before"
        rows.append(GateRow("latency_p95_ratio", name, None, limit, "max", "off", why, "x"))
    else:
        ratio = p95 / baseline
        details = {"p95_ms": round(p95, 3), "baseline_p95_ms": round(baseline, 3)}
        why = f"p95 {p95:.3g} ms vs {baseline:.3g} ms of the previous version, same devices"
        verdict = _over(ratio, limit)
        rows.append(
            GateRow("latency_p95_ratio", name, round(ratio, 3), limit, "max", verdict, why, "x", details)
        )
    return rows


def _shadow(gates: Gates, name: str, health: StageHealth, need: int) -> GateRow:
    floor = gates.min_shadow_agreement
    agreement = health.shadow_agreement
    if floor is None:
        return GateRow("shadow_agreement", name, None, None, "min", "off", "switched off for this stage")
    if health.shadow_compared < need or agreement is None:
        why = f"{health.shadow_compared} of {need} shadow comparisons so far"
        return GateRow("shadow_agreement", name, None, floor, "min", "waiting", why)
    verdict: Verdict = "breach" if agreement < floor else "ok"
    why = f"mean agreement with the active model over {health.shadow_compared} comparisons"
    return GateRow("shadow_agreement", name, round(agreement, 4), floor, "min", verdict, why)


def _evidence(
    gates: Gates, name: str, health: StageHealth, *, shadow_stage: bool, exposed: bool
) -> list[GateRow]:
    needed = gates.min_reporting_devices
    observed_name = "shadow_compared" if shadow_stage else "requests"
    observed = health.shadow_compared if shadow_stage else health.requests
    if not exposed:
        why = "no device of this class is exposed yet"
        return [
            GateRow("reporting_devices", name, health.reporting_devices, needed, "min", "off", why),
            GateRow(observed_name, name, observed, gates.min_requests, "min", "off", why),
        ]
    reporting_ok = health.reporting_devices >= needed
    rows = [
        GateRow(
            "reporting_devices",
            name,
            health.reporting_devices,
            needed,
            "min",
            "ok" if reporting_ok else "waiting",
            f"{health.reporting_devices} exposed devices sent telemetry of the new version",
        )
    ]
    # A shadow stage's evidence is comparisons; a serving stage's is requests answered by the new version,
    # needed only when an error-rate gate is to be judged on them.
    if not shadow_stage and gates.max_error_rate is None:
        why = "not needed: the stage has no error-rate gate"
        rows.append(GateRow(observed_name, name, observed, gates.min_requests, "min", "off", why))
    else:
        verdict: Verdict = "ok" if observed >= gates.min_requests else "waiting"
        what = "shadow comparisons" if shadow_stage else "requests answered by the new version"
        why = f"{observed} {what}"
        rows.append(GateRow(observed_name, name, observed, gates.min_requests, "min", verdict, why))
    return rows
