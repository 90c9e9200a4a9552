"""Rollout use cases: create, the operators' actions, and the views. Every change is audited."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import ConflictError, InvalidDocumentError, NotFoundError
from edgefleet.server.services.audit import record
from edgefleet.server.services.devices import DeviceStatus, StatusThresholds, device_status
from edgefleet.server.services.director_epoch import bump_director_epoch
from edgefleet.server.services.rollouts.overlay import canonical_selector, selector_matches
from edgefleet.server.services.rollouts.policy import ACTIVE_STATUSES, Candidate, assign_stages
from edgefleet.server.services.rollouts.reach import Position, transition_scope
from edgefleet.server.services.rollouts.spec import RolloutSpec
from edgefleet.server.services.transfer_savings import rollout_transfer
from edgefleet.server.store.devices import DeviceRow, PinRow
from edgefleet.server.store.pages import Page, paginate
from edgefleet.server.store.registry import ArtifactRow, HardwareClassRow, ModelRow, ModelVersionRow
from edgefleet.server.store.rollouts import RolloutDeviceRow, RolloutEventRow, RolloutLockRow, RolloutRow

__all__ = [
    "add_event",
    "count_rollback",
    "create_rollout",
    "get_rollout",
    "list_rollouts",
    "operator_action",
    "preview_targets",
    "release_locks",
    "resolve_targets",
    "rollback_progress",
    "rollout_to_wire",
]

ANALYZE_AFTER_MEMBERS = 1_000
"""A rollout with at least this many members refreshes the members table's planner statistics (PostgreSQL)."""


def add_event(
    session: Session, rollout: RolloutRow, *, kind: str, actor: str, now: datetime, **details: Any
) -> None:
    session.add(RolloutEventRow(rollout_id=rollout.id, at=now, kind=kind, actor=actor, details=details))


def release_locks(session: Session, rollout: RolloutRow) -> None:
    session.execute(delete(RolloutLockRow).where(RolloutLockRow.rollout_id == rollout.id))


def _artifact_model(session: Session, artifact: ArtifactRow) -> str:
    version = session.get(ModelVersionRow, artifact.model_version_id)
    model = session.get(ModelRow, version.model_id) if version else None
    return model.name if model else ""


def _refuse_busy_slots(session: Session, *, model: str, classes: list[str], slot: str) -> None:
    """Refuse a rollout into a slot of a class that another model's active rollout is already moving.

    The class rows are locked first (``FOR UPDATE`` on PostgreSQL; SQLite has one writer), so two replicas
    creating such rollouts at once are serialized and the second one sees the first."""
    session.execute(
        select(HardwareClassRow.name)
        .where(HardwareClassRow.name.in_(classes))
        .order_by(HardwareClassRow.name)
        .with_for_update()
    ).all()
    busy = session.execute(
        select(RolloutRow.id, RolloutLockRow.hardware_class)
        .join(RolloutLockRow, RolloutLockRow.rollout_id == RolloutRow.id)
        .where(
            RolloutLockRow.hardware_class.in_(classes),
            RolloutLockRow.model != model,  # the same model is refused by its lock: rollout_conflict
            RolloutRow.slot == slot,
            RolloutRow.status.in_(ACTIVE_STATUSES),
        )
        .order_by(RolloutRow.id, RolloutLockRow.hardware_class)
    ).all()
    if busy:
        raise ConflictError(
            "another active rollout is moving this slot of one of these classes",
            code="rollout_slot_conflict",
            expected="no active rollout per (hardware class, slot)",
            got=[{"rollout": r.id, "hardware_class": r.hardware_class, "slot": slot} for r in busy],
        )


