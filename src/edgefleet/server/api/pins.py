"""Pins: an artifact held on a class or a device for a slot, over the rollouts' choice (docs/rollouts.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from edgefleet.protocol.document import NAME_PATTERN
from edgefleet.server.api.dependencies import Ctx, DbSession, NamePath, Operator, PageQuery, Viewer
from edgefleet.server.api.json_body import StrictJsonRoute
from edgefleet.server.services import devices as svc
from edgefleet.server.services import pins as pins_svc
from edgefleet.server.services.request_bodies import PinBody

__all__ = ["router"]

router = APIRouter(tags=["devices"], route_class=StrictJsonRoute)


@router.get("/v1/pins")
def list_pins(
    session: DbSession,
    page: PageQuery,
    _: Viewer,
    scope: Annotated[str | None, Query(pattern=r"^(class|device)$")] = None,
    target: Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=63)] = None,
) -> dict[str, Any]:
    result = pins_svc.list_pins(session, limit=page.limit, offset=page.offset, scope=scope, target=target)
    return result.to_wire([pins_svc.pin_to_wire(row) for row in result.items])


@router.put("/v1/pins/{scope}/{target}/{slot}", status_code=204)
def set_pin(
    scope: Annotated[str, Path(pattern=r"^(class|device)$")],
    target: Annotated[str, Path(max_length=63)],
    slot: NamePath,
    body: PinBody,
    ctx: Ctx,
    session: DbSession,
    actor: Operator,
) -> Response:
    svc.pin_artifact(
        session,
        scope=scope,
        target=target,
        slot=slot,
        artifact_id=body.artifact_id,
        actor=actor.name,
        now=ctx.clock(),
    )
    return Response(status_code=204)


@router.delete("/v1/pins/{scope}/{target}/{slot}", status_code=204)
def clear_pin(
    scope: Annotated[str, Path(pattern=r"^(class|device)$")],
    target: Annotated[str, Path(max_length=63)],
    slot: NamePath,
    ctx: Ctx,
    session: DbSession,
    actor: Operator,
) -> Response:
    svc.pin_artifact(
        session, scope=scope, target=target, slot=slot, artifact_id=None, actor=actor.name, now=ctx.clock()
    )
    return Response(status_code=204)
