"""/v1/audit: who changed what, newest first."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from edgefleet.server.api.dependencies import DbSession, PageQuery, Viewer
from edgefleet.server.api.json_body import StrictJsonRoute
from edgefleet.server.services import audit as svc

__all__ = ["router"]

router = APIRouter(prefix="/v1/audit", tags=["audit"], route_class=StrictJsonRoute)
Filter = Annotated[str | None, Query(max_length=255)]


@router.get("")
def list_audit(
    session: DbSession,
    _: Viewer,
    page: PageQuery,
    actor: Filter = None,
    action: Filter = None,
    target: Filter = None,
    since: Annotated[AwareDatetime | None, Query(description="inclusive, ISO 8601 with a zone")] = None,
    until: Annotated[AwareDatetime | None, Query(description="exclusive, ISO 8601 with a zone")] = None,
) -> dict[str, Any]:
    """Newest first; ``action=device.*`` matches every ``device.`` action."""
    result = svc.list_audit(
        session,
        limit=page.limit,
        offset=page.offset,
        actor=actor,
        action=action,
        target=target,
        since=since,
        until=until,
    )
    return result.to_wire([svc.audit_to_wire(row) for row in result.items])
