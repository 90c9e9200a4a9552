"""Pins in the dashboard: every pin (viewers), and setting or clearing one (operators, after confirming).

A pin is ``PUT|DELETE /v1/pins/{scope}/{target}/{slot}``: the form's ``artifact_id`` is validated with the
API's body model (``request_bodies.PinBody``) and both actions call the API's use case
(``devices.pin_artifact``: checked, audited as ``pin.set``/``pin.clear``, one transaction).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from edgefleet.protocol.document import NAME_PATTERN
from edgefleet.protocol.errors import EdgefleetError, InvalidDocumentError, PermissionDeniedError
from edgefleet.server.api.dependencies import Ctx, DbSession
from edgefleet.server.dashboard.auth import DashboardUser, SignedIn, operator_form
from edgefleet.server.dashboard.confirm import Confirmation, confirmed, done, editing, show_confirmation
from edgefleet.server.dashboard.form_problems import FormProblems, form_problems
from edgefleet.server.dashboard.pages import NOTICES, PAGE_SIZE, Offset
from edgefleet.server.dashboard.render import DashboardRoute, html
from edgefleet.server.services import artifacts, devices, pins
from edgefleet.server.services.request_bodies import PinBody, validate_body

__all__ = ["EMPTY_SELECTOR_FORM", "pins_view", "router"]

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)
PAGE = "/dashboard/pins"
FIELDS = ("scope", "target", "slot", "artifact_id")
MAX_TARGET_CHARS = 63
BODY_FIELDS = {"artifact_id": "artifact_id", "target": "target"}
CODE_FIELDS = {
    "invalid_scope": "scope",
    "invalid_name": "slot",
    "device_not_found": "target",
    "artifact_not_found": "artifact_id",
    "wrong_hardware_class": "artifact_id",
    "artifact_disabled": "artifact_id",
    "device_lacks_runtime": "artifact_id",
    "device_runtime_too_old": "artifact_id",
    "device_lacks_provider": "artifact_id",
}
EMPTY_SELECTOR_FORM = {"selector": "", "slot": "default", "artifact_id": ""}
Filter = Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=MAX_TARGET_CHARS)]


def _where(form: dict[str, str]) -> tuple[str, str, str]:
    """Scope, target and slot as the API's path carries them (the target at most 63 characters)."""
    scope, target, slot = (form.get(k, "").strip() for k in ("scope", "target", "slot"))
    if len(target) > MAX_TARGET_CHARS or not target:
        raise InvalidDocumentError(
            "invalid request: target: a class name or a device id",
            code="invalid_document",
            details={
                "errors": [
                    {"field": "target", "expected": f"1-{MAX_TARGET_CHARS} characters", "got": target[:80]}
                ]
            },
        )
    return scope, target, slot or "default"


def pins_view(
    request: Request,
    session: DbSession,
    user: DashboardUser,
    *,
    form: dict[str, str],
    offset: int = 0,
    scope: str | None = None,
    target: str | None = None,
    problems: FormProblems | None = None,
    notice: str | None = None,
    selector_form: dict[str, str] | None = None,
    selector_problems: FormProblems | None = None,
) -> Response:
    """The page; ``form`` refills "set a pin", ``selector_form`` "pin by label selector"
    (``selector_pins``)."""
    shown = problems or selector_problems
    page = pins.list_pins(session, limit=PAGE_SIZE, offset=offset, scope=scope, target=target)
    labels = artifacts.artifact_labels(session, sorted({p.artifact_id for p in page.items}))
    return html(
        request,
        "pins.html",
        shown.status if shown else 200,
        user=user,
        page=page,
        items=[pins.pin_to_wire(p) for p in page.items],
        labels=labels,
        form=form,
        problems=problems,
        notice=notice,
        base=PAGE,
        sel_form=selector_form or EMPTY_SELECTOR_FORM,
        sel_problems=selector_problems,
    )


@router.get("/pins")
def pin_list(
    request: Request,
    session: DbSession,
    user: SignedIn,
    offset: Offset = 0,
    scope: Annotated[str | None, Query(pattern=r"^(class|device)$")] = None,
    target: Filter = None,
    artifact_id: Annotated[str | None, Query(pattern=r"^art_[0-9a-f]{16}$")] = None,
    done: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    form = {
        "scope": scope or "class",
        "target": target or "",
        "slot": "default",
        "artifact_id": artifact_id or "",
    }
    return pins_view(
        request,
        session,
        user,
        form=form,
        offset=offset,
        scope=scope,
        target=target or None,
        notice=NOTICES.get(done or ""),
    )


def _label(session: DbSession, artifact_id: str) -> str:
    found: dict[str, Any] = artifacts.artifact_labels(session, [artifact_id]).get(artifact_id, {})
    if not found:
        return artifact_id
    return f"{artifact_id} ({found['model']} {found['version']}, {found['hardware_class']})"


@router.post("/pins/set")
async def set_pin(request: Request, ctx: Ctx, session: DbSession, user: SignedIn) -> Response:
    form = await operator_form(request, user)
    fields = {name: form.get(name, "") for name in FIELDS}
    if editing(form):
        return pins_view(request, session, user, form=fields)
    try:
        scope, target, slot = _where(fields)
        body = validate_body(PinBody, {"artifact_id": fields["artifact_id"].strip()})
        if not confirmed(form):
            whom = "every device of the class" if scope == "class" else "this device"
            return show_confirmation(
                request,
                user,
                form,
                Confirmation(
                    title=f"Pin {scope} {target} to {body.artifact_id}?",
                    explanation=f"The director signs a new desired state: {whom} switches slot {slot} to "
                    "this artifact at its next poll. A device pin wins over its class's pin and over active "
                    "rollouts; a class pin is what rollouts of the class start from.",
                    confirm_label="Set pin",
                    cancel=PAGE,
                    ask_reason=False,
                    editable=True,
                    summary=[
                        ("Scope", scope),
                        ("Target", target),
                        ("Slot", slot),
                        ("Artifact", _label(session, body.artifact_id)),
                    ],
                    carry=fields,
                ),
            )
        devices.pin_artifact(
            session,
            scope=scope,
            target=target,
            slot=slot,
            artifact_id=body.artifact_id,
            actor=user.actor.name,
            now=ctx.clock(),
        )
    except PermissionDeniedError:
        raise
    except EdgefleetError as exc:
        problems = form_problems(exc, body_fields=BODY_FIELDS, code_fields=CODE_FIELDS)
        return pins_view(request, session, user, form=fields, problems=problems)
    return done(PAGE, "pin_set")


@router.post("/pins/clear")
async def clear_pin(request: Request, ctx: Ctx, session: DbSession, user: SignedIn) -> Response:
    form = await operator_form(request, user)
    fields = {name: form.get(name, "") for name in FIELDS if name != "artifact_id"}
    scope, target, slot = _where(fields)
    if not confirmed(form):
        return show_confirmation(
            request,
            user,
            form,
            Confirmation(
                title=f"Clear the pin of {scope} {target}, slot {slot}?",
                explanation="The director signs a new desired state without this pin: a device falls back to "
                "its class's pin (and any active rollout), a class to nothing pinned, at the next poll.",
                confirm_label="Clear pin",
                cancel=PAGE,
                danger=True,
                ask_reason=False,
                summary=[("Scope", scope), ("Target", target), ("Slot", slot)],
                carry=fields,
            ),
        )
    devices.pin_artifact(
        session,
        scope=scope,
        target=target,
        slot=slot,
        artifact_id=None,
        actor=user.actor.name,
        now=ctx.clock(),
    )
    return done(PAGE, "pin_clear")
