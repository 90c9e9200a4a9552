"""Operator actions from the dashboard: the API's use cases, the API's role checks, plus CSRF and a
confirmation step for destructive actions (abort, revoke, disable, a device's rollback)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import RedirectResponse

from edgefleet.server.api.dependencies import Ctx, DbSession
from edgefleet.server.dashboard.auth import DashboardUser, SignedIn
from edgefleet.server.dashboard.forms import check_csrf, check_origin, read_form
from edgefleet.server.dashboard.pages import ArtifactId, DeviceId, RolloutId
from edgefleet.server.dashboard.render import SECURITY_HEADERS, DashboardRoute, html
from edgefleet.server.services import artifacts, devices
from edgefleet.server.services.pins_rollback import rollback_device
from edgefleet.server.services.rollouts import service as rollouts

__all__ = ["router"]

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)
MAX_REASON_CHARS = 2000


@dataclass(frozen=True)
class Confirmation:
    title: str
    explanation: str
    confirm_label: str
    cancel: str


async def _authorised_form(request: Request, user: DashboardUser) -> dict[str, str]:
    """Origin and CSRF first (a forged post learns nothing), then the operator role, as the API asks."""
    check_origin(request)
    form = await read_form(request)
    check_csrf(form, user.csrf)
    user.require_operator()
    return form


def _confirm(request: Request, user: DashboardUser, form: dict[str, str], c: Confirmation) -> Response:
    return html(
        request,
        "confirm.html",
        user=user,
        action=request.url.path,
        reason=form.get("reason", "")[:MAX_REASON_CHARS],
        title=c.title,
        explanation=c.explanation,
        confirm_label=c.confirm_label,
        cancel=c.cancel,
    )


def _done(url: str, action: str) -> Response:
    return RedirectResponse(f"{url}?done={action}", status_code=303, headers=SECURITY_HEADERS)


@router.post("/rollouts/{rollout_id}/{action}")
async def rollout_action(
    rollout_id: RolloutId,
    action: Annotated[str, Path(pattern=r"^(pause|resume|promote|abort)$")],
    request: Request,
    ctx: Ctx,
    session: DbSession,
    user: SignedIn,
) -> Response:
    form = await _authorised_form(request, user)
    page = f"/dashboard/rollouts/{rollout_id}"
    if action == "abort" and form.get("confirm") != "yes":
        return _confirm(
            request,
            user,
            form,
            Confirmation(
                title=f"Abort rollout {rollout_id}?",
                explanation="Every device this rollout has reached goes back to the previous artifact at its "
                "next poll. An aborted rollout cannot be resumed.",
                confirm_label="Abort rollout",
                cancel=page,
            ),
        )
    rollouts.operator_action(
        session,
        rollout_id,
        action,
        actor=user.actor.name,
        now=ctx.clock(),
        reason=form.get("reason", "")[:MAX_REASON_CHARS],
    )
    return _done(page, action)


@router.post("/devices/{device_id}/revoke")
async def revoke_device(
    device_id: DeviceId, request: Request, ctx: Ctx, session: DbSession, user: SignedIn
) -> Response:
    form = await _authorised_form(request, user)
    page = f"/dashboard/devices/{device_id}"
    if form.get("confirm") != "yes":
        return _confirm(
            request,
            user,
            form,
            Confirmation(
                title=f"Revoke device {device_id}?",
                explanation="The device's key is refused from now on: it gets no desired state and its "
                "telemetry is dropped. Re-admitting it needs a new enrollment.",
                confirm_label="Revoke device",
                cancel=page,
            ),
        )
    devices.revoke_device(
        session,
        device_id,
        reason=form.get("reason", "")[:MAX_REASON_CHARS],
        actor=user.actor.name,
        now=ctx.clock(),
    )
    return _done(page, "revoke")


@router.post("/devices/{device_id}/rollback")
async def roll_back_device(
    device_id: DeviceId, request: Request, ctx: Ctx, session: DbSession, user: SignedIn
) -> Response:
    """``POST /v1/devices/{id}/rollback`` for the default slot: pin the version the device reports as its
    previous one, after confirming."""
    form = await _authorised_form(request, user)
    page = f"/dashboard/devices/{device_id}"
    if form.get("confirm") != "yes":
        return _confirm(
            request,
            user,
            form,
            Confirmation(
                title=f"Roll device {device_id} back?",
                explanation="The device is pinned to the version it reports as its previous one and switches "
                "back to it at its next poll (from disk, no download). The pin stays until you remove it.",
                confirm_label="Roll back",
                cancel=page,
            ),
        )
    rollback_device(session, device_id, slot="default", actor=user.actor.name, now=ctx.clock())
    return _done(page, "rollback")


@router.post("/artifacts/{artifact_id}/{action}")
async def artifact_action(
    artifact_id: ArtifactId,
    action: Annotated[str, Path(pattern=r"^(disable|enable)$")],
    request: Request,
    ctx: Ctx,
    session: DbSession,
    user: SignedIn,
) -> Response:
    form = await _authorised_form(request, user)
    page = f"/dashboard/artifacts/{artifact_id}"
    if action == "disable" and form.get("confirm") != "yes":
        return _confirm(
            request,
            user,
            form,
            Confirmation(
                title=f"Disable artifact {artifact_id}?",
                explanation="Every device drops this build at its next poll and falls back to what it ran "
                "before; active rollouts to it halt.",
                confirm_label="Disable artifact",
                cancel=page,
            ),
        )
    artifacts.set_disabled(
        session,
        artifact_id,
        disabled=action == "disable",
        reason=form.get("reason", "")[:MAX_REASON_CHARS] or None,
        actor=user.actor.name,
        now=ctx.clock(),
    )
    return _done(page, action)
