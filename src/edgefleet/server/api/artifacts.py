"""/v1/artifacts: register builds, list them, disable them, download their files."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from edgefleet.protocol import ArtifactManifest, is_safe_relpath
from edgefleet.protocol.errors import InvalidDocumentError, NotFoundError
from edgefleet.server.api.blobs import serve_blob
from edgefleet.server.api.contract import document_schema
from edgefleet.server.api.dependencies import Ctx, DbSession, Operator, PageQuery, Viewer
from edgefleet.server.api.id_paths import register_id_path
from edgefleet.server.api.json_body import StrictJsonRoute
from edgefleet.server.services import artifacts as svc

__all__ = ["router"]

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"], route_class=StrictJsonRoute)
ARTIFACT_ID_REGEX = "art_[0-9a-f]{16}"
ArtifactPath = Annotated[str, Path(pattern=f"^{ARTIFACT_ID_REGEX}$")]

# ``/v1/artifacts/check`` with another method is a 405 naming ``POST``, not a PATCH of an artifact "check"
register_id_path(
    "artifact_id", prefix="/v1/artifacts/", regex=ARTIFACT_ID_REGEX, code="invalid_artifact_id",
    expected="art_<16 hex>",
)  # fmt: skip
FilterName = Annotated[str | None, Query(max_length=63)]


class ArtifactCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    manifest: dict[str, Any] = Field(json_schema_extra=document_schema(ArtifactManifest))


class ArtifactPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    disabled: bool
    reason: str | None = Field(default=None, max_length=2000)


@router.post("", status_code=201, responses={200: {"description": "the identical artifact already exists"}})
def register(body: ArtifactCreate, ctx: Ctx, session: DbSession, actor: Operator) -> Any:
    manifest = ArtifactManifest.parse(body.manifest)
    result = svc.register_artifact(session, ctx.blobs, manifest, actor=actor.name, now=ctx.clock())
    return JSONResponse(svc.artifact_to_wire(result.row), status_code=201 if result.created else 200)


@router.post("/check")
def check(body: ArtifactCreate, ctx: Ctx, session: DbSession, _: Operator) -> dict[str, Any]:
    """Refuses a manifest exactly as registering it would (unknown class or version, another source, a
    conflicting build, over the class's budgets), before its files are uploaded; answers which files the
    server still needs."""
    manifest = ArtifactManifest.parse(body.manifest)
    return {"ok": True, "missing_blobs": svc.check_artifact(session, ctx.blobs, manifest)}


@router.get("")
def list_artifacts(
    session: DbSession,
    _: Viewer,
    page: PageQuery,
    model: FilterName = None,
    version: FilterName = None,
    hardware_class: FilterName = None,
    disabled: bool | None = None,
) -> dict[str, Any]:
    result = svc.list_artifacts(
        session,
        limit=page.limit,
        offset=page.offset,
        model=model,
        version=version,
        hardware_class=hardware_class,
        disabled=disabled,
    )
    return result.to_wire([svc.artifact_to_wire(row) for row in result.items])


@router.get("/{artifact:artifact_id}")
def get_artifact(artifact: ArtifactPath, session: DbSession, _: Viewer) -> dict[str, Any]:
    row = svc.get_artifact(session, artifact)
    return _with_kill_switch(session, row)


def _with_kill_switch(session: DbSession, row: Any) -> dict[str, Any]:
    """A disabled artifact says where its devices stand: rolling back, going down the ladder, withdrawn."""
    wire = svc.artifact_to_wire(row)
    if row.disabled:
        wire["kill_switch"] = svc.kill_switch(session, row)
    return wire


@router.patch("/{artifact:artifact_id}")
def patch_artifact(
    artifact: ArtifactPath, body: ArtifactPatch, ctx: Ctx, session: DbSession, actor: Operator
) -> dict[str, Any]:
    row = svc.set_disabled(
        session, artifact, disabled=body.disabled, reason=body.reason, actor=actor.name, now=ctx.clock()
    )
    return _with_kill_switch(session, row)


@router.delete("/{artifact:artifact_id}", status_code=204)
def delete_artifact(artifact: ArtifactPath, ctx: Ctx, session: DbSession, actor: Operator) -> Response:
    svc.delete_artifact(session, artifact, actor=actor.name, now=ctx.clock())
    return Response(status_code=204)


@router.get("/{artifact:artifact_id}/files/{path:path}", operation_id="get_artifact_file")
@router.head("/{artifact:artifact_id}/files/{path:path}", operation_id="head_artifact_file")
def get_file(
    artifact: ArtifactPath, path: str, request: Request, ctx: Ctx, session: DbSession, _: Viewer
) -> Response:
    if not is_safe_relpath(path):
        raise InvalidDocumentError(
            "unsafe file path", code="invalid_path", expected="a relative path", got=path[:255]
        )
    row = svc.get_artifact(session, artifact)
    entry = next((f for f in row.manifest["files"] if f["path"] == path), None)
    if entry is None:
        raise NotFoundError(
            "no such file in the artifact",
            code="file_not_found",
            got=path,
            expected=[f["path"] for f in row.manifest["files"]][:50],
        )
    return serve_blob(ctx.blobs, entry["sha256"], request, media_type="application/octet-stream")
