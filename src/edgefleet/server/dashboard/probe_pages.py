"""The dashboard's probe pages (viewer role): probes listed, and one probe with every device's figures.

Render only: the probe's status (complete, partial, ...) is the probes service's verdict, shown as is.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from edgefleet.protocol.probe import PROBE_ID_PATTERN
from edgefleet.server.api.dependencies import Ctx, DbSession
from edgefleet.server.dashboard.auth import SignedIn
from edgefleet.server.dashboard.render import DashboardRoute, html
from edgefleet.server.services import probes

__all__ = ["router"]

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)
ProbeId = Annotated[str, Path(pattern=PROBE_ID_PATTERN)]


@router.get("/probes")
def probe_list(
    request: Request,
    ctx: Ctx,
    session: DbSession,
    user: SignedIn,
    model: Annotated[str | None, Query(max_length=63)] = None,
) -> Response:
    items = probes.list_probes(session, now=ctx.clock(), model=model or None, limit=100)
    return html(request, "probes.html", items=items, model=model or "", user=user)


@router.get("/probes/{probe_id}")
def probe_page(probe_id: ProbeId, request: Request, ctx: Ctx, session: DbSession, user: SignedIn) -> Response:
    probe = probes.get_probe(session, probe_id, now=ctx.clock())
    return html(request, "probe.html", probe=probe, user=user)
