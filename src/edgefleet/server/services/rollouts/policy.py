"""The rollout policy: pure functions of the rollout, its devices, their health and an explicit ``now``.

Nothing here touches a database or a clock; ``engine.py`` gathers the inputs and applies the decisions.

* Membership is deterministic and stable: devices are ordered by ``sha256(rollout_id/device_id)``, online and
  healthy devices first, interleaved across the values of a spread label (sites), and stage *i* takes the
  next slice up to its cumulative size. It is computed once, when the rollout starts.
* Gates are judged per hardware class, in one place (``gates.evaluate_gates``): each class's exposed devices
  against that class's own latency envelope and that class's own previous version. A slow class cannot hide
  in a merged p95, and a fast class is never held to another class's envelope. A breach of any gate in any
  class halts the rollout at once, in any stage, and the reason names the class; the engine then rolls every
  exposed device back (their desired state returns to the previous artifact at their next poll). Every
  decision carries the gate rows it was made on.
* A stage passes when its soak time has elapsed, its exposed devices have all installed (or its deadline
  passed and ``on_deadline`` says proceed), no evidence row waits, and no gate is breached. Offline
  devices are ``pending``: never counted as success or failure.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from edgefleet.server.services.rollouts.gates import (
    EVIDENCE_GATES,
    ClassHealth,
    GateRow,
    InstallCounts,
    evaluate_gates,
)
from edgefleet.server.services.rollouts.spec import RolloutSpec, StageSpec

__all__ = [
    "ACTIVE_STATUSES",
    "Candidate",
    "Decision",
    "DeviceProgress",
    "RolloutStatus",
    "assign_stages",
    "cumulative_sizes",
    "decide",
    "install_counts",
    "serves_target",
    "shadows_target",
    "transition",
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
    waiting_window: bool = False
    """Pending because its update window is closed (``pending: window``): waiting, not stalled. A stage
    deadline never halts on such devices."""


@dataclass(frozen=True)
class Decision:
    action: Literal["wait", "advance", "complete", "halt"]
    reason: dict[str, Any] = field(default_factory=dict)
    pending: tuple[str, ...] = ()
    gates: tuple[GateRow, ...] = ()
    """every gate of the current stage, per class, as ``evaluate_gates`` judged it for this decision"""


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
    rows = tuple(
        evaluate_gates(
            current.gates, shadow_stage=current.shadow, classes=classes, installs=install_counts(exposed)
        )
    )
    breach = next((r for r in rows if r.verdict == "breach"), None)
    if breach is not None:
        return Decision("halt", {**_halt_reason(breach), "stage": stage}, gates=rows)
    if status == "paused":
        return Decision("wait", {"note": "paused"}, gates=rows)
    pending = tuple(sorted(p.device_id for p in exposed if p.status == "pending"))
    in_window_wait = sum(1 for p in exposed if p.status == "pending" and p.waiting_window)
    stalled = len(pending) - in_window_wait
    in_stage_s = (now - stage_started_at).total_seconds()
    past_deadline = in_stage_s >= current.deadline_s
    if past_deadline and current.on_deadline == "halt" and stalled:
        return Decision(
            "halt",
            {
                "gate": "stage_deadline",
                "stage": stage,
                "pending_devices": stalled,
                "window_devices": in_window_wait,
                "deadline_s": current.deadline_s,
            },
            pending,
            rows,
        )
    waiting_for_devices = bool(pending) and not (past_deadline and current.on_deadline == "proceed")
    if waiting_for_devices:
        note = "devices pending" if stalled else "devices waiting for their update window"
        reason: dict[str, Any] = {"note": note, "past_deadline": past_deadline}
        if in_window_wait:
            reason["window_devices"] = in_window_wait
        return Decision("wait", reason, pending, rows)
    if in_stage_s < current.soak_s:
        return Decision(
            "wait", {"note": "soaking", "soak_left_s": round(current.soak_s - in_stage_s, 1)}, pending, rows
        )
    gap = _evidence_gap(rows, current)
    if gap is not None:  # a deadline excuses pending devices, never missing evidence
        return Decision("wait", gap, pending, rows)
    if current.manual_promotion and promoted_stage < stage:
        return Decision("wait", {"note": "awaiting manual promotion"}, pending, rows)
    if stage == len(spec.stages) - 1:
        return Decision("complete", {"stage": stage}, pending, rows)
    return Decision("advance", {"from_stage": stage, "to_stage": stage + 1}, pending, rows)


def transition(status: RolloutStatus, stage: int, action: str) -> tuple[RolloutStatus, int]:
    """The rollout's status and stage after a decision's ``action`` (the engine and the twin apply it)."""
    if action == "advance":
        return status, stage + 1
    if action == "halt":
        return "halted", stage
    if action == "complete":
        return "completed", stage
    return status, stage


def install_counts(exposed: Sequence[DeviceProgress]) -> dict[str, InstallCounts]:
    """Per class, the exposed members and how many are done and failed: the install gate's inputs."""
    tally: dict[str, list[int]] = {}
    for p in exposed:
        counts = tally.setdefault(p.hardware_class, [0, 0, 0])
        counts[0] += 1
        counts[1] += p.status == "done"
        counts[2] += p.status == "failed"
    return {name: InstallCounts(*counts) for name, counts in sorted(tally.items())}


def _halt_reason(row: GateRow) -> dict[str, Any]:
    return {
        "gate": row.name,
        "observed": row.observed,
        "threshold": row.threshold,
        **row.details,
        "why": row.why,
        "hardware_class": row.hardware_class,
    }


def _evidence_gap(rows: Sequence[GateRow], current: StageSpec) -> dict[str, Any] | None:
    """The first class (in name order) whose evidence still waits, with its numbers, or ``None``.

    Every class with exposed devices must bring its own evidence: a class whose devices sent nothing cannot
    pass on another class's telemetry."""
    waiting = next((r for r in rows if r.name in EVIDENCE_GATES and r.verdict == "waiting"), None)
    if waiting is None:
        return None
    evidence = {
        r.name: r for r in rows if r.hardware_class == waiting.hardware_class and r.name in EVIDENCE_GATES
    }
    observed_name = "shadow_compared" if current.shadow else "requests"
    return {
        "note": "not enough evidence",
        "hardware_class": waiting.hardware_class,
        "reporting_devices": int(evidence["reporting_devices"].observed or 0),
        "min_reporting_devices": current.gates.min_reporting_devices,
        observed_name: int(evidence[observed_name].observed or 0),
        "min_requests": current.gates.min_requests,
    }


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
