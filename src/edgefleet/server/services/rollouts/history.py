"""A rollout's story: a bounded history of the engine's evaluations (gate rows as ``evaluate_gates`` judged
them, exposed devices) and, after a halt or abort, how many exposed devices are back on the previous
artifact, sampled over time; and the story read back as series for the dashboard.

Writing: ``record_evaluation`` is called by the engine for each evaluation it makes (a sample at most every
``SAMPLE_EVERY_S`` while it only waits, always when it acts); ``sample_rollbacks`` by the engine's tick for
rollouts halted or aborted within ``ROLLBACK_WATCH_S``. At most ``MAX_ROWS_PER_ROLLOUT`` rows are kept per
rollout (the oldest waits go first, then the oldest rollback samples). Nothing here judges a gate: the
rows are the engine's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import NotFoundError
from edgefleet.server.services.rollouts.policy import Decision, DeviceProgress
from edgefleet.server.services.rollouts.service import rollback_progress
from edgefleet.server.store.rollouts import RolloutEventRow, RolloutGateHistoryRow, RolloutRow

__all__ = [
    "MAX_ROWS_PER_ROLLOUT",
    "SAMPLE_EVERY_S",
    "record_evaluation",
    "rollout_story",
    "sample_rollbacks",
]

SAMPLE_EVERY_S = 60.0
ROLLBACK_WATCH_S = 24 * 3600.0
MAX_ROWS_PER_ROLLOUT = 2000


def _last_at(session: Session, rollout_id: str) -> datetime | None:
    at = session.execute(
        select(func.max(RolloutGateHistoryRow.at)).where(RolloutGateHistoryRow.rollout_id == rollout_id)
    ).scalar_one_or_none()
    return None if at is None else (at if at.tzinfo else at.replace(tzinfo=timezone.utc))


def _bound(session: Session, rollout_id: str) -> None:
    """Keep at most ``MAX_ROWS_PER_ROLLOUT`` rows: the oldest waits go first, then the oldest rollback
    samples; the evaluations that acted (advance, halt, complete) are kept."""
    table = RolloutGateHistoryRow
    count = session.execute(select(func.count()).where(table.rollout_id == rollout_id)).scalar_one()
    for action in ("wait", "rollback"):
        if count <= MAX_ROWS_PER_ROLLOUT:
            return
        oldest = (
            select(table.id)
            .where(table.rollout_id == rollout_id, table.action == action)
            .order_by(table.id)
            .limit(count - MAX_ROWS_PER_ROLLOUT)
        )
        ids = list(session.execute(oldest).scalars())
        if ids:
            session.execute(delete(table).where(table.id.in_(ids)))
            count -= len(ids)


def record_evaluation(
    session: Session,
    row: RolloutRow,
    stage: int,
    decision: Decision,
    progress: Sequence[DeviceProgress],
    *,
    now: datetime,
) -> None:
    """Inside the engine's transaction: one sample of what the evaluation judged (``stage`` is the stage
    it judged, before any transition)."""
    if decision.action == "wait":
        last = _last_at(session, row.id)
        if last is not None and (now - last).total_seconds() < SAMPLE_EVERY_S:
            return
    session.add(
        RolloutGateHistoryRow(
            rollout_id=row.id,
            at=now,
            stage=stage,
            action=decision.action,
            gates=[g.to_wire() for g in decision.gates],
            exposed=sum(1 for p in progress if p.stage <= stage),
        )
    )
    _bound(session, row.id)


def sample_rollbacks(session: Session, *, now: datetime) -> None:
    """One rollback sample per minute for each rollout halted or aborted within ``ROLLBACK_WATCH_S``: how many
    exposed devices are back on the previous artifact and how many still run the new one."""
    with session.begin():
        rows = list(
            session.execute(
                select(RolloutRow).where(
                    RolloutRow.status.in_(("halted", "aborted")),
                    RolloutRow.updated_at >= now - timedelta(seconds=ROLLBACK_WATCH_S),
                )
            ).scalars()
        )
        due = [
            r for r in rows if (last := _last_at(session, r.id)) is None or (now - last).total_seconds() >= 60
        ]
    for row in due:
        counts = rollback_progress(session, row)
        with session.begin():
            session.add(
                RolloutGateHistoryRow(
                    rollout_id=row.id,
                    at=now,
                    stage=row.stage,
                    action="rollback",
                    gates=[],
                    exposed=sum(c["rolled_back"] + c["still_on_new"] + c["other"] for c in counts),
                    rolled_back=sum(c["rolled_back"] for c in counts),
                    still_on_new=sum(c["still_on_new"] for c in counts),
                )
            )
            _bound(session, row.id)


def _iso(at: datetime) -> str:
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).isoformat()


def rollout_story(session: Session, rollout_id: str) -> dict[str, Any]:
    """The story as series over the samples' times: per (class, gate) the observed values and thresholds,
    exposed and rolled-back counts; stage boundaries and the halt from the rollout's events."""
    with session.begin():
        row = session.get(RolloutRow, rollout_id)
        if row is None:
            raise NotFoundError("no such rollout", code="rollout_not_found", got=rollout_id[:40])
        samples = list(
            session.execute(
                select(RolloutGateHistoryRow)
                .where(RolloutGateHistoryRow.rollout_id == rollout_id)
                .order_by(RolloutGateHistoryRow.at, RolloutGateHistoryRow.id)
            ).scalars()
        )
        events = list(
            session.execute(
                select(RolloutEventRow.at, RolloutEventRow.kind, RolloutEventRow.details)
                .where(RolloutEventRow.rollout_id == rollout_id)
                .order_by(RolloutEventRow.at, RolloutEventRow.id)
            )
        )
    times = [_iso(s.at) for s in samples]
    gates: dict[tuple[str, str], dict[str, Any]] = {}
    for i, sample in enumerate(samples):
        for gate in sample.gates:
            key = (gate["hardware_class"], gate["name"])
            entry = gates.setdefault(
                key,
                {
                    "hardware_class": key[0],
                    "name": key[1],
                    "unit": gate.get("unit", ""),
                    "comparison": gate.get("comparison", ""),
                    "observed": [None] * len(samples),
                    "threshold": [None] * len(samples),
                    "verdict": [None] * len(samples),
                },
            )
            entry["observed"][i] = gate.get("observed")
            entry["threshold"][i] = gate.get("threshold")
            entry["verdict"][i] = gate.get("verdict")
    return {
        "rollout_id": rollout_id,
        "status": row.status,
        "times": times,
        "stages": [s.stage for s in samples],
        "actions": [s.action for s in samples],
        "gates": [gates[k] for k in sorted(gates)],
        "exposed": [s.exposed for s in samples],
        "rolled_back": [s.rolled_back for s in samples],
        "still_on_new": [s.still_on_new for s in samples],
        "events": [
            {"at": _iso(at), "kind": kind, "gate": (details or {}).get("gate")}
            for at, kind, details in events
        ],
        "halted_at": next((_iso(at) for at, kind, _ in events if kind == "halt"), None),
    }
