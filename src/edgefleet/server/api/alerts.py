"""/v1/webhooks and /v1/alerts: alert webhooks (admin) and their delivery log (viewer)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from edgefleet.server.api.dependencies import Admin, Ctx, DbSession, Operator, PageQuery, Viewer
from edgefleet.server.api.json_body import StrictJsonRoute
from edgefleet.server.services.alerts import webhooks as svc
from edgefleet.server.services.request_bodies import WebhookCreate

__all__ = ["router"]

router = APIRouter(tags=["alerts"], route_class=StrictJsonRoute)
WebhookPath = Annotated[str, Path(pattern=r"^wh_[0-9a-f]{16}$")]


@router.post("/v1/webhooks", status_code=201)
def create_webhook(body: WebhookCreate, ctx: Ctx, session: DbSession, actor: Admin) -> dict[str, Any]:
    created = svc.create_webhook(
        session,
        name=body.name,
        url=body.url,
        events=body.events,
        secret=body.secret,
        actor=actor.name,
        now=ctx.clock(),
    )
    wire = svc.webhook_to_wire(created.row)
    if created.secret is not None:
        wire["secret"] = created.secret  # generated here: shown once
    return wire


@router.get("/v1/webhooks")
def list_webhooks(session: DbSession, _: Operator) -> dict[str, Any]:
    rows = svc.list_webhooks(session)
    return {"items": [svc.webhook_to_wire(r) for r in rows], "total": len(rows)}


@router.delete("/v1/webhooks/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: WebhookPath, ctx: Ctx, session: DbSession, actor: Admin) -> Response:
    svc.delete_webhook(session, webhook_id, actor=actor.name, now=ctx.clock())
    return Response(status_code=204)


@router.post("/v1/webhooks/{webhook_id}/test", status_code=202)
def test_webhook(webhook_id: WebhookPath, ctx: Ctx, session: DbSession, actor: Admin) -> dict[str, Any]:
    """Queue a ``test`` event for this webhook only; its delivery shows in the log like any other."""
    delivery_id = svc.queue_test(session, webhook_id, actor=actor.name, now=ctx.clock())
    return {"queued": True, "delivery_id": delivery_id}


@router.get("/v1/alerts/deliveries")
def list_deliveries(
    session: DbSession,
    _: Viewer,
    page: PageQuery,
    status: Annotated[str | None, Query(max_length=16)] = None,
    webhook_id: Annotated[str | None, Query(max_length=32)] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
) -> dict[str, Any]:
    result = svc.list_deliveries(
        session, limit=page.limit, offset=page.offset, status=status, webhook_id=webhook_id, kind=kind
    )
    return result.to_wire([svc.delivery_to_wire(d, e) for d, e in result.items])