def resolve_targets(
    session: Session, *, model: str, targets: dict[str, str], slot: str
) -> dict[str, dict[str, str | None]]:
    """Per hardware class, the artifact a rollout moves from (the class pin) and to, refusing what
    ``create_rollout`` refuses (unknown, disabled, another class's or another model's artifact). Called
    inside the caller's transaction; the dry run calls it too, so it refuses the same requests."""
    if not targets:
        raise InvalidDocumentError(
            "a rollout needs at least one target", code="invalid_rollout", expected="{class: artifact}"
        )
    resolved: dict[str, dict[str, str | None]] = {}
    for hardware_class, artifact_id in sorted(targets.items()):
        artifact = session.get(ArtifactRow, artifact_id[:20])
        if artifact is None:
            raise NotFoundError("no such artifact", code="artifact_not_found", got=artifact_id)
        if artifact.hardware_class != hardware_class:
            raise InvalidDocumentError(
                "artifact is built for another hardware class",
                code="wrong_hardware_class",
                expected=hardware_class,
                got=artifact.hardware_class,
            )
        if _artifact_model(session, artifact) != model:
            raise InvalidDocumentError(
                "artifact belongs to another model", code="wrong_model", expected=model, got=artifact.id
            )
        if artifact.disabled:
            raise InvalidDocumentError("artifact is disabled", code="artifact_disabled", got=artifact.id)
        pin = session.execute(
            select(PinRow).where(
                PinRow.scope == "class", PinRow.target == hardware_class, PinRow.slot == slot
            )
        ).scalar_one_or_none()
        resolved[hardware_class] = {"from": pin.artifact_id if pin else None, "to": artifact.id}
    return resolved


