"""/v1/models: models and their versions."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict

from edgefleet.protocol.document import Name, Sha256Hex
from edgefleet.server.api.dependencies import Ctx, DbSession, NamePath, Operator, PageQuery, Viewer
from edgefleet.server.api.json_body import StrictJsonRoute
from edgefleet.server.services import models as svc

__all__ = ["router"]

router = APIRouter(prefix="/v1/models", tags=["models"], route_class=StrictJsonRoute)
_LABEL_KEY = re.compile(r"^[a-z0-9][a-z0-9._/-]{0,62}$")
MAX_LABELS = 64
MAX_LABEL_VALUE_CHARS = 256
_LABELS_SCHEMA: JsonDict = {
    "maxProperties": MAX_LABELS,
    "propertyNames": {"pattern": _LABEL_KEY.pattern},
    "additionalProperties": {"type": "string", "maxLength": MAX_LABEL_VALUE_CHARS},
}


def _check_labels(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels")
    for k, v in value.items():
        if not _LABEL_KEY.fullmatch(k):
            raise ValueError(f"label key {k[:80]!r} must match {_LABEL_KEY.pattern}")
        if len(v) > MAX_LABEL_VALUE_CHARS:
            raise ValueError(f"label {k!r} value longer than {MAX_LABEL_VALUE_CHARS} characters")
    return value


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: Name
    description: str = Field(default="", max_length=2000)
    labels: dict[str, str] = Field(default_factory=dict, json_schema_extra=_LABELS_SCHEMA)

    _labels = field_validator("labels")(_check_labels)


class ModelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    description: str | None = Field(default=None, max_length=2000)
    labels: dict[str, str] | None = Field(default=None, json_schema_extra=_LABELS_SCHEMA)

    _labels = field_validator("labels")(_check_labels)


class VersionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    version: Name
    source_sha256: Sha256Hex
    metadata: dict[str, Any] = Field(default_factory=dict)


@router.post("", status_code=201)
def create_model(body: ModelCreate, ctx: Ctx, session: DbSession, actor: Operator) -> dict[str, Any]:
    return svc.create_model(
        session,
        name=body.name,
        description=body.description,
        labels=body.labels,
        actor=actor.name,
        now=ctx.clock(),
    )


@router.get("")
def list_models(
    session: DbSession,
    _: Viewer,
    page: PageQuery,
    name_prefix: Annotated[str | None, Query(max_length=63)] = None,
) -> dict[str, Any]:
    return svc.list_models(session, limit=page.limit, offset=page.offset, name_prefix=name_prefix)


@router.get("/{name}")
def get_model(name: NamePath, session: DbSession, _: Viewer) -> dict[str, Any]:
    return svc.get_model(session, name)


@router.patch("/{name}")
def update_model(
    name: NamePath, body: ModelPatch, ctx: Ctx, session: DbSession, actor: Operator
) -> dict[str, Any]:
    return svc.update_model(
        session, name, description=body.description, labels=body.labels, actor=actor.name, now=ctx.clock()
    )


@router.delete("/{name}", status_code=204)
def delete_model(name: NamePath, ctx: Ctx, session: DbSession, actor: Operator) -> Response:
    svc.delete_model(session, name, actor=actor.name, now=ctx.clock())
    return Response(status_code=204)


@router.post("/{name}/versions", status_code=201)
def create_version(
    name: NamePath, body: VersionCreate, ctx: Ctx, session: DbSession, actor: Operator
) -> dict[str, Any]:
    return svc.create_version(
        session,
        ctx.blobs,
        model=name,
        version=body.version,
        source_sha256=body.source_sha256,
        metadata=body.metadata,
        actor=actor.name,
        now=ctx.clock(),
    )


@router.get("/{name}/versions")
def list_versions(name: NamePath, session: DbSession, _: Viewer, page: PageQuery) -> dict[str, Any]:
    return svc.list_versions(session, name, limit=page.limit, offset=page.offset)


@router.get("/{name}/versions/{version}")
def get_version(name: NamePath, version: NamePath, session: DbSession, _: Viewer) -> dict[str, Any]:
    return svc.get_version(session, name, version)


@router.delete("/{name}/versions/{version}", status_code=204)
def delete_version(
    name: NamePath, version: NamePath, ctx: Ctx, session: DbSession, actor: Operator
) -> Response:
    svc.delete_version(session, name, version, actor=actor.name, now=ctx.clock())
    return Response(status_code=204)
