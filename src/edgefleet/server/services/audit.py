"""The audit log: one row per successful mutation, written in the mutation's own transaction."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.server.store import AuditRow
from edgefleet.server.store.pages import Page, paginate

__all__ = ["AUDIT_FAMILIES", "audit_to_wire", "check_action_filter", "list_audit", "record", "record_alone"]

AUDIT_FAMILIES = (
    "artifact", "blob", "class", "config", "device", "enrollment_token", "model", "pin", "probe", "rollout",
    "security", "token", "tuf", "version", "webhook",
)  # fmt: skip
"""Every audited action is ``FAMILY.NAME`` with one of these families (tests/server/test_audit_families.py
reads the source's ``action=`` arguments to keep it so)."""
_ACTION_NAME = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")
ACTION_FILTER_SYNTAX = (
    f"an action FAMILY.NAME (device.decommission) or a family FAMILY.* (device.*), FAMILY one of "
    f"{', '.join(AUDIT_FAMILIES)}; no --action/action for every action"
)


def _family(action: str) -> str:
    return action.partition(".")[0]


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


def check_action_filter(action: str) -> tuple[str, bool]:
    """``(action, False)`` for one action, ``(family prefix "device.", True)`` for ``device.*``; a filter
    that can never match a recorded action (``*``, ``device``, ``dev.*``) is refused
    (``invalid_audit_action``) naming the families, instead of answering an empty page."""
    family = action[:-2] if action.endswith(".*") else action
    if _family(family) in AUDIT_FAMILIES and _ACTION_NAME.fullmatch(family):
        if action.endswith(".*"):
            return family + ".", True
        if "." in action:
            return action, False
    raise InvalidDocumentError(
        f"audit action filter {action[:80]!r} can never match a recorded action",
        code="invalid_audit_action",
        expected=ACTION_FILTER_SYNTAX,
        got=action[:80],
    )


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
    """Newest first. ``action`` is one action or, ending in ``.*``, a family (``device.*``), checked by
    ``check_action_filter``; ``since`` is inclusive, ``until`` exclusive; a window that ends before it
    starts is refused (``invalid_time_range``)."""
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
    if action is not None:
        wanted, prefix = check_action_filter(action)
        if prefix:
            escaped = wanted.replace("_", "\\_")  # the only LIKE character a checked family can hold
            stmt = stmt.where(AuditRow.action.like(escaped + "%", escape="\\"))
        else:
            stmt = stmt.where(AuditRow.action == wanted)
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
