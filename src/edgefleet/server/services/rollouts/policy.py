"""The rollout policy: pure functions of the rollout, its devices, their health and an explicit ``now``.

Nothing here touches a database or a clock; ``engine.py`` gathers the inputs and applies the decisions.

* Membership is deterministic and stable: devices are ordered by ``sha256(rollout_id/device_id)``, online and
  healthy devices first, interleaved across the values of a spread label (sites), and stage *i* takes the
  next slice up to its cumulative size. It is computed once, when the rollout starts.
* Gates are judged per hardware class: each class's exposed devices against that class's own latency envelope
  and that class's own previous version. A slow class cannot hide in a merged p95, and a fast class is never
  held to another class's envelope. A breach of any gate in any class halts the rollout at once, in any
  stage, and the reason names the class; the engine then rolls every exposed device back (their desired
  state returns to the previous artifact at their next poll).
* A stage passes when its soak time has elapsed, its exposed devices have all installed (or its deadline
  passed and ``on_deadline`` says proceed), enough devices reported, and no gate is breached. Offline
  devices are ``pending``: never counted as success or failure.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from edgefleet.server.services.rollouts.spec import Gates, RolloutSpec, StageSpec

__all__ = [
    "ACTIVE_STATUSES",
    "Candidate",
    "ClassHealth",
    "Decision",
    "DeviceProgress",
    "RolloutStatus",
    "StageHealth",
    "assign_stages",
    "check_gates",
    "cumulative_sizes",
    "decide",
    "serves_target",
    "shadows_target",
]

RolloutStatus = Literal["running", "paused", "halted", "completed", "aborted"]
ACTIVE_STATUSES: tuple[RolloutStatus, ...] = ("running", "paused")


@dataclass(frozen=True)
class Candidate:
    device_id: str
    online: bool
    healthy: bool
    spread_value: str | None = None


@dataclass(frozen=True)
class DeviceProgress:
    device_id: str
    stage: int
    status: Literal["pending", "done", "failed"]
    online: bool
    hardware_class: str = ""


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
class Decision:
    action: Literal["wait", "advance", "complete", "halt"]
    reason: dict[str, Any] = field(default_factory=dict)
    pending: tuple[str, ...] = ()


def _order_key(rollout_id: str, device_id: str) -> str:
    return hashlib.sha256(f"{rollout_id}/{device_id}".encode()).hexdigest()


def _spread(rollout_id: str, devices: Sequence[Candidate]) -> list[Candidate]:
    """Interleave devices across spread values, each group in hash order, groups in hash order."""
    groups: dict[str | None, list[Candidate]] = {}
    for d in sorted(devices, key=lambda d: _order_key(rollout_id, d.device_id)):
        groups.setdefault(d.spread_value, []).append(d)
    ordered_groups = sorted(groups.values(), key=lambda g: _order_key(rollout_id, g[0].device_id))
    out: list[Candidate] = []
    for i in range(max((len(g) for g in ordered_groups), default=0)):
        out.extend(g[i] for g in ordered_groups if i < len(g))
    return out


def cumulative_sizes(spec: RolloutSpec, fleet: int) -> list[int]:
    """How many devices are exposed once each stage has started (monotonic, last stage = whole fleet)."""
    sizes: list[int] = []
    previous = 0
    for i, stage in enumerate(spec.stages):
        want = stage.count if stage.count is not None else math.ceil((stage.percent or 0) / 100 * fleet)
        size = min(fleet, max(previous, want))
        if i == len(spec.stages) - 1:
            size = fleet
        sizes.append(size)
        previous = size
    return sizes


def assign_stages(rollout_id: str, devices: Sequence[Candidate], spec: RolloutSpec) -> dict[str, int]:
    """Device id -> the stage that first exposes it."""
    preferred = [d for d in devices if d.online and d.healthy]
    others = [d for d in devices if not (d.online and d.healthy)]
    order = _spread(rollout_id, preferred) + _spread(rollout_id, others)
    out: dict[str, int] = {}
    start = 0
    for stage, end in enumerate(cumulative_sizes(spec, len(order))):
        for d in order[start:end]:
            out[d.device_id] = stage
        start = end
    return out


def check_gates(
    gates: Gates, health: StageHealth, progress: Sequence[DeviceProgress], *, class_p95_ms: float
) -> dict[str, Any] | None:
    """The first breached gate with its numbers, or ``None``."""
    finished = [p for p in progress if p.status != "pending"]
    failed = sum(1 for p in finished if p.status == "failed")
    if finished and failed / len(finished) > gates.max_install_failure_rate:
        return {
            "gate": "install_failure_rate",
            "observed": round(failed / len(finished), 4),
            "threshold": gates.max_install_failure_rate,
            "failed_devices": failed,
            "finished_devices": len(finished),
        }
    if gates.max_error_rate is not None and health.requests >= max(gates.min_requests, 1):
        rate = health.errors / health.requests
        if rate > gates.max_error_rate:
            return {
                "gate": "error_rate",
                "observed": round(rate, 4),
                "threshold": gates.max_error_rate,
                "requests": health.requests,
                "errors": health.errors,
            }
    if health.latency_p95_ms is not None and health.requests >= max(gates.min_requests, 1):
        ceiling = gates.max_latency_p95_ms if gates.max_latency_p95_ms is not None else class_p95_ms
        if health.latency_p95_ms > ceiling:
            return {
                "gate": "latency_p95_ms",
                "observed": round(health.latency_p95_ms, 3),
                "threshold": ceiling,
            }
        if gates.max_latency_p95_ratio is not None and health.baseline_p95_ms:
            ratio = health.latency_p95_ms / health.baseline_p95_ms
            if ratio > gates.max_latency_p95_ratio:
                return {
                    "gate": "latency_p95_ratio",
                    "observed": round(ratio, 3),
                    "threshold": gates.max_latency_p95_ratio,
                    "p95_ms": round(health.latency_p95_ms, 3),
                    "baseline_p95_ms": round(health.baseline_p95_ms, 3),
                }
    agreement = health.shadow_agreement
    if (
        gates.min_shadow_agreement is not None
        and agreement is not None
        and agreement < gates.min_shadow_agreement
    ):
        return {
            "gate": "shadow_agreement",
            "observed": round(agreement, 4),
            "threshold": gates.min_shadow_agreement,
        }
    return None


def decide(
    spec: RolloutSpec,
    *,
    status: RolloutStatus,
    stage: int,
    stage_started_at: datetime,
    promoted_stage: int,
    progress: Sequence[DeviceProgress],
    classes: Mapping[str, ClassHealth],
    now: datetime,
) -> Decision:
    """What to do with a rollout now. ``progress`` covers every member; only exposed ones count.

    ``classes`` holds each hardware class's health and envelope. Gates and evidence are judged class by
    class (a class missing from ``classes`` has no data and no envelope); the first class in name order
    that breaches a gate halts the rollout, and the reason names it."""
    if status not in ACTIVE_STATUSES:
        return Decision("wait", {"note": f"rollout is {status}"})
    current = spec.stages[stage]
    exposed = [p for p in progress if p.stage <= stage]
    for name in sorted(set(classes) | {p.hardware_class for p in exposed}):
        judged = classes.get(name, ClassHealth())
        breach = check_gates(
            current.gates,
            judged.health,
            [p for p in exposed if p.hardware_class == name],
            class_p95_ms=judged.envelope_p95_ms,
        )
        if breach is not None:
            return Decision("halt", {**breach, "hardware_class": name, "stage": stage})
    if status == "paused":
        return Decision("wait", {"note": "paused"})
    pending = tuple(sorted(p.device_id for p in exposed if p.status == "pending"))
    in_stage_s = (now - stage_started_at).total_seconds()
    past_deadline = in_stage_s >= current.deadline_s
    if past_deadline and current.on_deadline == "halt" and pending:
        return Decision(
            "halt",
            {
                "gate": "stage_deadline",
                "stage": stage,
                "pending_devices": len(pending),
                "deadline_s": current.deadline_s,
            },
            pending,
        )
    waiting_for_devices = bool(pending) and not (past_deadline and current.on_deadline == "proceed")
    if waiting_for_devices:
        return Decision("wait", {"note": "devices pending", "past_deadline": past_deadline}, pending)
    if in_stage_s < current.soak_s:
        return Decision(
            "wait", {"note": "soaking", "soak_left_s": round(current.soak_s - in_stage_s, 1)}, pending
        )
    gap = _evidence_gap(current, exposed, classes)
    if gap is not None:  # a deadline excuses pending devices, never missing evidence
        return Decision("wait", gap, pending)
    if current.manual_promotion and promoted_stage < stage:
        return Decision("wait", {"note": "awaiting manual promotion"}, pending)
    if stage == len(spec.stages) - 1:
        return Decision("complete", {"stage": stage}, pending)
    return Decision("advance", {"from_stage": stage, "to_stage": stage + 1}, pending)


def _evidence_gap(
    current: StageSpec, exposed: Sequence[DeviceProgress], classes: Mapping[str, ClassHealth]
) -> dict[str, Any] | None:
    """The first class (in name order) without enough evidence, or ``None``.

    Every class with exposed devices must bring its own evidence: a class whose devices sent nothing cannot
    pass on another class's telemetry. With no exposed device at all, every class counts (and has none)."""
    # A shadow stage's evidence is comparisons; a serving stage's is requests answered by the new version.
    needs_observations = current.shadow or current.gates.max_error_rate is not None
    names = sorted({p.hardware_class for p in exposed}) or sorted(classes) or [""]
    for name in names:
        health = classes.get(name, ClassHealth()).health
        observed = health.shadow_compared if current.shadow else health.requests
        if health.reporting_devices >= current.gates.min_reporting_devices and (
            not needs_observations or observed >= current.gates.min_requests
        ):
            continue
        return {
            "note": "not enough evidence",
            "hardware_class": name,
            "reporting_devices": health.reporting_devices,
            "min_reporting_devices": current.gates.min_reporting_devices,
            "shadow_compared" if current.shadow else "requests": observed,
            "min_requests": current.gates.min_requests,
        }
    return None


def shadows_target(
    *, status: RolloutStatus, member_stage: int | None, current_stage: int, shadow_stage: bool
) -> bool:
    """Whether a device should run the new artifact *in shadow* now: an exposed member while the rollout's
    current stage is a shadow stage (it keeps serving the previous version)."""
    return (
        status in ACTIVE_STATUSES
        and shadow_stage
        and member_stage is not None
        and member_stage <= current_stage
    )


def serves_target(
    *,
    status: RolloutStatus,
    member_stage: int | None,
    current_stage: int,
    enrolling_devices: str,
    shadow_stage: bool = False,
) -> bool:
    """Whether a device of the rollout's selection should serve the new artifact now."""
    if shadow_stage and status in ACTIVE_STATUSES:
        return False
    if status in ("halted", "aborted"):
        return False
    if status == "completed":
        return True
    if member_stage is None:  # enrolled after the rollout started
        return enrolling_devices == "new"
    return member_stage <= current_stage
