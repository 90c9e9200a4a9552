"""The dashboard's static files (its CSS and JS, and the vendored uPlot chart library): a fixed list,
served from the package with an ETag, never a path taken from the request."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request, Response

from edgefleet.protocol.errors import NotFoundError

__all__ = ["STATIC_FILES", "router"]

STATIC_DIR = Path(__file__).parent / "static"
STATIC_FILES = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
    "uPlot.LICENSE": "text/plain; charset=utf-8",
}
router = APIRouter(prefix="/dashboard/static", include_in_schema=False)


@dataclass(frozen=True)
class _File:
    body: bytes
    etag: str


@cache
def _load(name: str) -> _File:
    body = (STATIC_DIR / name).read_bytes()
    return _File(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


@router.get("/{name}")
def static_file(name: str, request: Request) -> Response:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise NotFoundError(
            "no such static file", code="not_found", expected=sorted(STATIC_FILES), got=name[:80]
        )
    f = _load(name)
    headers = {"etag": f.etag, "cache-control": "public, max-age=300", "x-content-type-options": "nosniff"}
    if request.headers.get("if-none-match") == f.etag:
        return Response(status_code=304, headers=headers)
    return Response(f.body, media_type=media_type, headers=headers)
