"""The rollout engine: gathers each active rollout's inputs, asks the policy, applies its decision.

Run by every server replica on a short interval. Each rollout is handled in its own transaction under a row
lock (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite has one writer) and every transition bumps the
rollout's ``version``, so replicas racing on one database never advance a stage twice or lose a transition.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.protocol.hardware_class import HardwareClass
from edgefleet.server.services.alerts.outbox import emit
from edgefleet.server.services.audit import record
from edgefleet.server.services.devices import StatusThresholds
from edgefleet.server.services.director_epoch import bump_director_epoch
from edgefleet.server.services.rollouts.gates import ClassHealth
from edgefleet.server.services.rollouts.health import stage_health
from edgefleet.server.services.rollouts.history import record_evaluation, sample_rollbacks
from edgefleet.server.services.rollouts.overlay import selector_matches, shadow_slot
from edgefleet.server.services.rollouts.pacing import evaluation_due
from edgefleet.server.services.rollouts.policy import (
    ACTIVE_STATUSES,
    Decision,
    DeviceProgress,
    decide,
    install_counts,
    transition,
)
from edgefleet.server.services.rollouts.progress import Windows, device_progress, live_members, member_facts
from edgefleet.server.services.rollouts.reach import Position, transition_scope
from edgefleet.server.services.rollouts.service import add_event, release_locks
from edgefleet.server.services.rollouts.spec import RolloutSpec
from edgefleet.server.store.devices import DeviceRow, PinRow
from edgefleet.server.store.registry import ArtifactRow, HardwareClassRow
from edgefleet.server.store.rollouts import RolloutDeviceRow, RolloutRow

__all__ = ["ENGINE_ACTOR", "TickResult", "tick", "tick_rollout"]

log = logging.getLogger("edgefleet.server.rollouts")
ENGINE_ACTOR = "rollout-engine"


@dataclass(frozen=True)
class TickResult:
    rollout_id: str
    action: str
    reason: dict[str, Any]


def tick(
    session: Session, *, now: datetime, thresholds: StatusThresholds, min_interval_s: float = 0.0
) -> list[TickResult]:
    """Evaluate every active rollout (each in its own transaction); with ``min_interval_s``, a rollout an
    engine evaluated less than that long ago is skipped (``pacing.evaluation_due``)."""
    with session.begin():
        ids = list(
            session.execute(select(RolloutRow.id).where(RolloutRow.status.in_(ACTIVE_STATUSES))).scalars()
        )
    results = [
        r
        for rid in ids
        if (r := tick_rollout(session, rid, now=now, thresholds=thresholds, min_interval_s=min_interval_s))
        is not None
    ]
    sample_rollbacks(session, now=now)
    return results


def tick_rollout(
    session: Session,
    rollout_id: str,
    *,
    now: datetime,
    thresholds: StatusThresholds,
    min_interval_s: float = 0.0,
) -> TickResult | None:
    """Evaluate one rollout under its row lock and apply the decision; ``None`` when it is no longer active
    or an engine (another replica's, as a rule) evaluated it less than ``min_interval_s`` before ``now``."""
    with session.begin():
        row = session.execute(
            select(RolloutRow).where(RolloutRow.id == rollout_id).with_for_update()
        ).scalar_one()
        if row.status not in ACTIVE_STATUSES:
            return None
        if not evaluation_due(row.last_evaluated_at, now, min_interval_s):
            return None
        row.last_evaluated_at = now
        spec = RolloutSpec.model_validate(row.spec)
        if spec.enrolling_devices == "new":
            _join_enrolled_since(session, row, now)
            session.flush()
        members = member_facts(  # one joined select of narrow columns: a rollout may cover 100,000 devices
            session, row.id, shadow_slot(row.slot) if spec.stages[row.stage].shadow else row.slot
        )
        class_rows = {
            name: session.get(HardwareClassRow, name) for name in {m.hardware_class for m in members}
        }
        windows = Windows(class_rows, now)
        targets = {name: target["to"] or "" for name, target in row.targets.items()}
        progress = [
            device_progress(
                m,
                target=targets[m.hardware_class],
                now=now,
                thresholds=thresholds,
                window_closed=not spec.ignore_windows and windows.closed(m),
            )
            for m in members
        ]
        disabled = _disabled_targets(session, row)
        classes: dict[str, ClassHealth] = {}
        if disabled:
            decision = Decision(
                "halt", {"gate": "artifact_disabled", "artifacts": disabled, "stage": row.stage}
            )
        else:
            classes = _class_health(session, row, progress)
            decision = decide(
                spec,
                status=row.status,
                stage=row.stage,
                stage_started_at=row.stage_started_at,
                promoted_stage=row.promoted_stage,
                progress=progress,
                classes=classes,
                now=now,
            )
        snapshot = _health_snapshot(classes, decision, _installs_by_class(progress, row.stage))
        record_evaluation(session, row, row.stage, decision, progress, now=now)
        _apply(session, row, spec, decision, progress, now, snapshot)
    return TickResult(row.id, decision.action, decision.reason)


def _join_enrolled_since(session: Session, row: RolloutRow, now: datetime) -> None:
    """With ``enrolling_devices = "new"``, a device enrolled into the rollout's selection after it started is
    served the new artifact at once; it joins the current stage as a member, so its installs and telemetry
    count in the gates (and it is counted done, pending or failed) like every other exposed device."""
    joined: list[RolloutDeviceRow] = []
    already = (
        select(RolloutDeviceRow.device_id)
        .where(RolloutDeviceRow.rollout_id == row.id, RolloutDeviceRow.device_id == DeviceRow.id)
        .exists()
    )
    for device in session.execute(
        select(DeviceRow).where(
            DeviceRow.hardware_class.in_(list(row.targets)),
            DeviceRow.revoked_at.is_(None),
            DeviceRow.enrolled_at >= row.created_at,
            ~already,  # in SQL (an anti-join): each tick reads only devices that still have to join
        )
    ).scalars():
        if not selector_matches(row.selector, device.labels):
            continue
        member = RolloutDeviceRow(
            rollout_id=row.id, device_id=device.id, hardware_class=device.hardware_class, stage=row.stage
        )
        session.add(member)
        joined.append(member)
    if joined:
        add_event(
            session, row, kind="joined", actor=ENGINE_ACTOR, now=now,
            devices=len(joined), stage=row.stage,
        )  # fmt: skip


def _model_versions(session: Session, artifact_ids: list[str | None]) -> list[str]:
    """What devices name these artifacts in telemetry: ``<model>/<version>`` (the device adds its class)."""
    ids = [a for a in artifact_ids if a]
    rows: Iterable[ArtifactRow] = (
        session.execute(select(ArtifactRow).where(ArtifactRow.id.in_(ids))).scalars() if ids else []
    )
    return sorted({f"{r.manifest['model']}/{r.manifest['version']}" for r in rows})


def _disabled_targets(session: Session, row: RolloutRow) -> list[str]:
    ids = [t["to"] for t in row.targets.values() if t["to"]]
    return sorted(
        a.id
        for a in session.execute(select(ArtifactRow).where(ArtifactRow.id.in_(ids))).scalars()
        if a.disabled
    )


def _class_health(
    session: Session, row: RolloutRow, progress: list[DeviceProgress]
) -> dict[str, ClassHealth]:
    """Per hardware class: the class's new version on its own exposed devices, its own previous version on
    the same devices as the baseline, and its own latency envelope. The exposed devices are named to the
    database as a subquery of the rollout's members (the progress rows' own rule: enrolled, not revoked,
    stage up to the current one), never as a list of 80,000 ids."""
    exposed_classes = {p.hardware_class for p in progress if p.stage <= row.stage}
    out: dict[str, ClassHealth] = {}
    for name, target in sorted(row.targets.items()):
        exposed = live_members(row.id, RolloutDeviceRow.device_id).where(
            RolloutDeviceRow.hardware_class == name, RolloutDeviceRow.stage <= row.stage
        )
        health = stage_health(
            session,
            devices=exposed if name in exposed_classes else None,
            target_versions=_model_versions(session, [target["to"]]),
            baseline_versions=_model_versions(session, [target["from"]]),
            since=row.created_at,
        )
        out[name] = ClassHealth(health, _envelope_p95_ms(session, name))
    return out


def _envelope_p95_ms(session: Session, hardware_class: str) -> float:
    """The class's latency envelope (``performance.latency_p95_ms``); no ceiling when the class is gone."""
    cls = session.get(HardwareClassRow, hardware_class)
    return HardwareClass.parse(cls.document).performance.latency_p95_ms if cls is not None else math.inf


def _health_wire(judged: ClassHealth) -> dict[str, Any]:
    envelope = judged.envelope_p95_ms
    return {**asdict(judged.health), "class_p95_ms": envelope if math.isfinite(envelope) else None}


def _installs_by_class(progress: list[DeviceProgress], stage: int) -> dict[str, dict[str, int]]:
    """Per class, the exposed members (stages up to ``stage``) done and failed, for the health snapshot."""
    counts = install_counts([p for p in progress if p.stage <= stage])
    return {name: {"done": c.done, "failed": c.failed} for name, c in counts.items()}


def _health_snapshot(
    classes: dict[str, ClassHealth], decision: Decision, installs: dict[str, dict[str, int]] | None = None
) -> dict[str, Any] | None:
    """What the engine saw: ``by_class`` holds every class (with its exposed devices done and failed);
    the top level repeats one class (the one a halt or a wait names, else the one closest to its latency
    envelope) for views that show one set of numbers."""
    if not classes:
        return None

    def closeness(name: str) -> float:
        judged = classes[name]
        p95 = judged.health.latency_p95_ms
        if p95 is None or not math.isfinite(judged.envelope_p95_ms):
            return 0.0
        return p95 / judged.envelope_p95_ms

    named = decision.reason.get("hardware_class")
    focus = named if named in classes else max(sorted(classes), key=closeness)
    return {
        **_health_wire(classes[focus]),
        "hardware_class": focus,
        "by_class": {
            name: {**_health_wire(judged), **(installs or {}).get(name, {"done": 0, "failed": 0})}
            for name, judged in sorted(classes.items())
        },
    }


def _summary(progress: list[DeviceProgress], stages: int) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {
        str(i): {"done": 0, "pending": 0, "failed": 0, "offline": 0} for i in range(stages)
    }
    for p in progress:
        bucket = out[str(p.stage)]
        bucket[p.status] += 1
        bucket["offline"] += 0 if p.online else 1
    return out


def _apply(
    session: Session,
    row: RolloutRow,
    spec: RolloutSpec,
    decision: Decision,
    progress: list[DeviceProgress],
    now: datetime,
    health: dict[str, Any] | None = None,
) -> None:
    snapshot = {
        "action": decision.action,
        "stage": row.stage,
        "gates": [r.to_wire() for r in decision.gates],
        "health": health,
        "reason": decision.reason,
        "pending": list(decision.pending[:50]),
        "pending_count": len(decision.pending),
        "progress": _summary(progress, len(spec.stages)),
    }
    if decision.action == "wait":
        if snapshot != row.last_decision:
            row.last_decision = snapshot
        return
    row.last_decision = {**snapshot, "at": now.isoformat()}
    row.version += 1
    row.updated_at = now
    before = Position(row.status, row.stage)  # type: ignore[arg-type]
    row.status, row.stage = transition(row.status, row.stage, decision.action)  # type: ignore[arg-type]
    if decision.action == "advance":
        row.stage_started_at = now
    elif decision.action == "halt":
        row.halt_reason = {**decision.reason, "at": now.isoformat()}
        release_locks(session, row)
    elif decision.action == "complete":
        _move_pins(session, row, now)
        release_locks(session, row)
    # only the devices this transition serves differently are re-judged (and dropped from poll caches)
    bump_director_epoch(
        session,
        devices=transition_scope(row, spec, before, Position(row.status, row.stage)),
    )
    add_event(session, row, kind=decision.action, actor=ENGINE_ACTOR, now=now, **decision.reason)
    record(
        session,
        actor=ENGINE_ACTOR,
        action=f"rollout.{decision.action}",
        target=row.id,
        now=now,
        details=decision.reason,
    )
    if decision.action in ("halt", "complete"):
        kind = "rollout.halted" if decision.action == "halt" else "rollout.completed"
        emit(
            session,
            kind,
            subject=row.id,
            now=now,
            dedup_key=f"{kind}:{row.id}",
            payload={
                "rollout_id": row.id,
                "model": row.model,
                "stage": row.stage,
                "targets": row.targets,
                "reason": decision.reason,
                "progress": snapshot["progress"],
            },
        )
    log.info("event=rollout_%s rollout=%s reason=%s", decision.action, row.id, decision.reason)


def _move_pins(session: Session, row: RolloutRow, now: datetime) -> None:
    """On completion the new artifact becomes the class pin (whole class) or each member's device pin."""
    for hardware_class, target in row.targets.items():
        if row.selector:
            members = session.execute(
                select(RolloutDeviceRow.device_id).where(
                    RolloutDeviceRow.rollout_id == row.id, RolloutDeviceRow.hardware_class == hardware_class
                )
            ).scalars()
            for device_id in members:
                _upsert_pin(session, "device", device_id, row.slot, target["to"] or "", now)
        else:
            _upsert_pin(session, "class", hardware_class, row.slot, target["to"] or "", now)


def _upsert_pin(
    session: Session, scope: str, target: str, slot: str, artifact_id: str, now: datetime
) -> None:
    pin = session.execute(
        select(PinRow).where(PinRow.scope == scope, PinRow.target == target, PinRow.slot == slot)
    ).scalar_one_or_none()
    if pin is None:
        session.add(
            PinRow(
                scope=scope,
                target=target,
                slot=slot,
                artifact_id=artifact_id,
                created_at=now,
                created_by=ENGINE_ACTOR,
            )
        )
    else:
        pin.artifact_id, pin.created_at, pin.created_by = artifact_id, now, ENGINE_ACTOR
