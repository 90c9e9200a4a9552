"""Device lifecycle from the dashboard: relabel and decommission, with the API's use cases and role checks,
plus CSRF, origin and a confirmation step (the confirmation of a relabel shows the labels before and after,
computed by the same service call as a dry run)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request, Response

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.server.api.dependencies import Ctx, DbSession
from edgefleet.server.dashboard.auth import SignedIn, operator_form
from edgefleet.server.dashboard.confirm import Confirmation, confirmed, done, reason_of, show_confirmation
from edgefleet.server.dashboard.pages import DeviceId
from edgefleet.server.dashboard.render import DashboardRoute
from edgefleet.server.services import lifecycle

__all__ = ["parse_label_text", "router"]

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)
_SEPARATORS = re.compile(r"[\s,]+")
MAX_LABEL_TEXT_CHARS = 4096


def parse_label_text(set_text: str, remove_text: str) -> lifecycle.LabelChange:
    """The relabel form's two text fields: ``k=v`` pairs and keys, separated by commas or spaces."""
    if len(set_text) > MAX_LABEL_TEXT_CHARS or len(remove_text) > MAX_LABEL_TEXT_CHARS:
        raise InvalidDocumentError(
            "label text too long", code="invalid_labels", expected=f"<= {MAX_LABEL_TEXT_CHARS} characters"
        )
    labels: dict[str, str] = {}
    for item in filter(None, _SEPARATORS.split(set_text.strip())):
        key, sep, value = item.partition("=")
        if not sep or not key or key in labels:
            raise InvalidDocumentError(
                "labels to set are key=value, each key once",
                code="invalid_labels",
                expected="key=value",
                got=item,
            )
        labels[key] = value
    remove = tuple(dict.fromkeys(filter(None, _SEPARATORS.split(remove_text.strip()))))
    change = lifecycle.LabelChange(set=labels, remove=remove)
    change.check()
    return change


def _labels_text(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "(none)"


@router.post("/devices/{device_id}/relabel")
async def relabel_device(
    device_id: DeviceId, request: Request, ctx: Ctx, session: DbSession, user: SignedIn
) -> Response:
    form = await operator_form(request, user)
    page = f"/dashboard/devices/{device_id}"
    change = parse_label_text(form.get("set", ""), form.get("remove", ""))
    if not confirmed(form):
        preview = lifecycle.relabel(
            session, change=change, device_id=device_id, actor=user.actor.name, now=ctx.clock(), dry_run=True
        )
        summary = [("Before", _labels_text(c["before"])) for c in preview.changed]
        summary += [("After", _labels_text(c["after"])) for c in preview.changed]
        return show_confirmation(
            request,
            user,
            form,
            Confirmation(
                title=f"Relabel device {device_id}?",
                explanation="Labels decide which rollouts and selections cover the device: its desired state "
                "is re-judged at its next poll."
                if preview.changed
                else "The device already has these labels: nothing would change.",
                confirm_label="Relabel device",
                cancel=page,
                ask_reason=False,
                summary=summary,
                carry={"set": form.get("set", ""), "remove": form.get("remove", "")},
            ),
        )
    lifecycle.relabel(session, change=change, device_id=device_id, actor=user.actor.name, now=ctx.clock())
    return done(page, "relabel")


@router.post("/devices/{device_id}/decommission")
async def decommission_device(
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
                title=f"Decommission device {device_id}?",
                explanation="The device is revoked at once (its next request is refused; it keeps serving "
                "what it runs), disappears from the fleet views and counts, and stays in the audit log. "
                "Bringing the unit back needs a new enrollment.",
                confirm_label="Decommission device",
                cancel=page,
                danger=True,
            ),
        )
    lifecycle.decommission_device(
        session, device_id, reason=reason_of(form), actor=user.actor.name, now=ctx.clock()
    )
    return done(page, "decommission")
