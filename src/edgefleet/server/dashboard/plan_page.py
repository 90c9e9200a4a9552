"""The dashboard's "plan a rollout" page (operators): the dry run of a rollout on the fleet's twin.

Render only: the form's fields become a plan request in ``services/twin/form.py``, the twin runs in
``services/twin/control_plane.py``, and its plots come from ``services/twin/plots.py``; an error is shown
on the form with its code.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from edgefleet.protocol.errors import EdgefleetError, PermissionDeniedError
from edgefleet.server.api.dependencies import Ctx, DbSession
from edgefleet.server.dashboard.auth import SignedIn
from edgefleet.server.dashboard.forms import check_csrf, check_origin, read_form
from edgefleet.server.dashboard.render import DashboardRoute, html
from edgefleet.server.services.twin.control_plane import dry_run
from edgefleet.server.services.twin.form import plan_request
from edgefleet.server.services.twin.plots import plan_svgs

__all__ = ["router"]

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)
EXAMPLE_SPEC = (
    '{"stages": [\n  {"count": 1, "soak_s": 300},\n  {"percent": 5, "soak_s": 600},\n'
    '  {"percent": 25, "soak_s": 1800},\n  {"percent": 100, "soak_s": 0}\n]}'
)


@router.get("/plan")
def plan_form(request: Request, user: SignedIn) -> Response:
    user.require_operator()
    return html(request, "plan.html", user=user, form={"spec": EXAMPLE_SPEC, "seed": "0"}, result=None)


@router.post("/plan")
async def plan_submit(request: Request, ctx: Ctx, session: DbSession, user: SignedIn) -> Response:
    check_origin(request)
    form = await read_form(request)
    check_csrf(form, user.csrf)
    user.require_operator()
    try:
        asked = plan_request(form)
        result = dry_run(
            session,
            model=asked.model,
            targets=asked.targets,
            selector=asked.selector,
            slot="default",
            spec=asked.spec,
            now=ctx.clock(),
            thresholds=request.app.state.devices.thresholds,
            seed=asked.seed,
        )
    except PermissionDeniedError:
        raise
    except EdgefleetError as exc:
        return html(request, "plan.html", 422, user=user, form=form, result=None, error=exc)
    return html(request, "plan.html", user=user, form=form, result=result, svgs=plan_svgs(result))
