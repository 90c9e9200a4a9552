"""The web dashboard: server-rendered pages over the control plane's services, at ``/dashboard/``.

See docs/dashboard.md. ``router`` is registered in ``server/app.py``'s ``ROUTERS``.
"""

from __future__ import annotations

from fastapi import APIRouter

from edgefleet.server.dashboard import actions, auth, history_pages, pages, plan_page, probe_pages, static

__all__ = ["router"]

router = APIRouter()
for _part in (
    static.router,
    auth.router,
    pages.router,
    probe_pages.router,
    plan_page.router,
    history_pages.router,
    actions.router,
):
    router.include_router(_part)
