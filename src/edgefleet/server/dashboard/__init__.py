"""The web dashboard: server-rendered pages over the control plane's services, at ``/dashboard/``.

See docs/dashboard.md. ``router`` is registered in ``server/app.py``'s ``ROUTERS``.
"""

from __future__ import annotations

from fastapi import APIRouter

from edgefleet.server.dashboard import (
    actions,
    alert_pages,
    auth,
    device_actions,
    enrollment_pages,
    history_pages,
    pages,
    pin_pages,
    plan_page,
    probe_pages,
    rollout_form,
    selector_pins,
    static,
    webhook_actions,
)

__all__ = ["router"]

router = APIRouter()
for _part in (
    static.router,
    auth.router,
    rollout_form.router,  # before pages: /dashboard/rollouts/new is not a rollout id
    pages.router,
    probe_pages.router,
    plan_page.router,
    history_pages.router,
    alert_pages.router,
    webhook_actions.router,
    actions.router,
    selector_pins.router,  # before pin_pages: one more form on /dashboard/pins
    pin_pages.router,
    enrollment_pages.router,
    device_actions.router,
):
    router.include_router(_part)
