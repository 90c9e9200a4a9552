"""Operator actions from the dashboard: the API's use cases, the API's role checks, plus CSRF and a
confirmation step (``confirm.py``) for every action but re-enabling an artifact (pause, resume, promote,
abort; revoke, a device's rollback; disable). Creating rollouts, pins and enrollment tokens:
``rollout_form``, ``pin_pages``, ``enrollment_pages``; pins by label selector: ``selector_pins``; alert
webhooks (admins): ``webhook_actions``."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from edgefleet.server.api.dependencies import Ctx, DbSession
from edgefleet.server.dashboard.auth import SignedIn, operator_form
from edgefleet.server.dashboard.confirm import Confirmation, confirmed, done, reason_of, show_confirmation
from edgefleet.server.dashboard.pages import ArtifactId, DeviceId, RolloutId
from edgefleet.server.dashboard.render import DashboardRoute
from edgefleet.server.services import artifacts, devices
from edgefleet.server.services.pins_rollback import rollback_device
from edgefleet.server.services.rollouts import service as rollouts

__all__ = ["router"]

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)
ROLLOUT_ACTIONS = {
    "pause": Confirmation(
        title="Pause rollout {id}?",
        explanation="The rollout stops advancing: no device joins it and no stage ends until it is resumed. "
        "Its gates are still judged (a breach still halts it), and devices already on the new version "
        "stay on it.",
        confirm_label="Pause rollout",
        cancel="",
    ),
    "resume": Confirmation(
        title="Resume rollout {id}?",
        explanation="The engine advances the rollout again as its spec says: pending devices are told to "
        "install, and the stage ends once its gates, soak time and evidence allow.",
        confirm_label="Resume rollout",
        cancel="",
    ),
    "promote": Confirmation(
        title="Promote the current stage of rollout {id}?",
        explanation="Grants the manual promotion of the current stage: it advances as soon as its gates, "
        "soak time and evidence allow, without waiting for an operator. Gates are never skipped.",
        confirm_label="Promote stage",
        cancel="",
    ),
    "abort": Confirmation(
        title="Abort rollout {id}?",
        explanation="Every device this rollout has reached goes back to the previous artifact at its "
        "next poll. An aborted rollout cannot be resumed.",
        confirm_label="Abort rollout",
        cancel="",
        danger=True,
    ),
}


@router.post("/rollouts/{rollout_id}/{action}")
async def rollout_action(
    rollout_id: RolloutId,
    action: Annotated[str, Path(pattern=r"^(pause|resume|promote|abort)$")],
    request: Request,
    ctx: Ctx,
    session: DbSession,
    user: SignedIn,
) -> Response:
    form = await operator_form(request, user)
    page = f"/dashboard/rollouts/{rollout_id}"
    if not confirmed(form):
        asked = ROLLOUT_ACTIONS[action]
        title = asked.title.format(id=rollout_id)
        return show_confirmation(request, user, form, replace(asked, title=title, cancel=page))
    rollouts.operator_action(
        session,
        rollout_id,
        action,
        actor=user.actor.name,
        now=ctx.clock(),
        reason=reason_of(form),
    )
    return done(page, action)


@router.post("/devices/{device_id}/revoke")
async def revoke_device(
    device_id: DeviceId, request: Request, ctx: Ctx, session: DbSession, user: SignedIn
) -> Response:
    form = await operator_form(request, user)
    page = f"/dashboard/devices/{device_id}"
    if not confirmed(form):
        return show_confirmation(
            request,
            user,
            form,
            Confirmation(
                title=f"Revoke device {device_id}?",
                explanation="The device's key is refused from now on: it gets no desired state and its "
                "telemetry is dropped. Re-admitting it needs a new enrollment.",
                confirm_label="Revoke device",
                cancel=page,
                danger=True,
            ),
        )
    devices.revoke_device(
        session,
        device_id,
        reason=reason_of(form),
        actor=user.actor.name,
        now=ctx.clock(),
    )
    return done(page, "revoke")


@router.post("/devices/{device_id}/rollback")
async def roll_back_device(
    device_id: DeviceId, request: Request, ctx: Ctx, session: DbSession, user: SignedIn
) -> Response:
    """``POST /v1/devices/{id}/rollback`` for the default slot: pin the version the device reports as its
    previous one, after confirming."""
    form = await operator_form(request, user)
    page = f"/dashboard/devices/{device_id}"
    if not confirmed(form):
        return show_confirmation(
            request,
            user,
            form,
            Confirmation(
                title=f"Roll device {device_id} back?",
                explanation="The device is pinned to the version it reports as its previous one and switches "
                "back to it at its next poll (from disk, no download). The pin stays until you remove it.",
                confirm_label="Roll back",
                cancel=page,
                danger=True,
                ask_reason=False,
            ),
        )
    rollback_device(session, device_id, slot="default", actor=user.actor.name, now=ctx.clock())
    return done(page, "rollback")


@router.post("/artifacts/{artifact_id}/{action}")
async def artifact_action(
    artifact_id: ArtifactId,
    action: Annotated[str, Path(pattern=r"^(disable|enable)$")],
    request: Request,
    ctx: Ctx,
    session: DbSession,
    user: SignedIn,
) -> Response:
    form = await operator_form(request, user)
    page = f"/dashboard/artifacts/{artifact_id}"
    if action == "disable" and not confirmed(form):
        return show_confirmation(
            request,
            user,
            form,
            Confirmation(
                title=f"Disable artifact {artifact_id}?",
                explanation="Every device drops this build at its next poll and falls back to what it ran "
                "before; active rollouts to it halt.",
                confirm_label="Disable artifact",
                cancel=page,
                danger=True,
            ),
        )
    artifacts.set_disabled(
        session,
        artifact_id,
        disabled=action == "disable",
        reason=reason_of(form) or None,
        actor=user.actor.name,
        now=ctx.clock(),
    )
    return done(page, action)
