"""Reading the pins: which artifact is pinned for which class or device, in which slot, by whom.

Pins are set and cleared by ``devices.pin_artifact`` (checked, audited, director epoch bumped); this module
only lists them, for ``GET /v1/pins`` and the dashboard's pins page.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.server.store.devices import PinRow
from edgefleet.server.store.pages import Page, paginate

__all__ = ["list_pins", "pin_to_wire"]


def list_pins(
    session: Session,
    *,
    limit: int,
    offset: int,
    scope: str | None = None,
    target: str | None = None,
) -> Page[PinRow]:
    """Pins ordered by scope, target and slot; optionally only one scope or one target."""
    stmt = select(PinRow).order_by(PinRow.scope, PinRow.target, PinRow.slot)
    if scope is not None:
        stmt = stmt.where(PinRow.scope == scope)
    if target is not None:
        stmt = stmt.where(PinRow.target == target)
    with session.begin():
        return paginate(session, stmt, limit=limit, offset=offset)


def pin_to_wire(row: PinRow) -> dict[str, Any]:
    return {
        "scope": row.scope,
        "target": row.target,
        "slot": row.slot,
        "artifact_id": row.artifact_id,
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
    }
