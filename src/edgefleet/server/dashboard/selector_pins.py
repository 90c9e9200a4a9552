"""Pinning an artifact on a label selection from the dashboard (operators): ``POST /v1/pins/by-selector``.

The fields are validated with the API's body model (``request_bodies.SelectionPin``) and selector parser;
the confirmation page shows what a dry run of the API's use case (``group_pins.pin_selection``) matched —
how many devices, naming a few — and the confirmed post runs it for real (all or nothing, one device pin per
matched device, audited as ``pin.set`` with the selector as target). The form lives on ``/dashboard/pins``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from edgefleet.protocol.errors import EdgefleetError, PermissionDeniedError
from edgefleet.protocol.selector import Selector, parse_selector
from edgefleet.server.api.dependencies import Ctx, DbSession
from edgefleet.server.dashboard.auth import SignedIn, operator_form
from edgefleet.server.dashboard.confirm import Confirmation, confirmed, done, editing, show_confirmation
from edgefleet.server.dashboard.form_problems import form_problems
from edgefleet.server.dashboard.pin_pages import pins_view
from edgefleet.server.dashboard.render import DashboardRoute
from edgefleet.server.services import group_pins
from edgefleet.server.services.request_bodies import SelectionPin, validate_body

__all__ = ["router"]

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)
PAGE = "/dashboard/pins"
FIELDS = ("selector", "slot", "artifact_id")
NAMED_DEVICES = 5
SET_PIN_FORM = {"scope": "class", "target": "", "slot": "default", "artifact_id": ""}
BODY_FIELDS = {name: name for name in FIELDS}
CODE_FIELDS = {
    "invalid_selector": "selector",
    "empty_selector": "selector",
    "selector_matches_nothing": "selector",
    "artifact_not_found": "artifact_id",
    "wrong_hardware_class": "artifact_id",
    "artifact_disabled": "artifact_id",
    "device_lacks_runtime": "artifact_id",
    "device_runtime_too_old": "artifact_id",
    "device_lacks_provider": "artifact_id",
}


def selection_body(form: dict[str, str]) -> tuple[SelectionPin, Selector]:
    """The form's fields as the body ``POST /v1/pins/by-selector`` would get, validated as the API does
    (an empty artifact id is refused: clearing by selector stays with the API and the CLI)."""
    document: dict[str, Any] = {
        "selector": form.get("selector", "").strip(),
        "slot": form.get("slot", "").strip() or "default",
        "artifact_id": form.get("artifact_id", "").strip(),
    }
    body = validate_body(SelectionPin, document)
    return body, parse_selector(body.selector)  # the API's parser: invalid_selector, empty_selector


@router.post("/pins/by-selector")
async def pin_selection(request: Request, ctx: Ctx, session: DbSession, user: SignedIn) -> Response:
    form = await operator_form(request, user)
    fields = {name: form.get(name, "") for name in FIELDS}
    if editing(form):
        return pins_view(request, session, user, form=SET_PIN_FORM, selector_form=fields)
    try:
        body, selector = selection_body(fields)
        matched = group_pins.pin_selection(
            session,
            selector=selector,
            slot=body.slot,
            artifact_id=body.artifact_id,
            hardware_class=None,
            actor=user.actor.name,
            now=ctx.clock(),
            dry_run=not confirmed(form),
        )
        if matched.dry_run:
            named = ", ".join(matched.device_ids[:NAMED_DEVICES])
            more = len(matched.device_ids) - NAMED_DEVICES
            return show_confirmation(
                request,
                user,
                form,
                Confirmation(
                    title=f"Pin {len(matched.device_ids)} device(s) matching {body.selector} "
                    f"to {body.artifact_id}?",
                    explanation="Each matched device of the artifact's class gets a device pin for this slot "
                    "(all or nothing) and switches at its next poll; a device pin wins over its class's pin "
                    "and over active rollouts. A device enrolled later is not pinned.",
                    confirm_label="Pin devices",
                    cancel=PAGE,
                    ask_reason=False,
                    editable=True,
                    summary=[
                        ("Selector", body.selector),
                        ("Hardware class", matched.hardware_class),
                        ("Slot", body.slot),
                        ("Artifact", body.artifact_id or ""),
                        ("Devices matched", str(len(matched.device_ids))),
                        ("Among them", named + (f" and {more} more" if more > 0 else "")),
                    ],
                    carry=fields,
                ),
            )
    except PermissionDeniedError:
        raise
    except EdgefleetError as exc:
        problems = form_problems(exc, body_fields=BODY_FIELDS, code_fields=CODE_FIELDS)
        return pins_view(
            request, session, user, form=SET_PIN_FORM, selector_form=fields, selector_problems=problems
        )
    return done(PAGE, "pin_selection")
