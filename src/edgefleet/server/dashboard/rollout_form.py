"""Creating a rollout from the dashboard (operators): the form becomes the API's own request body.

The fields carry what ``POST /v1/rollouts`` takes (``class=artifact`` and ``key=value`` lines, the slot, the
spec as JSON); :func:`rollout_body` turns them into that JSON document, parses the spec with the API's strict
JSON parser and validates the document with the API's model (``request_bodies.RolloutCreate``), and the
confirmed post calls the same use case (``rollouts.create_rollout``, one transaction). So the form refuses
exactly what the API refuses, with the same codes, shown next to the fields; nothing is half-applied.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from edgefleet.protocol.canonical import loads_strict
from edgefleet.protocol.errors import EdgefleetError, InvalidDocumentError, PermissionDeniedError
from edgefleet.server.api.dependencies import Ctx, DbSession
from edgefleet.server.dashboard.auth import SignedIn, operator_form
from edgefleet.server.dashboard.confirm import Confirmation, confirmed, done, editing, show_confirmation
from edgefleet.server.dashboard.form_problems import FormProblems, form_problems
from edgefleet.server.dashboard.plan_page import EXAMPLE_SPEC
from edgefleet.server.dashboard.render import DashboardRoute, html
from edgefleet.server.services import artifacts
from edgefleet.server.services.request_bodies import RolloutCreate, validate_body
from edgefleet.server.services.rollouts import service as rollouts
from edgefleet.server.services.rollouts.overlay import canonical_selector
from edgefleet.server.services.twin.form import name_value_pairs

__all__ = ["FIELDS", "rollout_body", "router"]

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)
FIELDS = ("model", "targets", "labels", "selector", "slot", "spec")
BODY_FIELDS = {"model": "model", "targets": "targets", "selector": "labels", "slot": "slot", "spec": "spec"}
"""The API body's field -> the form field that carries it."""
CODE_FIELDS = {
    "invalid_target": "targets",
    "invalid_rollout": "targets",
    "artifact_not_found": "targets",
    "wrong_hardware_class": "targets",
    "wrong_model": "targets",
    "artifact_disabled": "targets",
    "rollout_conflict": "targets",
    "rollout_slot_conflict": "targets",
    "invalid_labels": "labels",
    "invalid_selector": "selector",
    "empty_selector": "selector",
    "selector_conflict": "selector",
    "selector_matches_nothing": "selector",
    "malformed_json": "spec",
}
"""The use case's refusals -> the form field they concern."""
Prefill = Annotated[str | None, Query(max_length=200)]


def rollout_body(form: dict[str, str]) -> RolloutCreate:
    """The form's fields as the body ``POST /v1/rollouts`` would get, validated as the API validates it."""
    labels = name_value_pairs(form.get("labels", ""), what="labels", code="invalid_labels")
    selector_text = form.get("selector", "").strip()
    if selector_text and labels:
        raise InvalidDocumentError(
            "give labels or a selector, not both",
            code="invalid_selector",
            expected="one of them",
            got=selector_text[:200],
        )
    document: dict[str, Any] = {
        "model": form.get("model", "").strip(),
        "targets": name_value_pairs(form.get("targets", ""), what="targets", code="invalid_target"),
        "selector": canonical_selector(selector_text) if selector_text else labels,  # parsed: refused early
        "slot": form.get("slot", "").strip() or "default",
    }
    spec = form.get("spec", "").strip()
    if spec:
        document["spec"] = loads_strict(spec, what="the spec")
    return validate_body(RolloutCreate, document)


def _form_page(
    request: Request, user: Any, form: dict[str, str], problems: FormProblems | None = None
) -> Response:
    status = problems.status if problems else 200
    return html(request, "rollout_new.html", status, user=user, form=form, problems=problems)


def _artifact_text(artifact_id: str | None, names: dict[str, dict[str, Any]]) -> str:
    if artifact_id is None:
        return "nothing pinned"
    found = names.get(artifact_id)
    return f"{found['model']} {found['version']} ({artifact_id})" if found else artifact_id


def _move_text(move: dict[str, str | None], names: dict[str, dict[str, Any]]) -> str:
    return f"from {_artifact_text(move['from'], names)} to {_artifact_text(move['to'], names)}"


def _stage_text(body: RolloutCreate) -> str:
    sizes = [f"{s.count} device(s)" if s.count is not None else f"{s.percent:g} %" for s in body.spec.stages]
    return " → ".join(sizes)


@router.get("/rollouts/new")
def new_rollout_form(
    request: Request, user: SignedIn, model: Prefill = None, targets: Prefill = None
) -> Response:
    user.require_operator()
    form = {
        "model": model or "",
        "targets": targets or "",
        "labels": "",
        "selector": "",
        "slot": "default",
        "spec": EXAMPLE_SPEC,
    }
    return _form_page(request, user, form)


@router.post("/rollouts/new")
async def create_rollout(request: Request, ctx: Ctx, session: DbSession, user: SignedIn) -> Response:
    form = await operator_form(request, user)
    fields = {name: form.get(name, "") for name in FIELDS}
    if editing(form):
        return _form_page(request, user, fields)
    try:
        body = rollout_body(fields)
        if not confirmed(form):
            moves = rollouts.preview_targets(session, model=body.model, targets=body.targets, slot=body.slot)
            names = artifacts.artifact_labels(
                session, sorted({a for m in moves.values() for a in m.values() if a})
            )
            return show_confirmation(
                request,
                user,
                form,
                Confirmation(
                    title=f"Start a rollout of {body.model}?",
                    explanation="The rollout starts now: the devices of its first stage are told to install "
                    "the new artifact at their next poll, and the engine advances it stage by stage while "
                    "its gates hold.",
                    confirm_label="Start rollout",
                    cancel="/dashboard/rollouts/new",
                    ask_reason=False,
                    editable=True,
                    summary=[
                        ("Model", body.model),
                        *((f"Class {c}", _move_text(m, names)) for c, m in sorted(moves.items())),
                        (
                            "Devices with labels",
                            body.selector
                            if isinstance(body.selector, str)
                            else ", ".join(f"{k}={v}" for k, v in body.selector.items()) or "any",
                        ),
                        ("Slot", body.slot),
                        ("Stages", _stage_text(body)),
                    ],
                    carry=fields,
                ),
            )
        row = rollouts.create_rollout(
            session,
            model=body.model,
            targets=body.targets,
            selector=body.selector,
            slot=body.slot,
            spec=body.spec,
            actor=user.actor.name,
            now=ctx.clock(),
            thresholds=request.app.state.devices.thresholds,
        )
    except PermissionDeniedError:
        raise
    except EdgefleetError as exc:
        problems = form_problems(exc, body_fields=BODY_FIELDS, code_fields=CODE_FIELDS)
        return _form_page(request, user, fields, problems)
    return done(f"/dashboard/rollouts/{row.id}", "create")
