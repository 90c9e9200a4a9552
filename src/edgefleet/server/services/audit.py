"""The audit log: one row per successful mutation, written in the mutation's own transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.server.store import AuditRow
from edgefleet.server.store.pages import Page, paginate

__all__ = ["audit_to_wire", "list_audit", "record", "record_alone"]


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    now: datetime,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an audit row to the caller's open transaction (commits or rolls back with the change)."""
    session.add(AuditRow(at=now, actor=actor, action=action, target=target[:255], details=details or {}))


def list_audit(
    session: Session,
    *,
    limit: int,
    offset: int,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page[AuditRow]:
    """Newest first. ``action`` ending in ``.*`` matches a family (``device.*``); ``since`` is inclusive,
    ``until`` exclusive; a window that ends before it starts is refused (``invalid_time_range``)."""
    if since is not None and until is not None and until <= since:
        raise InvalidDocumentError(
            "the audit window ends before it starts",
            code="invalid_time_range",
            expected="since < until",
            got={"since": since.isoformat(), "until": until.isoformat()},
        )
    stmt = select(AuditRow).order_by(AuditRow.id.desc())
    if actor is not None:
        stmt = stmt.where(AuditRow.actor == actor)
    if action is not None and action.endswith(".*"):
        family = action[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(AuditRow.action.like(family + "%", escape="\\"))
    elif action is not None:
        stmt = stmt.where(AuditRow.action == action)
    if target is not None:
        stmt = stmt.where(AuditRow.target == target)
    if since is not None:
        stmt = stmt.where(AuditRow.at >= since)
    if until is not None:
        stmt = stmt.where(AuditRow.at < until)
    with session.begin():
        return paginate(session, stmt, limit=limit, offset=offset)


def audit_to_wire(row: AuditRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at.isoformat(),
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "details": row.details,
    }


def record_alone(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    now: datetime,
    details: dict[str, Any] | None = None,
) -> None:
    """An audit row in its own transaction, for changes outside the database (blob uploads)."""
    with session.begin():
        record(session, actor=actor, action=action, target=target, now=now, details=details)
