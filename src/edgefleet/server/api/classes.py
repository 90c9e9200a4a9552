"""/v1/classes: hardware classes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from edgefleet.protocol import HardwareClass
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.server.api.contract import document_schema
from edgefleet.server.api.dependencies import Ctx, DbSession, NamePath, Operator, PageQuery, Viewer
from edgefleet.server.api.json_body import StrictJsonRoute
from edgefleet.server.services import classes as svc
from edgefleet.server.services.running import MAX_RUNNING, running_artifacts

__all__ = ["router"]

router = APIRouter(prefix="/v1/classes", tags=["classes"], route_class=StrictJsonRoute)


class ApplyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    classes: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=svc.MAX_CLASSES_PER_APPLY,
        json_schema_extra=document_schema(HardwareClass, many=True),
    )


def _parse_indexed(items: list[dict[str, Any]]) -> list[HardwareClass]:
    out = []
    for i, item in enumerate(items):
        try:
            out.append(svc.load_class(item))
        except InvalidDocumentError as exc:
            name = item.get("name") if isinstance(item.get("name"), str) else f"#{i}"
            exc.message = f"class {name!r}: {exc.message}"
            exc.details.setdefault("index", i)
            raise
    return out


@router.get("")
def list_classes(
    session: DbSession,
    _: Viewer,
    page: PageQuery,
    name_prefix: Annotated[str | None, Query(max_length=63)] = None,
) -> dict[str, Any]:
    result = svc.list_classes(session, limit=page.limit, offset=page.offset, name_prefix=name_prefix)
    return result.to_wire([row.document for row in result.items])


@router.get("/{name}")
def get_class(name: NamePath, session: DbSession, _: Viewer) -> dict[str, Any]:
    return svc.get_class(session, name).document


@router.get("/{name}/running")
def get_running(
    name: NamePath,
    session: DbSession,
    _: Viewer,
    model: Annotated[str | None, Query(max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RUNNING)] = 3,
) -> dict[str, Any]:
    """The artifacts the class's devices run now, most devices first: the bases ``edgefleet publish``
    prepares deltas from."""
    return {"items": running_artifacts(session, name, model=model, limit=limit)}


@router.put("/{name}")
def put_class(
    name: NamePath,
    body: Annotated[dict[str, Any], Body(json_schema_extra=document_schema(HardwareClass))],
    response: Response,
    ctx: Ctx,
    session: DbSession,
    actor: Operator,
) -> dict[str, Any]:
    doc = svc.load_class(body)
    if doc.name != name:
        raise InvalidDocumentError(
            "class name in the body differs from the path", code="name_mismatch", expected=name, got=doc.name
        )
    outcome = svc.put_class(session, doc, actor=actor.name, now=ctx.clock())
    response.status_code = 201 if outcome == "created" else 200
    return doc.to_dict()


@router.post("/apply")
def apply_classes(body: ApplyBody, ctx: Ctx, session: DbSession, actor: Operator) -> dict[str, list[str]]:
    docs = _parse_indexed(body.classes)
    return svc.apply_classes(session, docs, actor=actor.name, now=ctx.clock()).to_wire()


@router.delete("/{name}", status_code=204)
def delete_class(name: NamePath, ctx: Ctx, session: DbSession, actor: Operator) -> Response:
    svc.delete_class(session, name, actor=actor.name, now=ctx.clock())
    return Response(status_code=204)
