"""/v1/blobs: content-addressed upload (streamed, verified) and ranged, conditional download."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from edgefleet.protocol.errors import NotFoundError
from edgefleet.server import http_ranges
from edgefleet.server.api.dependencies import Ctx, DbSession, Operator, Viewer
from edgefleet.server.api.json_body import StrictJsonRoute
from edgefleet.server.blobs import BlobStore, check_sha256, too_large
from edgefleet.server.services.audit import record_alone

__all__ = ["ranged_response", "router", "serve_blob"]

router = APIRouter(prefix="/v1/blobs", tags=["blobs"], route_class=StrictJsonRoute)
Sha256Path = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]


def ranged_response(
    request: Request,
    *,
    etag: str,
    size: int,
    read: Callable[[int, int], Iterator[bytes]],
    media_type: str,
    cache_control: str = "public, max-age=31536000, immutable",
) -> Response:
    """A GET/HEAD answer for immutable bytes: ETag, Range (206/416), If-None-Match (304), If-Range.

    ``read(start, length)`` yields the bytes of one span.
    """
    decision = http_ranges.decide(request.headers, etag=etag, size=size)
    headers = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": cache_control}
    if decision.status == 304:
        return Response(status_code=304, headers=headers)
    span = decision.span
    length = span.length if span else 0
    headers["Content-Length"] = str(length)
    if decision.content_range:
        headers["Content-Range"] = decision.content_range
    if request.method == "HEAD" or span is None:
        return Response(status_code=decision.status, headers=headers, media_type=media_type)
    return StreamingResponse(
        read(span.start, span.length), status_code=decision.status, headers=headers, media_type=media_type
    )


def serve_blob(blobs: BlobStore, sha256: str, request: Request, *, media_type: str) -> Response:
    size = blobs.size(sha256)
    if size is None:
        raise NotFoundError("no such blob", code="blob_not_found", got=sha256)
    return ranged_response(
        request,
        etag=f'"{sha256}"',
        size=size,
        read=lambda start, length: blobs.read(sha256, start, length),
        media_type=media_type,
    )


@router.put("/{sha256}", status_code=201, responses={200: {"description": "already stored"}})
async def put_blob(
    sha256: Sha256Path, request: Request, ctx: Ctx, session: DbSession, actor: Operator
) -> Any:
    check_sha256(sha256)
    limit = ctx.settings.max_blob_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit, int(declared))
    result = await ctx.blobs.put(sha256, request.stream(), max_bytes=limit)
    await run_in_threadpool(
        lambda: record_alone(
            session,
            actor=actor.name,
            action="blob.upload",
            target=sha256,
            now=ctx.clock(),
            details={"length": result.length, "created": result.created},
        )
    )
    return JSONResponse(
        {"sha256": sha256, "length": result.length}, status_code=201 if result.created else 200
    )


@router.get("/{sha256}", operation_id="get_blob")
@router.head("/{sha256}", operation_id="head_blob")
def get_blob(sha256: Sha256Path, request: Request, ctx: Ctx, _: Viewer) -> Response:
    return serve_blob(ctx.blobs, sha256, request, media_type="application/octet-stream")
