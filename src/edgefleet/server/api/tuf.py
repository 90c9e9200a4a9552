"""The image repository over HTTP: static TUF metadata and targets (no auth: any mirror could serve them),
and the publishers' upload of release-signed targets metadata (operator role; the server checks it and
never needs the release key)."""

from __future__ import annotations

import base64
import binascii
import pathlib
from stat import S_ISREG
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from tuf.api.metadata import Metadata, Targets

from edgefleet.protocol.errors import InvalidDocumentError, NotFoundError, ServiceUnavailableError
from edgefleet.server.api.blobs import ranged_response
from edgefleet.server.api.dependencies import Ctx, DbSession, Operator, Viewer
from edgefleet.server.api.json_body import StrictJsonRoute
from edgefleet.server.blobs import FsBlobStore, read_file_span
from edgefleet.server.services.audit import record_alone
from edgefleet.server.services.director_epoch import bump_director_epoch_alone
from edgefleet.server.tuf_runtime import TufRuntime
from edgefleet.trust.publish import MANIFEST_NAME
from edgefleet.trust.repository import MAX_METADATA_BYTES, ImageRepository
from edgefleet.trust.target_custom import custom_of, target_prefix

__all__ = ["router"]

router = APIRouter(tags=["tuf"], route_class=StrictJsonRoute)
_MUTABLE_METADATA = {"timestamp.json", "root.json"}


def _repo(request: Request) -> ImageRepository:
    runtime: TufRuntime = request.app.state.tuf
    if runtime.repo is None:
        raise ServiceUnavailableError(
            "this server has no image repository (run `edgefleet keys init DIR --repo DATA_DIR/tuf`)",
            code="tuf_not_configured",
        )
    return runtime.repo


def _static(request: Request, path: pathlib.Path, *, cache_control: str, media_type: str) -> Response:
    """Serve a regular file of the repository; anything else (missing, a folder) is ``tuf_file_not_found``,
    so no cache keeps a folder as an immutable answer."""
    try:
        stat = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        stat = None
    if stat is None or not S_ISREG(stat.st_mode):
        raise NotFoundError("no such file in the image repository", code="tuf_file_not_found")
    etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
    return ranged_response(
        request,
        etag=etag,
        size=stat.st_size,
        read=lambda start, length: read_file_span(path, start, length),
        media_type=media_type,
        cache_control=cache_control,
    )


@router.get("/tuf/metadata/{name}", operation_id="get_tuf_metadata")
@router.head("/tuf/metadata/{name}", operation_id="head_tuf_metadata")
def tuf_metadata(name: Annotated[str, Path(max_length=64)], request: Request) -> Response:
    try:
        path = _repo(request).metadata_path(name)
    except FileNotFoundError:
        raise NotFoundError("no such metadata", code="tuf_file_not_found", got=name) from None
    cache = "public, max-age=60" if name in _MUTABLE_METADATA else "public, max-age=31536000, immutable"
    return _static(request, path, cache_control=cache, media_type="application/json")


@router.get("/tuf/targets/{name:path}", operation_id="get_tuf_target")
@router.head("/tuf/targets/{name:path}", operation_id="head_tuf_target")
def tuf_target(name: Annotated[str, Path(max_length=512)], request: Request) -> Response:
    try:
        path = _repo(request).target_file_path(name)
    except FileNotFoundError:
        raise NotFoundError("no such target", code="tuf_file_not_found", got=name) from None
    return _static(
        request,
        path,
        cache_control="public, max-age=31536000, immutable",
        media_type="application/octet-stream",
    )


@router.get("/v1/tuf")
def tuf_status(request: Request, _: Viewer) -> dict[str, Any]:
    repo = _repo(request)
    return {
        "root_version": repo.root().signed.version,
        "targets_version": repo.targets_version(),
        "timestamp_expires": repo.timestamp().signed.expires.isoformat(),
        "metadata_url": "/tuf/metadata/",
        "targets_url": "/tuf/targets/",
    }


class TargetsUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    targets_b64: str = Field(
        max_length=MAX_METADATA_BYTES * 4 // 3 + 8, description="the signed targets.json"
    )
    files: dict[str, Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(
        default_factory=dict, max_length=4096, description="target path -> sha256 of an uploaded blob"
    )


@router.post("/v1/tuf/targets", status_code=201)
async def upload_targets(
    body: TargetsUpload, request: Request, ctx: Ctx, session: DbSession, actor: Operator
) -> Any:
    repo = _repo(request)
    try:
        targets_bytes = base64.b64decode(body.targets_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidDocumentError("targets_b64 is not base64", code="invalid_document") from exc
    if not isinstance(ctx.blobs, FsBlobStore):  # pragma: no cover - only the filesystem store exists
        raise ServiceUnavailableError(
            "publishing needs the filesystem blob store", code="unsupported_blob_store"
        )
    files = {}
    for path, sha256 in body.files.items():
        if ctx.blobs.size(sha256) is None:
            raise InvalidDocumentError(
                "a target's bytes were not uploaded", code="blob_missing", expected=f"blob {sha256}", got=path
            )
        files[path] = ctx.blobs.path(sha256)
    now = ctx.clock()
    version = await run_in_threadpool(repo.accept_targets, targets_bytes, files, now=now)
    await run_in_threadpool(bump_director_epoch_alone, session)  # assignments name the signed manifests
    await run_in_threadpool(
        record_alone,
        session,
        actor=actor.name,
        action="tuf.publish",
        target=f"targets:{version}",
        now=now,
        details={"files": sorted(body.files)},
    )
    for artifact in _unmeasured_latency_accepted(targets_bytes, body.files):
        await run_in_threadpool(
            record_alone,
            session,
            actor=actor.name,
            action="tuf.publish.latency_unmeasured_accepted",
            target=artifact,
            now=now,
            details={"targets_version": version},
        )
    return {"targets_version": version}


def _unmeasured_latency_accepted(targets_bytes: bytes, uploaded: dict[str, str]) -> list[str]:
    """The artifacts (``model/version/class``) this upload releases on the publisher's signed word that
    their latency is unmeasured on the class (``edgefleet publish --accept-unmeasured-latency``). Called
    once the repository accepted the targets, so they parse."""
    targets = Metadata[Targets].from_bytes(targets_bytes).signed.targets
    found = []
    for path in sorted(uploaded):
        info = targets.get(path)
        if info is None or not path.endswith("/" + MANIFEST_NAME):
            continue
        custom = custom_of(info)
        if custom.latency_unmeasured_accepted:
            found.append(target_prefix(custom.model, custom.version, custom.hardware_class))
    return found
