"""Enrollment tokens from the dashboard (operators): the form is ``POST /v1/enrollment-tokens``.

The fields are validated with the API's body model (``request_bodies.EnrollmentTokenCreate``) and the
confirmed post calls the API's use case (``enrollment.create_enrollment_token``: audited as
``enrollment_token.create``). The secret is in that one answer only: the server keeps its sha256, no page
shows it again, and the answer is ``no-store``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, Response

from edgefleet.protocol.errors import EdgefleetError, PermissionDeniedError
from edgefleet.server.api.dependencies import Ctx, DbSession
from edgefleet.server.dashboard.auth import DashboardUser, SignedIn, operator_form
from edgefleet.server.dashboard.confirm import Confirmation, confirmed, editing, show_confirmation
from edgefleet.server.dashboard.form_problems import FormProblems, form_problems
from edgefleet.server.dashboard.render import DashboardRoute, html
from edgefleet.server.services import classes, enrollment
from edgefleet.server.services.request_bodies import EnrollmentTokenCreate, validate_body
from edgefleet.server.services.twin.form import name_value_pairs

__all__ = ["enrollment_body", "router"]

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)
PAGE = "/dashboard/enrollment-tokens/new"
FIELDS = ("hardware_class", "labels", "serial", "ttl_s", "uses")
BODY_FIELDS = {name: name for name in FIELDS}
CODE_FIELDS = {
    "class_not_found": "hardware_class",
    "invalid_labels": "labels",
    "invalid_serial": "serial",
    "invalid_ttl": "ttl_s",
    "invalid_uses": "uses",
}
MAX_CLASSES_LISTED = 500


def enrollment_body(form: dict[str, str]) -> EnrollmentTokenCreate:
    """The form's fields as the body ``POST /v1/enrollment-tokens`` would get, validated as the API does."""
    document: dict[str, Any] = {
        "hardware_class": form.get("hardware_class", "").strip(),
        "labels": name_value_pairs(form.get("labels", ""), what="labels", code="invalid_labels"),
        "serial": form.get("serial", "").strip() or None,
        "ttl_s": form.get("ttl_s", "").strip() or 3600,
        "uses": form.get("uses", "").strip() or 1,
    }
    return validate_body(EnrollmentTokenCreate, document)


def _form_page(
    request: Request,
    session: DbSession,
    user: DashboardUser,
    form: dict[str, str],
    problems: FormProblems | None = None,
) -> Response:
    names = [c.name for c in classes.list_classes(session, limit=MAX_CLASSES_LISTED, offset=0).items]
    status = problems.status if problems else 200
    return html(
        request, "enrollment_new.html", status, user=user, form=form, classes=names, problems=problems
    )


@router.get("/enrollment-tokens/new")
def new_token_form(request: Request, session: DbSession, user: SignedIn) -> Response:
    user.require_operator()
    form = {"hardware_class": "", "labels": "", "serial": "", "ttl_s": "3600", "uses": "1"}
    return _form_page(request, session, user, form)


@router.post("/enrollment-tokens/new")
async def create_token(request: Request, ctx: Ctx, session: DbSession, user: SignedIn) -> Response:
    form = await operator_form(request, user)
    fields = {name: form.get(name, "") for name in FIELDS}
    if editing(form):
        return _form_page(request, session, user, fields)
    try:
        body = enrollment_body(fields)
        if not confirmed(form):
            return show_confirmation(
                request,
                user,
                form,
                Confirmation(
                    title=f"Create an enrollment token for {body.hardware_class}?",
                    explanation="Whoever holds the token can enroll devices of this class with these labels "
                    "until it expires or its uses are spent. It is shown once, on the next page.",
                    confirm_label="Create token",
                    cancel=PAGE,
                    ask_reason=False,
                    editable=True,
                    summary=[
                        ("Hardware class", body.hardware_class),
                        ("Labels", ", ".join(f"{k}={v}" for k, v in body.labels.items()) or "none"),
                        ("Serial", body.serial or "any"),
                        ("Expires after", f"{body.ttl_s} s"),
                        ("Uses", str(body.uses)),
                    ],
                    carry=fields,
                ),
            )
        created = enrollment.create_enrollment_token(
            session,
            hardware_class=body.hardware_class,
            labels=body.labels,
            serial=body.serial,
            ttl=timedelta(seconds=body.ttl_s),
            uses=body.uses,
            actor=user.actor.name,
            now=ctx.clock(),
        )
    except PermissionDeniedError:
        raise
    except EdgefleetError as exc:
        problems = form_problems(exc, body_fields=BODY_FIELDS, code_fields=CODE_FIELDS)
        return _form_page(request, session, user, fields, problems)
    row = created.row
    return html(
        request,
        "enrollment_token.html",
        user=user,
        token=created.secret,
        row={
            "id": row.id,
            "hardware_class": row.hardware_class,
            "labels": row.labels,
            "serial": row.serial,
            "uses": row.uses_total,
            "expires_at": row.expires_at.isoformat(),
        },
        server=str(request.base_url).rstrip("/"),
    )