def create_rollout(
    session: Session,
    *,
    model: str,
    targets: dict[str, str],
    selector: dict[str, str] | str,
    slot: str,
    spec: RolloutSpec,
    actor: str,
    now: datetime,
    thresholds: StatusThresholds,
) -> RolloutRow:
    """Start a rollout of ``model``: per hardware class, from its class pin to ``targets[class]``."""
    rollout_id = "ro_" + secrets.token_hex(8)
    selector = canonical_selector(selector)
    with session.begin():
        resolved = resolve_targets(session, model=model, targets=targets, slot=slot)
        _refuse_busy_slots(session, model=model, classes=sorted(resolved), slot=slot)
        row = RolloutRow(
            id=rollout_id,
            model=model,
            slot=slot,
            targets=resolved,
            selector=selector,
            spec=spec.model_dump(mode="json"),
            status="running",
            stage=0,
            stage_started_at=now,
            promoted_stage=-1,
            halt_reason=None,
            last_decision=None,
            version=1,
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        try:
            with session.begin_nested():
                for hardware_class in resolved:
                    session.add(
                        RolloutLockRow(model=model, hardware_class=hardware_class, rollout_id=rollout_id)
                    )
        except IntegrityError as exc:
            raise ConflictError(
                "a rollout of this model is already active for one of these classes",
                code="rollout_conflict",
                expected="no active rollout per (model, hardware class)",
                got=sorted(resolved),
            ) from exc
        selected = select(DeviceRow).where(
            DeviceRow.hardware_class.in_(list(resolved)), DeviceRow.revoked_at.is_(None)
        )
        devices = [d for d in session.execute(selected).scalars() if selector_matches(selector, d.labels)]
        if selector and not devices:
            raise InvalidDocumentError(
                "the rollout's selector matches no device of its classes",
                code="selector_matches_nothing",
                expected="at least one enrolled, not revoked device",
                got=selector,
                details={"hardware_classes": sorted(resolved)},
            )
        candidates = [
            Candidate(
                d.id,
                online=device_status(
                    last_seen_at=d.last_seen_at, revoked=False, now=now, thresholds=thresholds
                )
                is DeviceStatus.online,
                healthy=(d.report_status or "ok") == "ok",  # the report's status, without its JSON
                spread_value=d.labels.get(spec.spread_label),
            )
            for d in devices
        ]
        classes = {d.id: d.hardware_class for d in devices}
        members = [
            {"rollout_id": rollout_id, "device_id": d, "hardware_class": classes[d], "stage": stage}
            for d, stage in assign_stages(rollout_id, candidates, spec).items()
        ]
        if members:  # one batched insert, not one ORM object per device (a rollout may cover 100,000)
            session.flush()
            session.execute(insert(RolloutDeviceRow), members)
            if len(members) >= ANALYZE_AFTER_MEMBERS and session.get_bind().dialect.name == "postgresql":
                # the engine's member and stage-health plans need the new rows' statistics at its next tick,
                # not at autovacuum's next round (a fresh 100,000-member table planned blind was ~10x slower)
                session.execute(text("ANALYZE rollout_devices"))
        add_event(
            session, row, kind="created", actor=actor, now=now, devices=len(candidates), targets=resolved
        )
        bump_director_epoch(session, devices=transition_scope(row, spec, None, Position("running", 0)))
        record(
            session,
            actor=actor,
            action="rollout.create",
            target=rollout_id,
            now=now,
            details={"model": model, "targets": resolved, "devices": len(candidates)},
        )
        if spec.ignore_windows:
            record(
                session,
                actor=actor,
                action="rollout.windows_overridden",
                target=rollout_id,
                now=now,
                details={"model": model, "slot": slot, "devices": len(candidates)},
            )
    return row


def operator_action(
    session: Session, rollout_id: str, action: str, *, actor: str, now: datetime, reason: str = ""
) -> RolloutRow:
    """pause, resume, promote (grant manual promotion of the current stage) or abort (with rollback)."""
    with session.begin():
        row = session.execute(
            select(RolloutRow).where(RolloutRow.id == rollout_id[:32]).with_for_update()
        ).scalar_one_or_none()
        if row is None:
            raise NotFoundError("no such rollout", code="rollout_not_found", got=rollout_id[:80])
        allowed = {
            "pause": row.status == "running",
            "resume": row.status == "paused",
            "promote": row.status in ACTIVE_STATUSES,
            "abort": row.status in ACTIVE_STATUSES,
        }
        if action not in allowed:
            raise InvalidDocumentError(
                "unknown action", code="invalid_action", expected=sorted(allowed), got=action
            )
        if not allowed[action]:
            raise ConflictError(
                f"cannot {action} a rollout that is {row.status}", code="invalid_transition", got=row.status
            )
        if action == "pause":
            row.status = "paused"
        elif action == "resume":
            row.status = "running"
        elif action == "promote":
            row.promoted_stage = row.stage
        else:
            before = Position(row.status, row.stage)  # type: ignore[arg-type]
            row.status = "aborted"
            row.halt_reason = {"gate": "operator_abort", "reason": reason, "by": actor}
            release_locks(session, row)
            # exposed devices go back to the previous artifact
            scope = transition_scope(
                row, RolloutSpec.model_validate(row.spec), before, Position("aborted", row.stage)
            )
            bump_director_epoch(session, devices=scope)
        row.version += 1
        row.updated_at = now
        add_event(session, row, kind=action, actor=actor, now=now, reason=reason)
        record(
            session,
            actor=actor,
            action=f"rollout.{action}",
            target=row.id,
            now=now,
            details={"reason": reason},
        )
    return row


def get_rollout(session: Session, rollout_id: str) -> RolloutRow:
    with session.begin():
        row = session.get(RolloutRow, rollout_id[:32])
    if row is None:
        raise NotFoundError("no such rollout", code="rollout_not_found", got=rollout_id[:80])
    return row


def list_rollouts(
    session: Session, *, limit: int, offset: int, status: str | None, model: str | None
) -> Page[RolloutRow]:
    stmt = select(RolloutRow).order_by(RolloutRow.created_at.desc(), RolloutRow.id)
    if status is not None:
        stmt = stmt.where(RolloutRow.status == status)
    if model is not None:
        stmt = stmt.where(RolloutRow.model == model)
    with session.begin():
        return paginate(session, stmt, limit=limit, offset=offset)


def rollout_to_wire(session: Session, row: RolloutRow, *, detail: bool = False) -> dict[str, Any]:
    spec = RolloutSpec.model_validate(row.spec)
    out: dict[str, Any] = {
        "id": row.id,
        "model": row.model,
        "slot": row.slot,
        "targets": row.targets,
        "selector": row.selector,
        "status": row.status,
        "stage": row.stage,
        "stages": len(spec.stages),
        "stage_started_at": row.stage_started_at.isoformat(),
        "halt_reason": row.halt_reason,
        "last_decision": row.last_decision,
        "created_by": row.created_by,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }
    if not detail:
        return out
    with session.begin():
        counts = dict(
            session.execute(
                select(RolloutDeviceRow.stage, func.count())
                .where(RolloutDeviceRow.rollout_id == row.id)
                .group_by(RolloutDeviceRow.stage)
            ).all()
        )
        events = session.execute(
            select(RolloutEventRow).where(RolloutEventRow.rollout_id == row.id).order_by(RolloutEventRow.id)
        ).scalars()
        out["events"] = [
            {"at": e.at.isoformat(), "kind": e.kind, "actor": e.actor, "details": e.details} for e in events
        ]
        targets = {str(t.get("to")) for t in (row.targets or {}).values() if t.get("to")}
        out["transfer"] = rollout_transfer(session, row.id, targets, since=row.created_at)
    progress = (row.last_decision or {}).get("progress", {})
    out["spec"] = spec.model_dump(mode="json")
    out["stage_detail"] = [
        {
            "index": i,
            "members": int(counts.get(i, 0)),
            "soak_s": stage.soak_s,
            "gates": stage.gates.model_dump(mode="json"),
            "state": "done"
            if i < row.stage or row.status == "completed"
            else ("current" if i == row.stage else "waiting"),
            **(progress.get(str(i), {})),
        }
        for i, stage in enumerate(spec.stages)
    ]
    return out


def count_rollback(
    reports: Iterable[dict[str, Any] | None], *, slot: str, target: str, previous: str | None
) -> dict[str, int]:
    """Pure: of a halted or aborted rollout's exposed devices (their reports), how many are back on the
    previous artifact, still on the new one, or something else (not reported yet, another artifact, nothing
    active)."""
    out = {"rolled_back": 0, "still_on_new": 0, "other": 0}
    for report in reports:
        active = (((report or {}).get("slots") or {}).get(slot) or {}).get("active")
        if active == target:
            out["still_on_new"] += 1
        elif active is not None and active == previous:
            out["rolled_back"] += 1
        else:
            out["other"] += 1
    return out


def rollback_progress(session: Session, row: RolloutRow) -> list[dict[str, Any]]:
    """Per class of a halted or aborted rollout, how far its exposed devices have gone back (empty while
    the rollout is running, paused or completed)."""
    if row.status not in ("halted", "aborted"):
        return []
    with session.begin():
        exposed = select(RolloutDeviceRow.device_id).where(
            RolloutDeviceRow.rollout_id == row.id, RolloutDeviceRow.stage <= row.stage
        )
        reports: dict[str, list[dict[str, Any] | None]] = {}
        for device in session.execute(
            select(DeviceRow.hardware_class, DeviceRow.report).where(DeviceRow.id.in_(exposed))
        ):
            reports.setdefault(device.hardware_class, []).append(device.report)
    if not reports:
        return []
    return [
        {
            "hardware_class": hardware_class,
            "from": target["from"],
            "to": target["to"],
            **count_rollback(
                reports.get(hardware_class, []),
                slot=row.slot,
                target=target["to"] or "",
                previous=target["from"],
            ),
        }
        for hardware_class, target in sorted(row.targets.items())
    ]


def preview_targets(
    session: Session, *, model: str, targets: dict[str, str], slot: str
) -> dict[str, dict[str, str | None]]:
    """What ``create_rollout`` would resolve (per class, from its class pin to the target), refusing what
    it refuses (``resolve_targets``); reads only, for the dashboard's confirmation page."""
    with session.begin():
        return resolve_targets(session, model=model, targets=targets, slot=slot)
