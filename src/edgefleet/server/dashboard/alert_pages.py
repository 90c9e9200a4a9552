"""The dashboard's alerts page (viewer role): the webhooks (never their secrets) and the delivery log; the
"add a webhook" form and each webhook's remove button for admins (``webhook_actions``)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from edgefleet.protocol.webhooks import EVENT_KINDS
from edgefleet.server.api.dependencies import DbSession
from edgefleet.server.dashboard.auth import DashboardUser, SignedIn
from edgefleet.server.dashboard.form_problems import FormProblems
from edgefleet.server.dashboard.pages import NOTICES
from edgefleet.server.dashboard.render import DashboardRoute, html
from edgefleet.server.services.alerts import webhooks

__all__ = ["EMPTY_FORM", "alerts_view", "router"]

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)
PAGE_SIZE = 50
EMPTY_FORM: dict[str, str] = {"name": "", "url": ""}


def alerts_view(
    request: Request,
    session: DbSession,
    user: DashboardUser,
    *,
    form: dict[str, str],
    offset: int = 0,
    status: str | None = None,
    kind: str | None = None,
    problems: FormProblems | None = None,
    notice: str | None = None,
) -> Response:
    """The page; ``form`` refills the "add a webhook" form (never with a secret)."""
    page = webhooks.list_deliveries(
        session, limit=PAGE_SIZE, offset=offset, status=status or None, kind=kind or None
    )
    filters = {"status": status or "", "kind": kind or ""}
    query = urlencode([(k, v) for k, v in filters.items() if v])
    return html(
        request,
        "alerts.html",
        problems.status if problems else 200,
        hooks=[webhooks.webhook_to_wire(h) for h in webhooks.list_webhooks(session)],
        page=page,
        items=[webhooks.delivery_to_wire(d, e) for d, e in page.items],
        filters=filters,
        statuses=webhooks.DELIVERY_STATUSES,
        kinds=EVENT_KINDS,
        base="/dashboard/alerts" + (f"?{query}" if query else ""),
        user=user,
        form=form,
        problems=problems,
        notice=notice,
    )


@router.get("/alerts")
def alerts_page(
    request: Request,
    session: DbSession,
    user: SignedIn,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    status: Annotated[str | None, Query(max_length=16)] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    done: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    return alerts_view(
        request,
        session,
        user,
        form=EMPTY_FORM,
        offset=offset,
        status=status,
        kind=kind,
        notice=NOTICES.get(done or ""),
    )
